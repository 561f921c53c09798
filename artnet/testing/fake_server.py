"""A local stand-in for wga.hu: serves a mirror folder over HTTP on 127.0.0.1 with injectable faults.

Used by the tests (faults) and the download benchmark (latency). Never listens beyond loopback.
"""

from __future__ import annotations

import collections
import io
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from artnet.data.wga.catalog import CATALOG_MEMBER
from artnet.data.wga.download import CATALOG_URL_PATH

# The path the downloader asks for the catalogue, taken from the downloader itself so the two cannot disagree.
_CATALOG_PATH = CATALOG_URL_PATH.lstrip("/")
# A fixed timestamp for the zip served from a bare catalog.csv: the same mirror then always serves the same bytes
# (and the same sha256), as wga.hu does for one export.
_ZIP_TIME = (2018, 1, 20, 0, 0, 0)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hung up (a killed build, a download refused at its cap) is expected here, not a fault of
        # the server: no traceback for it.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _FaultyHandler(BaseHTTPRequestHandler):
    """Answers one request as `wga` (the `FaultyWgaServer` it serves) says: its next queued fault, else the file.

    Each server makes its own subclass with `wga` set, so a test that patches one server's handler patches no other.
    """

    wga: FaultyWgaServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive replies stall ~40 ms on delayed ACKs

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.path.lstrip("/")
        with self.wga._lock:
            self.wga.hits[path] += 1
            queued = self.wga.faults.get(path)
            fault = queued.pop(0) if queued else None
        if self.wga.latency:
            time.sleep(self.wga.latency)
        if self._fault_without_body(path, fault):
            return
        body = self.wga.body(path)
        if body is None:
            self._send(404, b"not found")
            return
        if fault == "garbage":
            body = b"<html>this is not an image</html>"
        if fault == "trickle-headers":
            self._trickle_headers(path, body)
        elif fault == "trickle":
            self._trickle(path, body)
        elif fault == "truncate":
            self._truncate(body)
        else:
            self._send(200, body)

    def _fault_without_body(self, path, fault) -> bool:
        """Answer the faults that never serve the file (or serve a flood instead); False for any other."""
        if fault == "hang":
            time.sleep(self.wga.hang_seconds)
            self.close_connection = True
        elif fault == "reset":
            self.close_connection = True
            self.connection.close()
        elif isinstance(fault, int):
            self._send(fault, b"server error")
        elif isinstance(fault, tuple) and fault[0] == "redirect":
            self.send_response(302)
            self.send_header("Location", fault[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif fault in ("endless", "huge"):
            self._flood(path, length=10**13 if fault == "huge" else None)
        else:
            return False
        return True

    def _trickle_headers(self, path, body):
        # The status line and headers one byte at a time: only a total deadline can stop this.
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n".encode()
        trickled = head + b"X" * 10_000  # then one header line that never ends
        for at in range(len(trickled)):
            if not self._write_or_stop(path, trickled[at : at + 1]):
                return
            time.sleep(self.wga.trickle_seconds)
        self.close_connection = True

    def _trickle(self, path, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for at in range(len(body)):
            self._write_or_stop(path, body[at : at + 1])
            time.sleep(self.wga.trickle_seconds)

    def _truncate(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def _flood(self, path, length):
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        block = bytes(1 << 16)
        # Bounded only so that a client that never hangs up cannot keep the test server busy forever.
        for _ in range(1 << 16):
            if not self._write_or_stop(path, block):
                return
        self.close_connection = True

    def _write_or_stop(self, path, data) -> bool:
        """Write `data`; False once the client hung up (which is how a capped download ends)."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        with self.wga._lock:
            self.wga.sent[path] += len(data)
        return True

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FaultyWgaServer:
    """Serves a mirror folder over HTTP on 127.0.0.1, like wga.hu, with faults queued per path.

    `faults[path]` is a list consumed one request at a time; each entry is one of
    500 / 503 / 429 (status), "hang" (sleep past the client's timeout), "truncate" (half the body
    with the full Content-Length, then close), "reset" (close without answering), "garbage" (200
    with bytes that are not an image), and the hostile ones: "endless" (200 without Content-Length, then
    zeros until the client hangs up), "huge" (a Content-Length of 10^13, then zeros), "trickle" (the
    body one byte every `trickle_seconds`), "trickle-headers" (the status line and headers so),
    ("redirect", location) (302 to `location`). A path with no faults left is served normally; a path not in the
    mirror gets 404. `hits[path]` counts requests, `sent[path]` the body bytes the hostile faults wrote. The
    catalogue is served zipped, as wga.hu does.
    """

    def __init__(self, mirror: Path, hang_seconds: float = 2.0, latency: float = 0.0, trickle_seconds: float = 0.3):
        self.mirror = Path(mirror)
        self.faults: dict[str, list] = collections.defaultdict(list)
        self.hits: collections.Counter = collections.Counter()
        self.sent: collections.Counter = collections.Counter()  # body bytes sent per path by the hostile faults
        self.hang_seconds = hang_seconds
        self.trickle_seconds = trickle_seconds
        self.latency = latency
        self._lock = threading.Lock()
        handler = type("Handler", (_FaultyHandler,), {"wga": self})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def body(self, path: str) -> bytes | None:
        if path == _CATALOG_PATH:
            if (self.mirror / "data_txt.zip").is_file():
                return (self.mirror / "data_txt.zip").read_bytes()
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                member = zipfile.ZipInfo(CATALOG_MEMBER, date_time=_ZIP_TIME)
                member.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(member, (self.mirror / CATALOG_MEMBER).read_bytes())
            return out.getvalue()
        file = (self.mirror / path).resolve()
        if self.mirror.resolve() in file.parents and file.is_file():
            return file.read_bytes()
        return None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
