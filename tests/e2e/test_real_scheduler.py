"""The migration driven the way its users drive it: the real scheduler, the REST API, the UI's trigger form.

``dag.test()`` runs a DAG in one process; here the scheduler queues the tasks, LocalExecutor runs them in their
own processes through the Execution API, pools are enforced, and the run is triggered with ``POST /dagRuns``
and the conf the trigger form sends. Then the outputs are checked where a person would look: the run folder
and its report, the Avnology tenant (the emulator's state), the SMTP capture, the ledger.

Each stage's checks run when the DAG wires that stage (task ids from the wiring contract), so the test grows with
the pipeline; ``test_dag_wires_every_stage`` (test_trigger_form.py) makes sure none is missing. The run goes
once under LocalExecutor and once under CeleryExecutor (the local Redis as broker), the compose deployment's.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from cognito_migration.ledger import Ledger
from cognito_migration.params import MigrationParams
from tests.e2e.cluster import SUCCESS_STATES, AirflowApi, AirflowCluster, form_conf

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DAG_ID = "cognito_migration"
USERS = 150
RUN_TIMEOUT_S = 600


@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
@pytest.mark.parametrize("cluster", ["LocalExecutor", "CeleryExecutor"], indirect=True)
def test_migration_triggered_through_the_rest_api_runs_to_success(
    cluster: AirflowCluster, api: AirflowApi, clean_stack: Any, artifacts: Path
) -> None:
    from emulators.cognito_seed import seed_pool

    details = api.wait_for_dag(DAG_ID)
    tasks = api.tasks(DAG_ID)
    pools = api.pools()
    for task in tasks.values():
        assert task["pool"] in pools, f"task {task['task_id']} names pool {task['pool']!r}, which init did not import"

    pool = seed_pool(clean_stack.cognito_client(), users=USERS)
    conf = form_conf(
        details,
        user_pool_id=pool.user_pool_id,
        region=pool.region,
        stop_after="emails",
        batch_size=40,
        userlist_budget_rps=30.0,
        email_mode="send",
        emails_per_second=200.0,
        campaign="e2e-reset",
    )
    MigrationParams.model_validate(conf)  # what the tasks will parse: a bad conf fails here, named

    api.unpause(DAG_ID)
    started = time.monotonic()
    run_id = api.trigger(DAG_ID, conf, note="make e2e")
    run = api.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT_S)
    elapsed = time.monotonic() - started
    states = api.task_states(DAG_ID, run_id)
    (artifacts / f"run-{cluster.executor.lower()}.json").write_text(
        json.dumps({"run": run, "tasks": states, "elapsed_s": elapsed}, indent=1)
    )
    assert run["state"] == "success", (
        f"run {run_id} ended {run['state']}; tasks: {states}\n{api.failure_logs(DAG_ID, run_id)}"
    )
    assert run["conf"]["user_pool_id"] == pool.user_pool_id
    not_ok = {k: v for k, v in states.items() if v not in SUCCESS_STATES}
    assert not not_ok, f"task instances not successful: {not_ok}"

    ledger = Ledger(cluster.extra_env["COGNITO_MIGRATION_LEDGER_URL"])
    try:
        _check_stages(
            api, run_id, tasks, states, pool, ledger, clean_stack, Path(cluster.extra_env["COGNITO_MIGRATION_STORAGE"])
        )
    finally:
        ledger.engine.dispose()


def _check_stages(
    api: AirflowApi,
    run_id: str,
    tasks: dict[str, Any],
    states: dict[str, str],
    pool: Any,
    ledger: Ledger,
    stack: Any,
    storage: Path,
) -> None:
    preflight = api.xcom(DAG_ID, run_id, "preflight")
    run_dir = Path(re.sub(r"^file://", "", str(preflight["run_dir"])))
    assert run_dir.is_dir() and run_dir.is_relative_to(storage), f"run folder {run_dir} is not under {storage}"
    assert (run_dir.stat().st_mode & 0o077) == 0, "the run folder holds personal data and must be private"
    assert preflight["user_pool_id"] == pool.user_pool_id

    if "extract" in tasks:
        shards = [k for k, v in states.items() if k.startswith("extract[") and v == "success"]
        assert len(shards) == 16, f"expected 16 extract shards, got {sorted(shards)}"
        seen = 0
        for page in sorted(run_dir.glob("raw/shard-*/page-*.json")):
            seen += len(json.loads(page.read_text())["users"])
        assert seen == pool.total, f"the raw pages hold {seen} users; the pool has {pool.total}"
    if "memberships" in tasks:
        lines = (run_dir / "memberships.jsonl").read_text().splitlines()
        assert len([line for line in lines if line.strip()]) == pool.memberships

    counts = ledger.counts(pool.user_pool_id)
    if "convert" in tasks:
        assert sum(counts.values()) == pool.total, f"the ledger accounts for {counts}, the pool has {pool.total}"
        assert (run_dir / "convert_summary.json").is_file()
    if "import_batch" in tasks:
        imported = counts.get("imported", 0) + counts.get("already_present", 0)
        assert imported > 0 and not counts.get("failed") and not counts.get("pending"), counts
        tenant = httpx.get(f"{stack.avnology_url}/_emulator/state", params={"tenant": "production"}, timeout=30)
        tenant.raise_for_status()
        identities = tenant.json()["identities"]
        assert len(identities) == imported, f"production holds {len(identities)} identities, the ledger {imported}"
    if "send_emails" in tasks:
        sent = [row for row in ledger.email_sends(pool.user_pool_id, "e2e-reset") if row["status"] == "sent"]
        recipients = Counter(r.lower() for m in stack.smtp.messages for r in m.recipients)
        assert sent and len(recipients) == len(sent), f"{len(sent)} sends in the ledger, {len(recipients)} recipients"
        assert max(recipients.values()) == 1, "a user got the reset email twice"
        users = ledger.get_many(pool.user_pool_id, [row["sub"] for row in sent])
        assert set(recipients) == {users[row["sub"]]["email"].lower() for row in sent}, "mail went to the wrong users"
        assert all(users[row["sub"]]["status"] in ("imported", "already_present") for row in sent)
    if "report" in tasks:
        report = json.loads((run_dir / "report.json").read_text())
        assert report["conservation"]["holds"], report["conservation"]
        assert report["conservation"]["seen"] == pool.total
        assert report["status_counts"] == counts, f"report {report['status_counts']} vs ledger {counts}"
