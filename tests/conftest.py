"""Shared fixtures: the local stack (real servers on free loopback ports), an Airflow home, ledgers.

Airflow reads its configuration at import, so the environment is set here, before any test imports it.
Every server fixture stops its server even when the test fails (yield inside try/finally via the context manager).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.airflow_home import PROJECT_ROOT, airflow_env

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="cogmig-tests-"))
os.environ.update(airflow_env(_SESSION_DIR / "airflow"))
os.environ["COGNITO_MIGRATION_HOME"] = str(_SESSION_DIR / "var")
os.environ.pop("COGNITO_MIGRATION_STORAGE", None)
os.environ.pop("COGNITO_MIGRATION_LEDGER_URL", None)

POSTGRES_ADMIN_URL = os.environ.get(
    "COGNITO_MIGRATION_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    """Cognito (moto), the Avnology emulator and the SMTP sink, started once per session."""
    from emulators.stack import LocalStack

    with LocalStack() as running:
        running.apply_env()
        yield running


@pytest.fixture
def clean_stack(stack: Any) -> Any:
    """The session stack with all state wiped: moto, both Avnology tenants, the SMTP inbox and its faults."""
    import httpx

    stack.moto.reset()
    httpx.post(f"{stack.avnology_url}/_emulator/reset", timeout=10).raise_for_status()
    httpx.post(f"{stack.avnology_url}/_emulator/faults", json={}, timeout=10).raise_for_status()
    stack.smtp.clear()
    return stack


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database, for ``dag.test()``."""
    from emulators.airflow_home import migrate_db

    home = Path(os.environ["AIRFLOW_HOME"])
    migrate_db(home)
    return home


class FreshDags:
    """Parses the DAG files again for every ``get_dag``, so each test runs a pristine DAG object.

    ``dag.test(run_conf=...)`` writes the conf into the DAG's Param objects, so reusing one DAG object would leak
    one test's form values into the next test's run (a deep copy is no way out: it loses mapped tasks' inputs).
    """

    def __init__(self, bag: Any) -> None:
        self._bag = bag

    def get_dag(self, dag_id: str) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        fresh = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
        assert not fresh.import_errors, fresh.import_errors
        return fresh.dags[dag_id]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bag, name)


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return FreshDags(bag)


@pytest.fixture
def ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite ledger for one test, also set as the pipeline's configured ledger."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("COGNITO_MIGRATION_LEDGER_URL", url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database on the local PostgreSQL server.

    Skipped when no server answers, unless REQUIRE_POSTGRES=1 (CI), where that is a failure.
    """
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (REQUIRE_POSTGRES=1 makes this a failure)")
        pytest.skip(message + " (set REQUIRE_POSTGRES=1 to fail instead)")
    name = f"cogmig_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
