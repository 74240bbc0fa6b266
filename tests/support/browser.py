"""A page run in headless Chromium until it reports back.

``--dump-dom`` with a virtual-time budget snapshots the page when Chromium *thinks* it is
idle, which a slow server (a cold tile on a loaded machine) can outlast: the page is then
caught half-way. Here the page instead POSTs its outcome to ``/done`` on the server that
served it, and the test waits for that POST (or gives up after ``timeout`` seconds).
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: the script a page ends with: ``report(promise)`` posts what the promise gives, or its error
REPORT_JS = """
function report(promise) {
  const post = body => fetch("/done", {method: "POST", body: JSON.stringify(body)});
  promise.then(result => post({result}), error => post({error: String(error)}));
}
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, outcome: dict, done: threading.Event, **kwargs):
        self.outcome, self.done = outcome, done
        super().__init__(*args, **kwargs)

    def do_POST(self):  # noqa: N802  (the http.server spelling)
        if self.path != "/done":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.outcome.update(json.loads(body))
        self.send_response(204)
        self.end_headers()
        self.done.set()

    def log_message(self, *args):
        pass


def run_page(folder: Path, page: str = "index.html", timeout: float = 120) -> dict:
    """Serve ``folder`` on a loopback port named ``localhost``, open ``page`` in headless
    Chromium and return what the page reported: ``{"result": ...}`` or ``{"error": ...}``."""
    outcome: dict = {}
    done = threading.Event()
    handler = functools.partial(_Handler, outcome=outcome, done=done, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={folder / 'profile'}",
         f"http://localhost:{server.server_port}/{page}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not done.wait(timeout):
            raise AssertionError(f"the page did not report back within {timeout} s")
        return outcome
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
        server.shutdown()
        server.server_close()
