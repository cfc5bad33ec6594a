"""The migration's cutover Asset event starts the reconciliation, on the real scheduler.

``dag.test()`` cannot show this: it starts a run itself, so it never exercises the scheduler reading the
``cognito_migration_cutover`` event that ``cognito_migration``'s ``report`` task emits, queueing the consumer, and
creating an ``asset_triggered`` run whose ``plan`` task finds the pool in ``triggering_asset_events``. Here the
migration is triggered through the REST API with ``cognito_reconciliation`` unpaused; the scheduler must then create
that run by itself. It must succeed, sweep the migrated pool (named only by the event: the form is left empty), and,
since nothing changed in Cognito, carry nobody over: production, the ledger and the SMTP inbox stay as they were.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cognito_migration.ledger import Ledger
from cognito_migration.params import MigrationParams
from tests.e2e.cluster import SUCCESS_STATES, AirflowApi, AirflowCluster, form_conf, production_identities, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MIGRATION = "cognito_migration"
RECONCILIATION = "cognito_reconciliation"
USERS = 60
MIGRATION_TIMEOUT_S = 420
QUEUE_TIMEOUT_S = 90  # the scheduler turns a queued asset event into a run within a few loops
SWEEP_TIMEOUT_S = 300
ACTION_CATEGORIES = ("new", "retry", "modified", "disabled", "deleted")


def _cron_far_from_now() -> str:
    """A daily cron 12 hours away: no scheduled run can start during the test (the timetable starts a missed run
    when unpaused within 10% of its interval, ~2.4 h), so the only reconciliation run is the asset-triggered one."""
    at = datetime.now(UTC) + timedelta(hours=12)
    return f"{at.minute} {at.hour} * * *"


@pytest.fixture(scope="module")
def cluster_extra_env() -> dict[str, str]:
    # The migration below sends its emails, so the scheduled sweep (no trigger form) must too: the deployment's
    # defaults, read when the dag-processor parses the reconciliation DAG.
    return {
        "COGNITO_RECONCILIATION_CRON": _cron_far_from_now(),
        "COGNITO_RECONCILIATION_DEFAULTS": json.dumps({"email_mode": "send", "campaign": "e2e-cutover"}),
    }


def _reconciliation_runs(api: AirflowApi) -> list[dict[str, Any]]:
    body = api._call("GET", f"/dags/{RECONCILIATION}/dagRuns", params={"limit": 100})
    return list(body["dag_runs"])


def _recipients(stack: Any) -> Counter[str]:
    return Counter(r.lower() for m in stack.smtp.messages for r in m.recipients)


@pytest.mark.timeout(MIGRATION_TIMEOUT_S + QUEUE_TIMEOUT_S + SWEEP_TIMEOUT_S + 300)
def test_cutover_event_starts_a_reconciliation_of_the_migrated_pool(
    cluster: AirflowCluster, api: AirflowApi, clean_stack: Any, artifacts: Path
) -> None:
    from emulators.cognito_seed import seed_pool

    details = api.wait_for_dag(MIGRATION)
    sweep_details = api.wait_for_dag(RECONCILIATION)
    # The deployment's defaults reached the parse: a scheduled sweep sends, as the migration did.
    assert sweep_details["params"]["email_mode"]["value"] == "send", sweep_details["params"]["email_mode"]
    assert sweep_details["params"]["user_pool_id"]["value"] == "", "the pool must come from the event, not the form"

    api.unpause(RECONCILIATION)
    assert _reconciliation_runs(api) == [], "a reconciliation ran before any cutover"

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
        campaign="e2e-cutover",
    )
    MigrationParams.model_validate(conf)
    api.unpause(MIGRATION)
    migration_id = api.trigger(MIGRATION, conf, note="make e2e: cutover triggers reconciliation")
    migration = api.wait_for_run(MIGRATION, migration_id, timeout=MIGRATION_TIMEOUT_S)
    assert migration["state"] == "success", (
        f"migration {migration_id} ended {migration['state']}; tasks: {api.task_states(MIGRATION, migration_id)}\n"
        f"{api.failure_logs(MIGRATION, migration_id)}"
    )
    cutover = api.xcom(MIGRATION, migration_id, "report")
    assert cutover["cutover_at"] and cutover["user_pool_id"] == pool.user_pool_id, cutover
    identities_before = {i["id"]: i for i in production_identities(clean_stack)}
    recipients_before = _recipients(clean_stack)
    assert identities_before and recipients_before, "the migration put nobody in production or mailed nobody"

    # The scheduler, not the test, starts the reconciliation.
    runs: list[dict[str, Any]] = []

    def reconciliation_created() -> bool:
        cluster.check_alive()
        runs[:] = _reconciliation_runs(api)
        return bool(runs)

    wait_until(
        reconciliation_created,
        QUEUE_TIMEOUT_S,
        lambda: f"the cutover event started no {RECONCILIATION} run\n{cluster.log_tail('scheduler')}",
        every=2,
    )
    assert len(runs) == 1, f"expected one reconciliation run, got {[(r['dag_run_id'], r['run_type']) for r in runs]}"
    sweep_id = runs[0]["dag_run_id"]
    assert runs[0]["run_type"] == "asset_triggered", runs[0]

    events = api._call("GET", f"/dags/{RECONCILIATION}/dagRuns/{sweep_id}/upstreamAssetEvents")["asset_events"]
    assert [(e["source_dag_id"], e["source_run_id"], e["source_task_id"]) for e in events] == [
        (MIGRATION, migration_id, "report")
    ], events
    assert events[0]["extra"]["user_pool_id"] == pool.user_pool_id, events[0]["extra"]
    assert events[0]["extra"]["cutover_at"], events[0]["extra"]

    sweep = api.wait_for_run(RECONCILIATION, sweep_id, timeout=SWEEP_TIMEOUT_S)
    states = api.task_states(RECONCILIATION, sweep_id)
    (artifacts / "run-cutover-reconciliation.json").write_text(
        json.dumps({"migration": migration, "sweep": sweep, "tasks": states, "events": events}, indent=1, default=str)
    )
    assert sweep["state"] == "success", (
        f"reconciliation {sweep_id} ended {sweep['state']}; tasks: {states}\n{api.failure_logs(RECONCILIATION, sweep_id)}"
    )
    not_ok = {k: v for k, v in states.items() if v not in SUCCESS_STATES}
    assert not not_ok, f"task instances not successful: {not_ok}"
    assert states["plan"] == "success" and states["diff"] == "success" and states["report"] == "success", states

    # It swept the pool the event named: the plan resolved it, the run's extract and report are of that pool.
    plan = api.xcom(RECONCILIATION, sweep_id, "plan")
    assert plan["user_pool_id"] == pool.user_pool_id and plan["region"] == pool.region, plan
    assert plan["day"] == 1 and plan["final"] is False, plan
    preflight = api.xcom(RECONCILIATION, sweep_id, "preflight")
    assert preflight["user_pool_id"] == pool.user_pool_id, preflight
    daily = api.xcom(RECONCILIATION, sweep_id, "report")
    report_path = Path(re.sub(r"^file:(//)?", "", str(daily["report_json"])))
    assert report_path.is_relative_to(cluster.extra_env["COGNITO_MIGRATION_STORAGE"]), report_path
    report = json.loads(report_path.read_text())
    assert report["user_pool_id"] == pool.user_pool_id and report["run_id"] == sweep_id
    assert report["complete"], report["incomplete_reasons"]

    # Nothing changed in Cognito since the cutover: nobody to carry over, patch or report.
    assert {k: report["counts"][k] for k in ACTION_CATEGORIES} == dict.fromkeys(ACTION_CATEGORIES, 0), report["counts"]
    assert daily["carried_over"] == 0 and report["carried_over_today"] == [], report["carried_over_today"]
    assert states["convert"] == "skipped", states  # "nobody to carry over today"
    identities_after = {i["id"]: i for i in production_identities(clean_stack)}
    assert identities_after == identities_before, "the sweep changed production although Cognito did not change"
    assert _recipients(clean_stack) == recipients_before, "the sweep mailed someone although nobody was carried over"

    ledger = Ledger(cluster.extra_env["COGNITO_MIGRATION_LEDGER_URL"])
    try:
        assert report["ledger"] == dict(sorted(ledger.counts(pool.user_pool_id).items())), report["ledger"]
    finally:
        ledger.engine.dispose()

    # One event, one run: the cron is hours away.
    assert [r["dag_run_id"] for r in _reconciliation_runs(api)] == [sweep_id]
