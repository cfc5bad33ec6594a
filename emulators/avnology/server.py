"""Run the emulator as a real HTTP server (uvicorn) in a background thread, for the stack and the tests."""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from emulators.avnology.app import create_app
from emulators.avnology.settings import EmulatorSettings
from emulators.ports import PortInUseError


class EmulatorStartError(RuntimeError):
    pass


class AvnologyEmulatorServer:
    """``start()`` returns once the server accepts connections; ``stop()`` is idempotent.

    The listening socket is bound here, before uvicorn starts, so a taken port fails at once with advice
    (instead of inside uvicorn's thread) and port 0 yields the real port for ``url``.
    """

    def __init__(
        self,
        settings: EmulatorSettings,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout: float = 15.0,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None
        self._url: str | None = None
        self._admin_client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"AvnologyEmulatorServer(url={self._url!r}, settings={self.settings!r})"

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the Avnology emulator is not running; call start() first")
        return self._url

    def start(self) -> AvnologyEmulatorServer:
        if self._thread is not None:
            raise RuntimeError(f"the Avnology emulator is already running at {self._url}")
        sock = self._bind()
        config = uvicorn.Config(
            create_app(self.settings),
            log_config=None,  # leave the host process's logging alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,  # hung (fault-injected) requests must not hold up stop()
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=self._run, args=(server, sock), name="avnology-emulator", daemon=True)
        self._server, self._thread, self._socket, self._error = server, thread, sock, None
        thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                why = repr(self._error) if self._error else f"not ready after {self.startup_timeout:g} s"
                raise EmulatorStartError(f"the Avnology emulator did not start: {why}")
            time.sleep(0.01)
        bound_host, bound_port = sock.getsockname()[:2]
        self._url = f"http://{bound_host}:{bound_port}"
        return self

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"Avnology emulator: port {self.host}:{self.port} is already in use. Stop whatever listens "
                    f"there (`ss -ltnp | grep :{self.port}`) or choose another port (0 picks a free one)."
                ) from exc
            raise EmulatorStartError(f"Avnology emulator: cannot listen on {self.host}:{self.port}: {exc}") from exc
        return sock

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced by start(); a thread has nobody else to tell
            self._error = exc

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        self._url = None
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout=5)
        if sock is not None:
            sock.close()

    def __enter__(self) -> AvnologyEmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Conveniences for Python callers; they go through the HTTP admin API like any other client.

    def state(self, tenant: str) -> dict[str, Any]:
        return self._admin("GET", "/_emulator/state", params={"tenant": tenant})

    def reset(self) -> None:
        self._admin("POST", "/_emulator/reset")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self._admin("POST", "/_emulator/faults", json=faults)

    def _admin(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if self._admin_client is None:  # one client: building one per call costs ~0.1 s (TLS setup)
            self._admin_client = httpx.Client(base_url=self.url, timeout=10)
        response = self._admin_client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]
