"""Airflow's real components (api-server, scheduler, dag-processor, triggerer) as subprocesses on loopback.

``dag.test()`` runs a DAG in one process and skips the scheduler, the executor, pools and the REST API, so it
cannot show that a run triggered from the UI works. This harness starts the same processes a deployment runs,
against a PostgreSQL metadata database, and kills every one of them (with its children) on the way out, even
when a test fails half-way. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from emulators.airflow_home import airflow_env
from emulators.ports import free_port

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# What /api/v2/monitor/health reports for each component (the api-server answering is its own proof).
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
ADMIN = "admin"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class ClusterError(RuntimeError):
    """A component did not start, died, or a wait ran out; the message carries the tail of its log."""


@dataclass
class AirflowCluster:
    """One Airflow deployment in ``home``: ``metadata_url`` is its PostgreSQL database.

    ``extra_env`` reaches every component and, through the executor, every task (connections, ledger URL,
    run storage).
    """

    home: Path
    metadata_url: str
    extra_env: Mapping[str, str] = field(default_factory=dict)
    executor: str = "LocalExecutor"
    parallelism: int = 4
    broker_url: str = "redis://127.0.0.1:6379/0"
    port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs = self.home / "component-logs"
        self.logs.mkdir(exist_ok=True)
        self.port = self.port or free_port()
        # Every component must sign and check the same tokens (the task SDK talks to the execution API with them).
        self._jwt_secret = secrets.token_urlsafe(32)
        self._api_secret = secrets.token_urlsafe(32)
        self._log_ports = (free_port(), free_port())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def celery_queue(self) -> str:
        """A queue of our own, so a broker shared with anything else on this machine never mixes up tasks."""
        return f"cogmig-e2e-{self.port}"

    def env(self) -> dict[str, str]:
        env = {**os.environ, **airflow_env(self.home)}
        env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": f"{self.base_url}/",
                "AIRFLOW__API__SECRET_KEY": self._api_secret,
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._log_ports[0]),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._log_ports[1]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.executor == "CeleryExecutor":
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url,
                    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.celery_queue,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.parallelism),
                }
            )
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run one ``airflow`` CLI command in this deployment's environment; fail with its output."""
        binary = Path(sys.executable).with_name("airflow")
        try:
            done = subprocess.run(
                [str(binary), *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"`airflow {' '.join(args)}` did not finish within {timeout:.0f} s") from exc
        if done.returncode != 0:
            raise ClusterError(
                f"`airflow {' '.join(args)}` exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return done.stdout

    def migrate(self) -> None:
        self.airflow("db", "migrate", timeout=600)

    def import_pools(self, pools_file: Path) -> None:
        """The same command docker-compose's airflow-init runs, so a bad pools file fails here first."""
        if not pools_file.is_file():
            raise ClusterError(f"pools file {pools_file} is missing; deployment imports it at init")
        self.airflow("pools", "import", str(pools_file))

    def components(self) -> tuple[str, ...]:
        return (*COMPONENTS, "celery-worker") if self.executor == "CeleryExecutor" else COMPONENTS

    def start(self, components: tuple[str, ...] | None = None) -> None:
        binary = Path(sys.executable).with_name("airflow")
        env = self.env()
        for name in components or self.components():
            args = [str(binary), *name.split("-", 1)] if name == "celery-worker" else [str(binary), name]
            if name == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
            if name == "celery-worker":
                args += ["--queues", self.celery_queue, "--concurrency", str(self.parallelism)]
                args += ["--celery-hostname", f"{self.celery_queue}@%h"]
            log = (self.logs / f"{name}.log").open("wb")
            try:
                # A session of its own, so stop() can end the component together with its task processes.
                self.processes[name] = subprocess.Popen(
                    args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.home
                )
            finally:
                log.close()
            register_process_group(self.processes[name].pid)

    def wait_healthy(self, timeout: float = 180) -> None:
        """Until the api-server answers and reports every other started component healthy."""
        wanted = {HEALTH_KEYS[name] for name in self.processes if name in HEALTH_KEYS}
        last: Any = None

        def healthy() -> bool:
            nonlocal last
            self.check_alive()
            try:
                response = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
            except httpx.TransportError as exc:
                last = type(exc).__name__
                return False
            last = response.text[:500]
            if response.status_code != 200:
                return False
            body = response.json()
            if "celery-worker" in self.processes and " ready." not in self.log_tail("celery-worker", 100_000):
                last = "the Celery worker has not said it is ready"
                return False
            return all((body.get(key) or {}).get("status") == "healthy" for key in wanted)

        wait_until(healthy, timeout, lambda: f"Airflow components not healthy; last health answer: {last}")

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def logs_tails(self) -> str:
        return "\n".join(f"----- {name} -----\n{self.log_tail(name, 2500)}" for name in self.processes)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM each component's process group, then SIGKILL whatever is left after ``grace`` seconds."""
        for proc in self.processes.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.processes.values():
            # The group may outlive its leader (task processes), so always sweep it.
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"warning: process {proc.pid} did not exit after SIGKILL", file=sys.stderr)
        self.processes.clear()

    def admin_password(self) -> str:
        path = self.home / PASSWORDS_FILE
        if not path.exists():
            raise ClusterError(f"the simple auth manager did not write {path}")
        return json.loads(path.read_text())[ADMIN]

    def api(self) -> AirflowApi:
        response = httpx.post(
            f"{self.base_url}/auth/token",
            json={"username": ADMIN, "password": self.admin_password()},
            timeout=30,
        )
        if response.status_code != 201:
            raise ClusterError(f"POST /auth/token answered {response.status_code}: {response.text[:300]}")
        return AirflowApi(self.base_url, response.json()["access_token"], self)


PIDFILE_ENV = "COGNITO_MIGRATION_E2E_PIDFILE"


def register_process_group(pid: int) -> None:
    """Note a process group we started, so scripts/e2e.py can end it even if pytest itself is killed."""
    pidfile = os.environ.get(PIDFILE_ENV)
    if pidfile:
        with open(pidfile, "a") as fh:
            fh.write(f"{pid}\n")


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def wait_until(predicate: Callable[[], bool], timeout: float, describe: Callable[[], str], every: float = 1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ClusterError(f"after {timeout:.0f} s: {describe()}")
        time.sleep(every)


class AirflowApi:
    """The REST calls the UI makes, with the bearer token of the simple auth manager's admin."""

    def __init__(self, base_url: str, token: str, cluster: AirflowCluster) -> None:
        self.token = token
        self.cluster = cluster
        self.http = httpx.Client(
            base_url=f"{base_url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ClusterError(f"{method} /api/v2{path} answered {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Until the dag-processor has parsed ``dag_id``; an import error fails at once, with the error."""
        found: dict[str, Any] = {}

        def parsed() -> bool:
            self.cluster.check_alive()
            self.raise_import_errors()
            response = self.http.get(f"/dags/{dag_id}/details")
            if response.status_code == 200:
                found.update(response.json())
                return True
            return False

        wait_until(parsed, timeout, lambda: f"DAG {dag_id} never appeared\n{self.cluster.logs_tails()}")
        return found

    def raise_import_errors(self) -> None:
        errors = self._call("GET", "/importErrors")["import_errors"]
        if errors:
            raise ClusterError(f"DAG import errors: {json.dumps(errors)[:3000]}")

    def tasks(self, dag_id: str) -> dict[str, dict[str, Any]]:
        return {t["task_id"]: t for t in self._call("GET", f"/dags/{dag_id}/tasks")["tasks"]}

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any], note: str = "") -> str:
        """``POST /dags/{id}/dagRuns`` with the body the UI's trigger form sends (manual run, no logical date)."""
        body = {"conf": conf, "logical_date": None, "note": note or None}
        return str(self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        state: dict[str, Any] = {}

        def finished() -> bool:
            self.cluster.check_alive()
            self.raise_import_errors()  # a task cannot start while its DAG file fails to import: it would wait forever
            state.update(self.run(dag_id, run_id))
            return state.get("state") in TERMINAL_RUN_STATES

        wait_until(
            finished,
            timeout,
            lambda: f"run {run_id} still {state.get('state')}; tasks: {self.task_states(dag_id, run_id)}",
            every=2,
        )
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(
            self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
                "task_instances"
            ]
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``task_id[map_index]`` → state, for assertions and failure messages."""
        out = {}
        for ti in self.task_instances(dag_id, run_id):
            key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            out[key] = str(ti.get("state"))
        return out

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        response = self.http.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "text/plain"},
        )
        return response.text

    def failure_logs(self, dag_id: str, run_id: str, chars: int = 3000) -> str:
        """The log tail of every failed task instance: what a person would open in the UI first."""
        parts = []
        for ti in self.task_instances(dag_id, run_id):
            if ti.get("state") in ("failed", "upstream_failed", "up_for_retry"):
                log = self.task_log(dag_id, run_id, ti["task_id"], max(1, ti.get("try_number") or 1), ti["map_index"])
                parts.append(f"----- {ti['task_id']}[{ti['map_index']}] {ti['state']} -----\n{log[-chars:]}")
        return "\n".join(parts)

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        body = self._call(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"map_index": map_index, "deserialize": True},
        )
        return body["value"]

    def pools(self) -> dict[str, int]:
        return {p["name"]: p["slots"] for p in self._call("GET", "/pools", params={"limit": 100})["pools"]}


# -- helpers the e2e tests share ---------------------------------------------------------------------------

SUCCESS_STATES = {"success", "skipped"}


def form_conf(details: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The conf the trigger form posts: every param at its form value (the defaults), with the user's edits."""
    conf = {name: param["value"] for name, param in details["params"].items()}
    unknown = set(overrides) - set(conf)
    assert not unknown, f"the form has no fields {sorted(unknown)}"
    return {**conf, **overrides}


def production_identities(stack: Any) -> list[dict[str, Any]]:
    """The identities in the emulator's production tenant, read through its admin API."""
    response = httpx.get(f"{stack.avnology_url}/_emulator/state", params={"tenant": "production"}, timeout=30)
    response.raise_for_status()
    return list(response.json()["identities"])
