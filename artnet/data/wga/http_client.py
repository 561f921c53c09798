"""The HTTP client the downloader talks to wga.hu with: polite, retrying, and bounded against a hostile server.

`DownloadConfig` says how to talk to the server (workers, rate, timeouts, retries; environment variables override
it), `Fetcher` GETs one URL with retries and exponential backoff over urllib3's connection pool, and `RateLimiter`
spaces requests over all threads. Every request is bounded in size, in time (a total deadline, headers included)
and in where redirects may lead (the same scheme, host and port), so a stalling or flooding server costs one image,
never the build. A server that cannot be reached at all (its name does not resolve, it refuses connections, there
is no route to it) is not retried: `ServerUnreachableError` says so at once, and the mirror loop stops on it. It is
apart from the mirror loop (`artnet.data.wga.download`) because it knows nothing of mirrors or files: it returns a
body (that the caller's `verify` may refuse with `ImageError`, which is retried), or raises a `DownloadError` saying
whether trying again may help.
"""

from __future__ import annotations

import dataclasses
import errno
import http.client
import os
import random
import socket
import threading
import time
from urllib.parse import urljoin, urlsplit

import urllib3
import urllib3.connection

from artnet import __version__
from artnet.data.images import ImageError

DEFAULT_BASE_URL = "https://www.wga.hu"
USER_AGENT = f"artnet/{__version__} (research dataset builder; one request per image, rate-limited)"
MAX_BODY_BYTES = 64 * 1024 * 1024  # no WGA image or catalogue comes near it; larger bodies are refused
CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclasses.dataclass
class DownloadConfig:
    """How to talk to the server. Environment variables override the defaults (see `from_env`)."""

    base_url: str = DEFAULT_BASE_URL
    workers: int = 8  # concurrent connections
    max_rate: float = 10.0  # requests per second across all workers; 0 = unlimited
    timeout: float = 30.0  # seconds for the connection, and for each read
    deadline: float = 120.0  # seconds for a whole request, however the server trickles its bytes
    retries: int = 5  # further attempts after the first, for retryable faults
    backoff: float = 1.0  # first retry waits ~backoff s, then 2x, 4x, … (with jitter)
    user_agent: str = USER_AGENT

    @classmethod
    def from_env(cls, environ: dict | None = None) -> DownloadConfig:
        env = os.environ if environ is None else environ
        config = cls()
        for field, variable, kind in (
            ("base_url", "ARTNET_WGA_BASE_URL", str),
            ("workers", "ARTNET_WGA_WORKERS", int),
            ("max_rate", "ARTNET_WGA_MAX_RATE", float),
            ("timeout", "ARTNET_WGA_TIMEOUT", float),
            ("deadline", "ARTNET_WGA_DEADLINE", float),
            ("retries", "ARTNET_WGA_RETRIES", int),
            ("backoff", "ARTNET_WGA_BACKOFF", float),
        ):
            if env.get(variable):
                try:
                    setattr(config, field, kind(env[variable]))
                except ValueError as error:
                    raise ValueError(f"{variable}={env[variable]!r} is not a valid {kind.__name__}") from error
        config.base_url = config.base_url.rstrip("/")
        if config.workers < 1:
            raise ValueError("ARTNET_WGA_WORKERS must be at least 1")
        return config


class DownloadError(RuntimeError):
    """A fetch that did not succeed; `retryable` tells whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, kind: str = ""):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        # A short reason, counted in the build summary.
        self.kind = kind or (f"http {status}" if status else "network")


class ServerUnreachableError(DownloadError):
    """The server cannot be reached at all: its name does not resolve, it refuses connections, or there is no
    route to it. Not retried (offline, trying again for a minute only delays the same answer), and a mirror loop
    stops on it rather than failing every image in turn."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False, kind="unreachable")


class RateLimiter:
    """At most `rate` calls per second over all threads (evenly spaced, not bursty)."""

    def __init__(self, rate: float):
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


_request = threading.local()  # per worker thread: the total deadline of the request it is making, and its watchdog


