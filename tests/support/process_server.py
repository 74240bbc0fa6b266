"""A small HTTP server of openEO process definitions (the Remote Process Definition
extension's tests): each path answers a JSON document, a redirect, an oversized or slow
body, or bytes that are no JSON. It counts the requests per path."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """What one path answers."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: seconds to wait between the headers and the body (a slow server)
    delay: float = 0.0
    #: whether to send ``Content-Length`` (without: the body ends when the connection does)
    send_length: bool = True


class ProcessServer(ThreadingHTTPServer):
    """Serves :class:`Answer` objects by path on a loopback port."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: dict[str, Answer] = {}
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def json(self, path: str, doc) -> str:
        """Serve ``doc`` as JSON at ``path``; returns its URL."""
        self.answers[path] = Answer(json.dumps(doc).encode(),
                                    headers={"Content-Type": "application/json"})
        return self.url + path

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Redirect ``path`` to ``location``; returns its URL."""
        self.answers[path] = Answer(status=status, headers={"Location": location})
        return self.url + path

    def answer(self, path: str, answer: Answer) -> str:
        """Serve ``answer`` at ``path``; returns its URL."""
        self.answers[path] = answer
        return self.url + path

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (a refused, oversized or slow answer) is no error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    def close(self) -> None:
        """Stop serving."""
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ProcessServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        with self.server.lock:
            self.server.hits[self.path] += 1
        answer = self.server.answers.get(self.path)
        if answer is None:
            answer = Answer(b'{"code": "NotFound"}', 404)
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        if answer.send_length and "Content-Length" not in answer.headers:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.delay:
            time.sleep(answer.delay)
        try:
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass
