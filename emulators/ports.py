"""Loopback port helpers: every local server picks a free port, and a taken port fails fast with advice."""

from __future__ import annotations

import socket


class PortInUseError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise a clear error instead of a hang or a traceback deep inside a server library."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"{what}: port {host}:{port} is already in use. Stop whatever listens there "
                f"(`ss -ltnp | grep :{port}`) or choose another port (0 picks a free one)."
            ) from exc