class _DeadlineConnection:
    """Mixed into urllib3's connections: once the request's total deadline passes, the socket is shut down.

    urllib3's timeouts bound each read, not the whole response, so a server that trickles its status line and
    headers a byte at a time would hold a worker for as long as it likes (the body loop in `Fetcher._read_body`
    checks the deadline itself, but the headers are read inside urllib3). A shut-down socket makes the blocked
    read return at once, and `Fetcher.get_once` reports the deadline."""

    def getresponse(self, *args, **kwargs):
        deadline = getattr(_request, "deadline", None)
        if deadline is not None:
            _cancel_watchdog()
            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), self._stop_reading)
            watchdog.daemon = True
            watchdog.start()
            _request.watchdog = watchdog
        return super().getresponse(*args, **kwargs)

    def _stop_reading(self) -> None:
        sock = getattr(self, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


def _cancel_watchdog() -> None:
    watchdog = getattr(_request, "watchdog", None)
    if watchdog is not None:
        watchdog.cancel()
        _request.watchdog = None


class _HTTPConnection(_DeadlineConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class Fetcher:
    """GET with retries and backoff, shared by all worker threads, over urllib3's connection pool.

    Every request is bounded: the body is streamed in chunks and refused past `MAX_BODY_BYTES` (a Content-Length
    over it is refused before a byte is read), each request has a total deadline on top of urllib3's per-read
    timeout (headers included: `_DeadlineConnection`), and redirects are followed only on the first URL's scheme,
    host and port (`_redirect_target`).
    """

    def __init__(self, config: DownloadConfig):
        self.config = config
        self.limiter = RateLimiter(config.max_rate)
        self.retried = 0  # attempts beyond the first, for the summary
        self._lock = threading.Lock()
        # retries=False: urllib3 raises the first fault and `get` below decides (it also retries bodies that
        # arrive whole but do not decode, which urllib3's Retry cannot see).
        self.pool = urllib3.PoolManager(
            maxsize=config.workers,
            headers={"User-Agent": config.user_agent},
            retries=False,
            timeout=urllib3.Timeout(connect=config.timeout, read=config.timeout),
        )
        self.pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def get_once(self, url: str) -> bytes:
        self.limiter.wait()
        deadline = time.monotonic() + self.config.deadline
        _request.deadline = deadline  # read by _DeadlineConnection when the response's headers are awaited
        first = urlsplit(url)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                response = self.pool.request("GET", url, preload_content=False, redirect=False)
                complete = False
                try:
                    if response.status in _REDIRECT_STATUSES:
                        url = _redirect_target(first, url, response.headers.get("Location"))
                        continue
                    if response.status != 200:
                        retryable = response.status == 429 or response.status >= 500
                        raise DownloadError(
                            f"HTTP {response.status} for {url}", retryable=retryable, status=response.status
                        )
                    body = self._read_body(response, url, deadline)
                    complete = True
                    return body
                finally:
                    _cancel_watchdog()  # before the connection goes back to the pool
                    # A connection with unread bytes on it must not go back to the pool.
                    if complete:
                        response.release_conn()
                    else:
                        response.close()
            raise DownloadError(f"more than {MAX_REDIRECTS} redirects from {first.geturl()}", retryable=False)
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as error:
            if time.monotonic() >= deadline:  # the watchdog shut the socket: say why
                raise self._past_deadline(url, "the response was cut off") from error
            unreachable = _unreachable(error)
            if unreachable:
                raise ServerUnreachableError(f"cannot reach {urlsplit(url).netloc} ({url}): {unreachable}") from error
            # Timeouts, refused or reset connections, TLS failures, bodies cut short: urllib3 HTTPError or OSError.
            reason = getattr(error, "reason", error)
            raise DownloadError(f"{type(error).__name__} for {url}: {reason}", retryable=True) from error
        finally:
            _cancel_watchdog()
            _request.deadline = None

    def _past_deadline(self, url: str, progress: str) -> DownloadError:
        return DownloadError(
            f"{url} was not complete after {self.config.deadline:g} s (the total deadline per request, "
            f"$ARTNET_WGA_DEADLINE): {progress}; the server is stalling",
            retryable=True,
            kind="deadline",
        )

    def _read_body(self, response, url: str, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared is not None and declared.isdigit() else None
        if expected is not None and expected > MAX_BODY_BYTES:
            raise DownloadError(
                f"{url} declares {expected:,} bytes, over the {MAX_BODY_BYTES:,}-byte cap: refused unread",
                retryable=False,
                kind="too large",
            )
        chunks, size = [], 0
        while True:
            if time.monotonic() > deadline:
                raise self._past_deadline(url, f"{size:,} bytes so far")
            chunk = response.read1(CHUNK_BYTES)  # one socket read at most, so the deadline is checked often
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise DownloadError(
                    f"{url} sent more than the {MAX_BODY_BYTES:,}-byte cap: refused", retryable=False, kind="too large"
                )
            chunks.append(chunk)
        if expected is not None and expected != size:
            raise DownloadError(f"truncated body for {url}: {size} of {expected} bytes", retryable=True)
        return b"".join(chunks)

    def get(self, url: str, *, verify=None) -> bytes:
        """The body of `url`, retried on retryable faults; `verify(body)` may raise ImageError."""
        attempt = 0
        while True:
            try:
                body = self.get_once(url)
                if verify is not None:
                    verify(body)
                return body
            except (DownloadError, ImageError) as error:
                # An image that does not decode may be a body cut short without Content-Length: retry it.
                retryable = isinstance(error, ImageError) or error.retryable
                if not retryable or attempt >= self.config.retries:
                    raise
            attempt += 1
            with self._lock:
                self.retried += 1
            delay = self.config.backoff * 2 ** (attempt - 1)
            time.sleep(delay * (0.5 + random.random()))


def _unreachable(error: BaseException) -> str:
    """Why the server cannot be reached at all, if that is what `error` says (else ""): a name that does not
    resolve, a refused connection, no route. A connect timeout is not among them: a slow server is retried."""
    cause = error.__cause__
    if isinstance(error, urllib3.exceptions.NameResolutionError):
        return f"its name does not resolve ({cause or error}): no network, or no DNS"
    if isinstance(error, urllib3.exceptions.NewConnectionError) and isinstance(cause, OSError):
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused (nothing listens there)"
        if cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"no route to it ({cause.strerror}): no network"
    return ""


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(parts) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of a split URL, the port filled in from the scheme when the URL names none."""
    try:
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return parts.scheme, None, None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme)


def _redirect_target(first, url: str, location: str | None) -> str:
    """The URL a redirect points to, if it keeps the first URL's scheme, host and port (`http://host` may move to
    `https://host`, both on their default ports: the same site, encrypted). Anything else is refused, another port
    of the same host included: a different service, not the site asked for."""
    target = urljoin(url, location or "")
    scheme, host, port = _origin(first)
    allowed = {(scheme, host, port)}
    if (scheme, port) == ("http", 80):
        allowed.add(("https", host, 443))
    if not location or _origin(urlsplit(target)) not in allowed:
        raise DownloadError(
            f"redirect from {url} to {target!r} refused: redirects are followed only on {first.scheme}://"
            f"{first.netloc} (the same scheme, host and port)",
            retryable=False,
            kind="redirect refused",
        )
    return target
