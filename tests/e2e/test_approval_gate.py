"""The production gate's human approval, answered the way the Airflow UI answers it, on the real scheduler.

``dag.test()`` cannot show this: it would wait forever for a person. Here the run is triggered through the
REST API with ``require_approval``; the ``gate`` task must park waiting for input with nothing in production
yet, show the staging dry-run summary in its HITL detail, and move on only when someone answers it with the
same ``PATCH .../hitlDetails`` call the UI's "Required actions" page makes. "Approve" must end in a successful
run with the identities in production; "Reject" must fail the run at the gate with production still empty.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cognito_migration.ledger import Ledger
from cognito_migration.params import MigrationParams
from tests.e2e.cluster import SUCCESS_STATES, AirflowApi, AirflowCluster, form_conf, production_identities, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DAG_ID = "cognito_migration"
GATE = "gate"
USERS = 150
GATE_TIMEOUT_S = 420
RUN_TIMEOUT_S = 300
WAITING_STATES = {"deferred", "awaiting_input"}  # 3.3 parks a HITL task in awaiting_input; older ones defer it


def _hitl_path(run_id: str) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{GATE}/-1/hitlDetails"


def _api_json(api: AirflowApi, method: str, path: str, **kwargs: Any) -> Any:
    response = api.http.request(method, path, **kwargs)
    assert response.status_code < 400, f"{method} /api/v2{path} answered {response.status_code}: {response.text[:500]}"
    return response.json()


def _start_run_and_wait_at_gate(api: AirflowApi, stack: Any, note: str) -> tuple[Any, str, dict[str, Any]]:
    """Seed a pool, trigger with ``require_approval``, and return once the gate is waiting for a person."""
    from emulators.cognito_seed import seed_pool

    details = api.wait_for_dag(DAG_ID)
    pool = seed_pool(stack.cognito_client(), users=USERS)
    conf = form_conf(
        details,
        user_pool_id=pool.user_pool_id,
        region=pool.region,
        stop_after="import",
        batch_size=40,
        userlist_budget_rps=30.0,
        require_approval=True,
    )
    MigrationParams.model_validate(conf)
    api.unpause(DAG_ID)
    run_id = api.trigger(DAG_ID, conf, note=note)
    states: dict[str, str] = {}

    def gate_waiting() -> bool:
        api.cluster.check_alive()
        states.clear()
        states.update(api.task_states(DAG_ID, run_id))
        if states.get(GATE) in WAITING_STATES:
            return True
        run = api.run(DAG_ID, run_id)
        if run["state"] in ("success", "failed") or states.get(GATE) in ("failed", "upstream_failed", "success"):
            raise AssertionError(
                f"run {run_id} got past the gate without an answer (run {run['state']}, tasks {states})\n"
                f"{api.failure_logs(DAG_ID, run_id)}"
            )
        return False

    wait_until(gate_waiting, GATE_TIMEOUT_S, lambda: f"the gate never waited for input; tasks: {states}", every=2)
    return pool, run_id, dict(states)


def _check_waiting_gate(api: AirflowApi, stack: Any, run_id: str, states: dict[str, str]) -> dict[str, Any]:
    """Nothing imported yet, and the HITL detail shows the dry run's figures; returns that detail."""
    not_started = {k: v for k, v in states.items() if k.startswith("import_batch") and v not in ("None", "")}
    assert not not_started, f"import tasks started before the approval: {not_started}"
    assert production_identities(stack) == [], "production holds identities before anyone approved"

    detail = _api_json(api, "GET", _hitl_path(run_id))
    assert detail["response_received"] is False and not detail["chosen_options"], detail
    assert set(detail["options"]) == {"Approve", "Reject"}, detail["options"]

    dry_runs = [k for k, v in states.items() if k.startswith("dry_run[")]
    assert dry_runs and all(states[k] == "success" for k in dry_runs), states
    dry_run_users = sum(
        int(api.xcom(DAG_ID, run_id, "dry_run", int(key[len("dry_run[") : -1]))["users"]) for key in dry_runs
    )
    assert dry_run_users > 0
    assert f"| users | {dry_run_users:,} |" in detail["body"], (
        f"the body does not show the {dry_run_users} dry-run users:\n{detail['body']}"
    )
    assert f"Import {dry_run_users:,} users of " in detail["subject"], detail["subject"]
    assert "Staging dry run" in detail["body"] and f"over {len(dry_runs)} batches" in detail["body"], detail["body"]
    return detail


