"""Mirror wga.hu images concurrently, politely and resumably.

The builder downloads into a local mirror laid out exactly like `--manual_dir` (`art/…/*.jpg`), then
reads the mirror the same way in both modes. An image is written under its final name only after it
decoded completely (temp file + atomic rename), so a killed build leaves no half files and a rerun
skips everything already verified. 404s are recorded as missing (and remembered, so a rerun does not
ask again); timeouts, resets, truncated bodies, 429 and 5xx are retried with exponential backoff.
"""

from __future__ import annotations

import dataclasses
import errno
import http.client
import io
import json
import os
import random
import socket
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import urllib3
import urllib3.connection
from tqdm.auto import tqdm

from artnet import __version__
from artnet.data.images import ImageError, verify_image
from artnet.data.wga.catalog import check_member_size

DEFAULT_BASE_URL = "https://www.wga.hu"
CATALOG_URL_PATH = "/database/download/data_txt.zip"
USER_AGENT = f"artnet/{__version__} (research dataset builder; one request per image, rate-limited)"
MISSING_LOG = "missing.json"
MAX_BODY_BYTES = 64 * 1024 * 1024  # no WGA image or catalogue comes near it; larger bodies are refused
CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Statuses of one image, in the build summary.
FOUND, MISSING, FAILED, CORRUPT = "found", "missing", "failed", "corrupt"


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
    timeout (headers included: `_DeadlineConnection`), and redirects are followed only to https (or the original
    scheme) on the same host.
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


def _redirect_target(first, url: str, location: str | None) -> str:
    """The URL a redirect points to, if it stays on the first URL's host over https (or the first URL's scheme)."""
    target = urljoin(url, location or "")
    parts = urlsplit(target)
    if not location or parts.scheme not in ("https", first.scheme) or parts.hostname != first.hostname:
        raise DownloadError(
            f"redirect from {url} to {target!r} refused: only redirects to https on {first.hostname} are followed",
            retryable=False,
            kind="redirect refused",
        )
    return target


@dataclasses.dataclass
class MirrorResult:
    """Status per relative image path, plus counts for the summary."""

    status: dict[str, str]
    errors: dict[str, str]
    reasons: dict[str, str]  # path -> short reason ("http 500", "too large", ...) of each image not found
    attempted: int  # paths requested from the server this run
    fetched: int  # of those, bodies received (stored, or refused as corrupt)
    cached: int
    retried: int
    seconds: float

    def counts(self) -> dict[str, int]:
        counts = {FOUND: 0, MISSING: 0, FAILED: 0, CORRUPT: 0}
        for status in self.status.values():
            counts[status] += 1
        return counts


# Per-image write failures that say something about the path, not the disk: that row fails, the build goes on.
# Anything else (a full disk, a read-only file system, EIO) stops the build.
_PATH_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})


