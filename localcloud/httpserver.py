"""The local cloud's HTTP servers (the AWS endpoint, the API) each served on a daemon thread."""
from __future__ import annotations

import socketserver
import threading


class ServerThread:
    """``server`` (an ``http.server`` or werkzeug server, already bound: ``port`` is the real one when
    asked for port 0) served on a daemon thread named ``name`` from `start` until `stop`."""

    def __init__(self, server: socketserver.BaseServer, name: str):
        self._server = server
        self._name = name
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