def _answer(api: AirflowApi, run_id: str, option: str) -> dict[str, Any]:
    """What the UI's approval form sends."""
    answer = _api_json(api, "PATCH", _hitl_path(run_id), json={"chosen_options": [option]})
    assert answer["chosen_options"] == [option], answer
    again = api.http.patch(_hitl_path(run_id), json={"chosen_options": [option]})
    return {"answer": answer, "second_answer_status": again.status_code}


@pytest.mark.timeout(GATE_TIMEOUT_S + RUN_TIMEOUT_S + 300)
def test_approved_gate_imports_into_production(
    cluster: AirflowCluster, api: AirflowApi, clean_stack: Any, artifacts: Path
) -> None:
    pool, run_id, states = _start_run_and_wait_at_gate(api, clean_stack, "make e2e: approval gate, approve")
    _check_waiting_gate(api, clean_stack, run_id, states)
    time.sleep(5)  # a gate that ignored the missing answer would move on now; it must still be waiting
    assert api.task_states(DAG_ID, run_id)[GATE] in WAITING_STATES
    assert production_identities(clean_stack) == []

    answered = _answer(api, run_id, "Approve")
    run = api.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT_S)
    final = api.task_states(DAG_ID, run_id)
    (artifacts / "run-approval-approve.json").write_text(json.dumps({"run": run, "tasks": final, **answered}, indent=1))
    assert run["state"] == "success", (
        f"run {run_id} ended {run['state']}; tasks: {final}\n{api.failure_logs(DAG_ID, run_id)}"
    )
    assert final[GATE] == "success"
    not_ok = {k: v for k, v in final.items() if v not in SUCCESS_STATES}
    assert not not_ok, f"task instances not successful: {not_ok}"
    assert answered["second_answer_status"] == 409, "a second answer to the same gate must be refused"

    gate_summary = api.xcom(DAG_ID, run_id, GATE)
    assert gate_summary["passed"] is True and gate_summary["approved_by"] == "admin", gate_summary

    ledger = Ledger(cluster.extra_env["COGNITO_MIGRATION_LEDGER_URL"])
    try:
        counts = ledger.counts(pool.user_pool_id)
    finally:
        ledger.engine.dispose()
    imported = counts.get("imported", 0) + counts.get("already_present", 0)
    identities = production_identities(clean_stack)
    assert imported > 0 and not counts.get("pending") and not counts.get("failed"), counts
    assert len(identities) == imported, f"production holds {len(identities)} identities, the ledger {imported}"


@pytest.mark.timeout(GATE_TIMEOUT_S + RUN_TIMEOUT_S + 300)
def test_rejected_gate_fails_before_production(
    cluster: AirflowCluster, api: AirflowApi, clean_stack: Any, artifacts: Path
) -> None:
    _pool, run_id, states = _start_run_and_wait_at_gate(api, clean_stack, "make e2e: approval gate, reject")
    _check_waiting_gate(api, clean_stack, run_id, states)

    answered = _answer(api, run_id, "Reject")
    run = api.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT_S)
    final = api.task_states(DAG_ID, run_id)
    (artifacts / "run-approval-reject.json").write_text(json.dumps({"run": run, "tasks": final, **answered}, indent=1))
    assert run["state"] == "failed", f"a rejected run ended {run['state']}; tasks: {final}"
    assert final[GATE] == "failed", final
    imports = {k: v for k, v in final.items() if k.startswith("import_batch")}
    assert imports and all(v == "upstream_failed" for v in imports.values()), imports
    assert production_identities(clean_stack) == [], "a rejected gate let identities into production"
