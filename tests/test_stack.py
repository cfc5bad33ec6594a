"""The local stack: free loopback ports, a clear error for a taken port, and servers that always stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from emulators.airflow_home import PROJECT_ROOT
from emulators.moto_cognito import MotoServer
from emulators.ports import PortInUseError
from emulators.smtp_sink import SmtpSink
from emulators.stack import LocalStack


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_stack_servers_listen_on_loopback_and_stop_even_when_the_body_raises() -> None:
    ports: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), LocalStack() as stack:
        ports = [stack.moto.port, int(stack.avnology_url.rsplit(":", 1)[1]), stack.smtp.port]
        assert len(set(ports)) == 3
        assert all(_listening(p) for p in ports)
        assert httpx.get(f"{stack.avnology_url}/v1/identities", timeout=10).status_code == 401
        raise RuntimeError("boom")
    assert ports and not any(_listening(p) for p in ports)


def test_a_taken_port_fails_fast_with_advice() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"port 127.0.0.1:{port} is already in use.*choose another port"):
            MotoServer(port=port).start()
        with pytest.raises(PortInUseError, match="SMTP sink"):
            SmtpSink(port=port).start()


def test_session_fixture_stops_the_stack_after_a_failing_test(tmp_path: Path) -> None:
    """Run a failing test that uses the `stack` fixture in a child pytest, then check its ports are closed."""
    ports_file = tmp_path / "ports.txt"
    (tmp_path / "test_child.py").write_text(
        textwrap.dedent(
            f"""
            def test_fails(stack):
                port = stack.avnology_url.rsplit(":", 1)[1]
                open({str(ports_file)!r}, "w").write(f"{{stack.moto.port}} {{port}} {{stack.smtp.port}}")
                assert False, "failing on purpose"
            """
        )
    )
    (tmp_path / "conftest.py").write_text("pytest_plugins = []\nfrom tests.conftest import *  # noqa\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_child.py")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "failing on purpose" in result.stdout
    ports = [int(p) for p in ports_file.read_text().split()]
    assert len(ports) == 3 and not any(_listening(p) for p in ports)


def test_missing_connection_is_named_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from cognito_migration.preflight import PreflightError, require_connection

    monkeypatch.delenv("AIRFLOW_CONN_AVNOLOGY_PRODUCTION", raising=False)
    with pytest.raises(PreflightError, match=r"'avnology_production' is not defined.*AIRFLOW_CONN_AVNOLOGY_PRODUCTION"):
        require_connection("avnology_production")
