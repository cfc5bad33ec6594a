"""Fixtures of the real-scheduler end-to-end test: a PostgreSQL-backed Airflow on loopback, and headless Chromium.

They run only under ``make e2e`` (``COGNITO_MIGRATION_E2E=1``, set by scripts/e2e.py): starting four Airflow
components takes tens of seconds, too slow for ``make test``. The runner also sets REQUIRE_POSTGRES=1 and
REQUIRE_CHROMIUM=1, so a missing server or browser fails with a message instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from emulators.airflow_home import PROJECT_ROOT
from tests.e2e.browser import find_chromium
from tests.e2e.cluster import AirflowApi, AirflowCluster

ENABLED = os.environ.get("COGNITO_MIGRATION_E2E") == "1"
ARTIFACTS = Path(os.environ.get("COGNITO_MIGRATION_E2E_ARTIFACTS") or PROJECT_ROOT / "var" / "artifacts" / "e2e")
POOLS_FILE = PROJECT_ROOT / "deploy" / "pools.json"
LEDGER_INIT = PROJECT_ROOT / "deploy" / "ledger_init.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="the real-scheduler end-to-end test runs with `make e2e`")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium() -> str:
    binary = find_chromium()
    if binary:
        return binary
    message = "Chromium is not installed (Debian: apt-get install -y chromium; `make e2e` installs it)"
    if os.environ.get("REQUIRE_CHROMIUM") == "1":
        pytest.fail(message + " (REQUIRE_CHROMIUM=1 makes this a failure)")
    pytest.skip(message)


def drop_database(server_url: str, name: str) -> None:
    """Drop a test database, ending its connections first (a component killed mid-query may leave one)."""
    admin = sa.create_engine(
        sa.make_url(server_url).set(drivername="postgresql+psycopg2", database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def throwaway_database(server_url: str, name: str) -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    drop_database(server_url, name)
    url = sa.make_url(server_url).set(drivername="postgresql+psycopg2")
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(server_url, name)


def init_ledger(url: str) -> None:
    """The ledger's tables, by the script docker-compose's airflow-init runs (it also creates the database)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)])}
    done = subprocess.run(
        [sys.executable, str(LEDGER_INIT), url], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and "database created" in done.stdout, (
        f"ledger_init: {done.stdout}{done.stderr[-2000:]}"
    )


@pytest.fixture(scope="module")
def cluster_extra_env() -> dict[str, str]:
    """More environment for every component of this module's cluster; a test module overrides this fixture
    (e.g. the reconciliation's schedule variables, read when the dag-processor parses the DAG)."""
    return {}


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest,
    postgres_url: str,
    stack: Any,
    tmp_path_factory: pytest.TempPathFactory,
    artifacts: Path,
    cluster_extra_env: dict[str, str],
) -> Iterator[AirflowCluster]:
    """api-server, scheduler, dag-processor and triggerer (and a Celery worker for CeleryExecutor) on a fresh
    PostgreSQL metadata database; LocalExecutor unless the test parametrizes ``cluster`` with an executor.

    Tasks reach the local stack through the ``AIRFLOW_CONN_*`` variables, the ledger on PostgreSQL (a database of
    its own) and run storage in a private folder, as the compose deployment does with its own services.
    """
    executor = getattr(request, "param", "LocalExecutor")
    home = tmp_path_factory.mktemp(f"airflow-{executor.lower()}")
    base = sa.make_url(postgres_url).database
    with contextlib.ExitStack() as stack_of_cleanups:
        metadata = stack_of_cleanups.enter_context(throwaway_database(postgres_url, f"{base}_{executor.lower()}"))
        ledger = sa.make_url(metadata).set(database=f"{base}_{executor.lower()}_ledger")
        ledger_url = ledger.render_as_string(hide_password=False)
        drop_database(postgres_url, str(ledger.database))  # a leftover of an interrupted run
        stack_of_cleanups.callback(drop_database, postgres_url, str(ledger.database))
        init_ledger(ledger_url)
        deployment = AirflowCluster(
            home=home,
            metadata_url=metadata,
            executor=executor,
            broker_url=os.environ.get("COGNITO_MIGRATION_E2E_BROKER", "redis://127.0.0.1:6379/0"),
            extra_env={
                **stack.connection_env(),
                "COGNITO_MIGRATION_LEDGER_URL": ledger_url,
                "COGNITO_MIGRATION_STORAGE": str(home / "storage"),
                "COGNITO_MIGRATION_HOME": str(home / "var"),
                **cluster_extra_env,
            },
        )
        try:
            deployment.migrate()
            deployment.import_pools(POOLS_FILE)
            deployment.start()
            deployment.wait_healthy(timeout=180)
            yield deployment
        finally:
            deployment.stop()
            logs = artifacts / f"component-logs-{executor.lower()}"
            shutil.rmtree(logs, ignore_errors=True)
            shutil.copytree(deployment.logs, logs, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def api(cluster: AirflowCluster) -> Iterator[AirflowApi]:
    """The REST API as the cluster's admin (simple auth manager password file → ``POST /auth/token``)."""
    client = cluster.api()
    try:
        yield client
    finally:
        client.close()
