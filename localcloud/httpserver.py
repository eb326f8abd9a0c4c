"""The local cloud's HTTP servers (the AWS endpoint, the API) each served on a daemon thread."""
from __future__ import annotations

import socketserver
import threading
from http.server import ThreadingHTTPServer

# Pending connections each server's socket accepts before the kernel refuses (resets) more; the
# standard library's default is 5, which 20 concurrent clients overflow. werkzeug uses 128 too.
REQUEST_QUEUE_SIZE = 128


class HTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with a listen backlog of `REQUEST_QUEUE_SIZE`; handler threads are daemons."""

    request_queue_size = REQUEST_QUEUE_SIZE
    daemon_threads = True


class ServerThread:
    """``server`` (an ``http.server`` or werkzeug server, already bound: ``port`` is the real one when
    asked for port 0) served on a daemon thread named ``name`` from `start` until `stop`."""

    def __init__(self, server: socketserver.BaseServer, name: str):
        self._server = server
        self._name = name
        if getattr(server, "request_queue_size", REQUEST_QUEUE_SIZE) < REQUEST_QUEUE_SIZE:
            server.socket.listen(REQUEST_QUEUE_SIZE)  # already listening: a larger backlog
        self.port: int = server.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name=self._name)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever: forever if it never ran
            self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)
