"""``make e2e``: the migration on Airflow's real scheduler, triggered through the REST API, and the trigger form
in headless Chromium (tests/e2e/).

What it needs, and what it does about it:
- PostgreSQL on 127.0.0.1:5432 with trust auth for ``postgres`` (or COGNITO_MIGRATION_TEST_PG): checked first,
  and its absence fails with that sentence (REQUIRE_POSTGRES=1 is set for the tests too).
- Debian's ``chromium``: installed with apt-get when missing (as root), else the run stops and says how.
- Redis for the CeleryExecutor run: a private ``redis-server`` on a free port (stopped at the end), or the one on
  127.0.0.1:6379 when the binary is absent.
- Every process the tests start is ended at the end, even when pytest itself is interrupted or killed: each
  records its process group in a pid file, which this runner sweeps after pytest exits.

Artifacts (screenshots, component logs, the run's task states) land in var/artifacts/e2e/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "var" / "artifacts" / "e2e"
PYTEST_TIMEOUT_S = 1800
APT_TIMEOUT_S = 900
DEFAULT_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def find_chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


def ensure_chromium() -> str:
    """Debian's chromium package, installed when missing: the browser the trigger-form test drives."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("error: Chromium is missing. Install it with `sudo apt-get install -y chromium`, then rerun.")
    print("Installing Debian's chromium (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise SystemExit(f"error: `{' '.join(command)}` failed:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    found = find_chromium()
    if not found:
        raise SystemExit("error: apt-get installed chromium, but no chromium binary is on PATH")
    return found


def check_postgres() -> None:
    import sqlalchemy as sa

    url = os.environ.get("COGNITO_MIGRATION_TEST_PG", DEFAULT_PG)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        shown = sa.make_url(url).render_as_string(hide_password=True)
        raise SystemExit(
            f"error: PostgreSQL is not reachable at {shown} ({type(exc).__name__}). The e2e test needs a server on "
            "127.0.0.1:5432 with trust auth for user postgres, or COGNITO_MIGRATION_TEST_PG set to an admin URL."
        ) from None
    finally:
        engine.dispose()


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis() -> tuple[subprocess.Popen[bytes] | None, str]:
    """The Celery broker: a private redis-server on a free port when the binary exists, else the one on :6379."""
    binary = shutil.which("redis-server")
    if not binary:
        if redis_answers(6379):
            return None, "redis://127.0.0.1:6379/0"
        raise SystemExit(
            "error: the CeleryExecutor run needs Redis: install redis-server (apt-get install -y redis-server) "
            "or run one on 127.0.0.1:6379."
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not redis_answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"error: redis-server did not start on 127.0.0.1:{port}")
        time.sleep(0.1)
    return proc, f"redis://127.0.0.1:{port}/0"


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def sweep(pidfile: Path) -> None:
    """End every process group the tests recorded that is still alive (only ours: listed by their ids)."""
    if not pidfile.exists():
        return
    for line in pidfile.read_text().split():
        pid = int(line)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            print(f"warning: process group {pid} outlived the tests; killed it", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check_postgres()
    chromium = ensure_chromium()
    redis, broker = start_redis()
    print(f"PostgreSQL reachable; Chromium at {chromium}; Celery broker {broker}", flush=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="cogmig-e2e-", suffix=".pids")
    os.close(fd)
    pidfile = Path(name)
    env = {
        **os.environ,
        "COGNITO_MIGRATION_E2E": "1",
        "REQUIRE_POSTGRES": "1",
        "REQUIRE_CHROMIUM": "1",
        "COGNITO_MIGRATION_E2E_ARTIFACTS": str(ARTIFACTS),
        "COGNITO_MIGRATION_E2E_PIDFILE": str(pidfile),
        "COGNITO_MIGRATION_E2E_BROKER": broker,
    }
    command = [sys.executable, "-m", "pytest", "tests/e2e", "-p", "no:cacheprovider", "-ra", *args]
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        returncode = proc.wait(timeout=PYTEST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"error: the e2e tests ran past {PYTEST_TIMEOUT_S} s; interrupting them", file=sys.stderr)
        os.killpg(proc.pid, signal.SIGINT)  # pytest tears its fixtures down on an interrupt
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        returncode = 1
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)  # its own session: pass the interrupt on so fixtures tear down
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=90)
        returncode = 130
    finally:
        sweep(pidfile)
        pidfile.unlink(missing_ok=True)
        stop(redis)
    print(f"e2e finished in {time.monotonic() - started:.0f} s (exit {returncode}); artifacts in {ARTIFACTS}")
    return returncode


if __name__ == "__main__":
    raise SystemExit(main())
