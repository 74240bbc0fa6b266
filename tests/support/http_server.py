"""A small static file server that honours HTTP Range requests (one range: 206 with
Content-Range; several: 206 multipart/byteranges), so that GDAL's /vsicurl/ reads the files
as it reads object stores. It counts requests and ranges, and can be made slow or failing
per path prefix."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"(\d*)-(\d*)")


class RangeServer(ThreadingHTTPServer):
    """Serves local folders on a loopback port; ``url`` is its base URL."""

    daemon_threads = True

    def __init__(self, mounts: dict[str, Path]):
        super().__init__(("127.0.0.1", 0), _Handler)
        #: URL folder -> local folder (``{"demo": Path(...)}`` serves ``/demo/...``)
        self.mounts = {k.strip("/"): Path(v).resolve() for k, v in mounts.items()}
        self.lock = threading.Lock()
        self.requests: Counter = Counter()  # (method, path) -> n
        self.ranges = 0  # byte ranges asked for (a multi-range request counts each)
        self.delays: dict[str, float] = {}  # path prefix -> seconds to wait before answering
        self.statuses: dict[str, int] = {}  # path prefix -> status to answer instead

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up (GDAL closes idle connections) are no error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    def reset(self) -> None:
        """Forget the counts."""
        with self.lock:
            self.requests.clear()
            self.ranges = 0

    def total(self, method: str = "GET") -> int:
        """Requests of ``method`` since the last reset."""
        with self.lock:
            return sum(n for (m, _), n in self.requests.items() if m == method)


class _Handler(BaseHTTPRequestHandler):
    server: RangeServer
    protocol_version = "HTTP/1.1"
    timeout = 20  # idle keep-alive connections (and stuck writes) end

    def log_message(self, *args) -> None:  # quiet
        pass

    def _special(self, path: str) -> bool:
        for prefix, seconds in self.server.delays.items():
            if path.startswith(prefix):
                time.sleep(seconds)
        for prefix, status in self.server.statuses.items():
            if path.startswith(prefix):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
        return False

    def _file(self, path: str) -> Path | None:
        mount, _, rest = unquote(path).lstrip("/").partition("/")
        root = self.server.mounts.get(mount)
        if root is None:
            return None
        target = (root / rest).resolve()
        if root not in target.parents or not target.is_file():
            return None
        return target

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = urlsplit(self.path).path
        with self.server.lock:
            self.server.requests[(self.command, path)] += 1
        if self._special(path):
            return
        target = self._file(path)
        if target is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = target.read_bytes()
        size = len(data)
        header = self.headers.get("Range")
        ranges = []
        if header and header.startswith("bytes=") and not head:
            for part in header[6:].split(","):
                m = _RANGE.fullmatch(part.strip())
                if not m or (not m.group(1) and not m.group(2)):
                    continue
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
                else:  # suffix range
                    start, end = max(0, size - int(m.group(2))), size - 1
                if start <= end:
                    ranges.append((start, end))
            if not ranges:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        with self.server.lock:
            self.server.ranges += len(ranges)
        if not ranges:
            self.send_response(200)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if not head:
                self.wfile.write(data)
            return
        if len(ranges) == 1:
            start, end = ranges[0]
            self.send_response(206)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(data[start:end + 1])
            return
        boundary = uuid.uuid4().hex
        body = b""
        for start, end in ranges:
            body += (f"--{boundary}\r\nContent-Type: image/tiff\r\n"
                     f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n").encode()
            body += data[start:end + 1] + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        self.send_response(206)
        self.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def range_server(mounts: dict[str, Path]):
    """A running :class:`RangeServer` over ``mounts``."""
    server = RangeServer(mounts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
