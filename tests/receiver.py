"""A webhook receiver on 127.0.0.1 (port 0) for the budget alert tests: it records every POST and
answers as told (``fail_first`` 500s, then 200; ``hang``: never answers until stopped)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, *, fail_first: int = 0, hang: bool = False):
        self.posts: list[tuple[int, dict]] = []  # (status answered, body)
        self.fail_first = fail_first
        self.hang = hang
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.secret = f"SECRET{uuid.uuid4().hex}"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if owner.hang:
                    owner._release.wait(60)
                    return
                with owner._lock:
                    status = 500 if owner.fail_first > 0 else 200
                    owner.fail_first -= 1
                    owner.posts.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/{self.secret}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def delivered(self) -> list[dict]:
        """The bodies answered 200."""
        with self._lock:
            return [body for status, body in self.posts if status == 200]

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