def is_path_error(error: OSError) -> bool:
    return error.errno in _PATH_ERRNOS


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename: readers never see half a
    file, and a kill leaves either the old file or the new one (the build's image cache uses it too).

    The file is fsynced before the rename and the folder after it, so that after a power cut a name that exists
    points at complete bytes (a rename alone may reach the disk before the data does).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name, so a later build can tell a killed writer's leftover (`remove_stale_parts`).
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def remove_stale_parts(root: Path) -> int:
    """Delete the temporary `.part` files under `root` whose writer is no longer running (a SIGKILLed build leaves
    the file it was writing; an atomic rename cannot clean up after a kill), and say how many went. Files of a
    live writer, another build sharing the folder, are left alone."""
    removed = 0
    for part in Path(root).rglob(".*.part") if Path(root).is_dir() else ():
        try:
            pid = int(part.name.rsplit(".", 3)[-3])
        except (ValueError, IndexError):
            continue  # not ours
        if not _running(pid):
            part.unlink(missing_ok=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def fetch_catalog(config: DownloadConfig, mirror_dir: Path) -> Path:
    """`data_txt.zip` in the mirror, downloaded unless a complete copy is already there."""
    target = mirror_dir / "data_txt.zip"
    if target.is_file() and target.stat().st_size > 0:
        return target

    def verify_zip(body: bytes) -> None:
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                for member in archive.infolist():  # a zip bomb is refused (CatalogError) before it is inflated
                    check_member_size(member, config.base_url + CATALOG_URL_PATH)
                if archive.testzip() is not None:
                    raise ImageError("damaged catalogue zip")
        except zipfile.BadZipFile as error:
            raise ImageError(f"catalogue is not a zip: {error}") from error

    body = Fetcher(config).get(config.base_url + CATALOG_URL_PATH, verify=verify_zip)
    write_atomically(target, body)
    return target


def mirror_images(
    paths: Iterable[str],
    mirror_dir: Path,
    config: DownloadConfig,
    *,
    description: str = "wga images",
    refetch: Iterable[str] = (),
) -> MirrorResult:
    """Make `mirror_dir/<path>` exist and decode for every relative `art/…` path, as far as possible.

    `paths` must have passed `catalog.check_image_path`. Those in `refetch` are fetched again even if present
    (images in the mirror that decoded once but failed preparation since: damaged on disk).
    """
    mirror_dir = Path(mirror_dir)
    started = time.monotonic()
    swept = remove_stale_parts(mirror_dir)
    if swept:
        print(f"removed {swept} partial file(s) left in {mirror_dir} by an interrupted build")
    missing_log = mirror_dir / MISSING_LOG
    known_missing = set(json.loads(missing_log.read_text())) if missing_log.is_file() else set()
    status: dict[str, str] = {}
    errors: dict[str, str] = {}
    reasons: dict[str, str] = {}
    todo: list[str] = []
    refetch = set(refetch)
    for path in dict.fromkeys(paths):  # unique, in order
        if path in refetch:
            todo.append(path)
        elif (mirror_dir / path).is_file():
            status[path] = FOUND  # written only after it decoded: verified
        elif path in known_missing:
            status[path] = MISSING
        else:
            todo.append(path)
    cached = len(status)
    fetcher = Fetcher(config)

    def fetch(path: str) -> tuple[str, str, str, str]:
        try:
            body = fetcher.get(f"{config.base_url}/{path}", verify=verify_image)
        except DownloadError as error:
            return path, (MISSING if error.status in (404, 410) else FAILED), str(error), error.kind
        except ImageError as error:
            return path, CORRUPT, str(error), "corrupt image"
        try:
            write_atomically(mirror_dir / path, body)
        except OSError as error:
            if not is_path_error(error):
                raise
            return path, FAILED, f"cannot store {path}: {error.strerror or error}", "cannot store"
        return path, FOUND, "", ""

    if todo:
        with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="wga-fetch") as pool:
            futures = [pool.submit(fetch, path) for path in todo]
            try:
                with tqdm(total=len(futures), desc=description, unit="img") as bar:
                    for future in as_completed(futures):
                        path, outcome, message, reason = future.result()
                        status[path] = outcome
                        if message:
                            errors[path], reasons[path] = message, reason
                        bar.update()
                        bar.set_postfix(missing=sum(s == MISSING for s in status.values()), refresh=False)
            except BaseException:
                # A full disk, Ctrl-C: stop now rather than after every queued download. What was written is
                # complete (atomic writes) and a rerun resumes from it.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    newly_missing = {path for path, outcome in status.items() if outcome == MISSING}
    if newly_missing - known_missing:
        mirror_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(missing_log, json.dumps(sorted(known_missing | newly_missing), indent=0).encode())
    return MirrorResult(
        status=status,
        errors=errors,
        reasons=reasons,
        attempted=len(todo),
        fetched=sum(status[path] in (FOUND, CORRUPT) for path in todo),
        cached=cached,
        retried=fetcher.retried,
        seconds=time.monotonic() - started,
    )
