"""Run the hook's ASGI app on uvicorn in a background thread: for the tests and the benchmark.

The socket is bound before uvicorn starts, so port 0 yields the real port and a taken port fails at once.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from password_hook.app import create_app
from password_hook.core import PasswordHook
from password_hook.settings import HookSettings


class HookServerError(RuntimeError):
    pass


class HookServer:
    """``with HookServer(settings) as server: httpx.post(server.url + HOOK_PATH, ...)``."""

    def __init__(
        self, settings: HookSettings, host: str = "127.0.0.1", port: int = 0, *, hook: PasswordHook | None = None
    ) -> None:
        self.settings, self.host, self.port = settings, host, port
        self.hook = hook or PasswordHook(settings)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> HookServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise HookServerError(f"password hook: cannot listen on {self.host}:{self.port}: {exc}") from exc
        sock.listen(1024)
        config = uvicorn.Config(
            create_app(self.settings, hook=self.hook),
            log_config=None,  # leave the host process's logging (and the tests' capture) alone
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="password-hook", daemon=True)
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise HookServerError(f"password hook: uvicorn did not start within {timeout:g} s")
            time.sleep(0.01)
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        if sock is not None:
            sock.close()

    def __enter__(self) -> HookServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
