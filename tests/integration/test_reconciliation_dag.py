"""User story: during the 30 days after cutover, the daily reconciliation carries over exactly the users that
changed in Cognito, once, and stays quiet when there is nothing (or no window) to reconcile.

Every run is the real ``cognito_reconciliation`` DAG under ``dag.test()`` against the local stack (moto, the
Avnology emulator, the SMTP sink), after a real ``cognito_migration`` run.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cognito_migration import ledger as L
from cognito_migration import storage
from cognito_migration.reconcile_params import parse_reconcile_params
from cognito_migration.reconcile_stage import pool_folder, pool_params, resolve_plan, run_decommission
from emulators import cognito_seed as seed

pytestmark = pytest.mark.slow

PATCH_ROUTE = "PATCH /v1/identities/{identity_id}"
# dag.test() runs tasks in this process, where a run's conf sticks to the DAG's Param objects and leaks into the
# next run of the same DAG object: each run states the values it depends on.
FRESH = {"user_pool_id": "", "final_report": False, "email_mode": "preview"}


@pytest.fixture
def run_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COGNITO_MIGRATION_STORAGE", str(tmp_path / "storage"))
    return tmp_path / "storage"


def _states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _succeeded(dag_run: Any) -> bool:
    return str(dag_run.state).endswith("success")


def _production(stack: Any) -> dict[str, Any]:
    return stack.avnology.state("production")


def _recipients(stack: Any) -> Counter[str]:
    return Counter(r.lower() for m in stack.smtp.messages for r in m.recipients)


def test_after_migration_exactly_the_changed_users_are_carried_over_patched_or_reported(
    clean_stack: Any, ledger_url: str, dagbag: Any, run_storage: Path
) -> None:
    stack = clean_stack
    client = stack.cognito_client()
    pool = seed.seed_pool(client, users=40)
    conf = {"user_pool_id": pool.user_pool_id, "region": stack.config.region, "email_mode": "send"}
    migration = dagbag.get_dag("cognito_migration").test(run_conf=conf)
    assert _succeeded(migration), _states(migration)
    ledger = L.Ledger(ledger_url)
    assert ledger.first_cutover(pool.user_pool_id) is not None

    # What changed in Cognito since the cutover.
    rows = list(ledger.users(pool.user_pool_id))
    by_status = {s: [r for r in rows if r["status"] == s] for s in L.ALL_STATUSES}
    plain = [r for r in by_status[L.IMPORTED] if r["cognito_enabled"] and not r["federated"]]
    modified, disabled, deleted, crashed = plain[:4]
    rejected = next(r for r in by_status[L.REJECTED] if r["reason"] == "invalid_email")
    new_sub = seed.add_user(client, pool.user_pool_id, "late_signup", "late.signup@example.com", groups=["viewers"])
    seed.modify_user(client, pool.user_pool_id, modified["username"], given_name="Renamed")
    seed.disable_user(client, pool.user_pool_id, disabled["username"])
    seed.delete_user(client, pool.user_pool_id, deleted["username"])
    seed.modify_user(client, pool.user_pool_id, rejected["username"], email="fixed.address@example.com")
    # An import that created the identity but crashed before the ledger heard of it: the ledger says failed.
    with ledger.engine.begin() as conn:
        conn.execute(
            sa.update(L.users)
            .where(L.users.c.user_pool_id == pool.user_pool_id, L.users.c.sub == crashed["sub"])
            .values(status=L.FAILED, reason="transport_error", avnology_id=None)
        )

    before = _production(stack)
    identities_before = {i["id"]: i for i in before["identities"]}
    sent_before = _recipients(stack)

    # No pool in the form: the migration's cutover Asset event names it (as on a scheduled run).
    sweep = dagbag.get_dag("cognito_reconciliation").test(run_conf={**FRESH, "email_mode": "send"})
    assert _succeeded(sweep), _states(sweep)
    report = json.loads((storage.run_dir(sweep.run_id) / "report.json").read_text())
    assert report["complete"], report["incomplete_reasons"]
    assert {k: report["counts"][k] for k in ("new", "retry", "modified", "disabled", "deleted")} == {
        "new": 1,
        "retry": 2,
        "modified": 1,
        "disabled": 1,
        "deleted": 1,
    }

    # New, fixed and crashed users are carried over: two created, the crashed one found again (no duplicate).
    after = {r["sub"]: r for r in ledger.users(pool.user_pool_id)}
    assert after[new_sub]["status"] == L.IMPORTED
    assert after[rejected["sub"]]["status"] == L.IMPORTED
    # (within the Idempotency-Key's 24 h the create replays the first answer; later, the 409 adopts it)
    assert after[crashed["sub"]]["status"] in L.SUCCESS_STATUSES
    assert after[crashed["sub"]]["avnology_id"] == crashed["avnology_id"]
    carried = {u["sub"] for u in report["carried_over_today"]}
    assert carried == {new_sub, rejected["sub"], crashed["sub"]}
    state = _production(stack)
    identities = {i["id"]: i for i in state["identities"]}
    assert len(identities) == len(identities_before) + 2
    assert state["counters"]["identities_created"] - before["counters"]["identities_created"] == 2
    new_identity = identities[after[new_sub]["avnology_id"]]
    assert new_identity["email"] == "late.signup@example.com"
    assert any(p["subject"].endswith(new_identity["id"]) and p["object"] == "viewers" for p in state["permissions"])

    # Modified: one PATCH with exactly the changed fields; the other fields untouched.
    assert state["counters"]["by_route"][PATCH_ROUTE] - before["counters"]["by_route"].get(PATCH_ROUTE, 0) == 1
    patched = identities[modified["avnology_id"]]
    was = identities_before[modified["avnology_id"]]
    assert patched["first_name"] == "Renamed"
    assert {k: patched[k] for k in ("email", "last_name", "traits")} == {
        k: was[k] for k in ("email", "last_name", "traits")
    }
    sync = {u["sub"]: u for u in report["sync"]["users"]}
    assert sync[modified["sub"]]["mask"] == ["first_name", "admin_metadata"]
    assert after[modified["sub"]]["first_name"] == "Renamed"

    # Disabled since import: soft-deleted (the default policy). Deleted in Cognito: reported, identity kept.
    assert identities[disabled["avnology_id"]]["state"] == "scheduled_deletion"
    assert sync[disabled["sub"]]["outcome"] == "soft_deleted"
    assert identities[deleted["avnology_id"]]["state"] == "active"
    assert report["deleted_in_cognito"] == [deleted["sub"]]
    assert after[deleted["sub"]]["deleted_in_cognito_at"] is not None
    untouched = set(identities_before) - {modified["avnology_id"], disabled["avnology_id"]}
    assert all(identities[i] == identities_before[i] for i in untouched)

    # Emails: the two users who can now set a password got one each; nobody got a second one, ever.
    sent = _recipients(stack) - sent_before
    assert sent == Counter({"late.signup@example.com": 1, "fixed.address@example.com": 1})
    assert max(_recipients(stack).values()) == 1

    # The daily report: in the run folder and in the pool's folder, HTML and JSON, ids only.
    day_file = pool_folder(pool.user_pool_id) / f"day-{report['sweep_date']}.json"
    assert json.loads(day_file.read_text())["run_id"] == sweep.run_id
    assert "late.signup@example.com" not in day_file.read_text()
    assert (storage.run_dir(sweep.run_id) / "report.html").exists()
    assert report["progress"]["totals"]["carried_over"] == 3

    # A second run the same day does nothing.
    again = dagbag.get_dag("cognito_reconciliation").test(run_conf={**FRESH, **conf})
    assert _succeeded(again) and set(_states(again).values()) == {"skipped"}, _states(again)
    assert _production(stack)["counters"] == state["counters"]
    assert _recipients(stack) == sent_before + sent

    # The final report, as the decommission task writes it on the last day (called directly: the last day is 29
    # days away, and one more dag.test() would only repeat the sweep), then the purge of the per-user run files.
    assert _states(sweep)["decommission"] == "skipped"  # not the last day
    params = parse_reconcile_params({**conf, "final_report": True})
    decision, plan = resolve_plan(params, ledger=ledger)
    assert decision.sweep and decision.final
    result = run_decommission(params, pool_params(params, plan), sweep.run_id, plan)
    assert result["safe_to_decommission"] and result["unaccounted"] == 0
    summary = json.loads((pool_folder(pool.user_pool_id) / "final.json").read_text())
    checklist = summary["checklist"]
    assert checklist["safe_to_decommission"] and checklist["unaccounted"] == []
    never = {u["sub"]: u["reason"] for u in checklist["never_emailed"]["users"]}
    emailed = {s["sub"] for s in ledger.email_sends(pool.user_pool_id, "cutover-reset") if s["status"] == "sent"}
    assert set(never) == {r["sub"] for r in ledger.users(pool.user_pool_id)} - emailed
    assert {never[r["sub"]] for r in by_status[L.SKIPPED]} <= {"skipped:unconfirmed", "skipped:disabled"}
    assert all(never[r["sub"]] == "federated" for r in by_status[L.IMPORTED] if r["federated"])
    assert {new_sub, rejected["sub"], modified["sub"], disabled["sub"]} <= emailed  # disabled after its email
    purged = {p["run"] for p in summary["purge"]["purged"]}
    assert {storage.safe_run_id(r.run_id) for r in (migration, sweep)} <= purged
    for run in (migration, sweep):
        run_path = storage.run_dir(run.run_id)
        assert not (run_path / "raw").exists() and not (run_path / "identities").exists()
    assert (storage.run_dir(sweep.run_id) / "report.json").exists() and day_file.exists()  # aggregates stay


def test_no_window_no_sweep_and_the_run_says_why(
    clean_stack: Any, ledger_url: str, dagbag: Any, run_storage: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = dagbag.get_dag("cognito_reconciliation")
    never_migrated = "us-east-1_NeverMigrated"

    before = dag.test(run_conf={**FRESH, "user_pool_id": never_migrated})
    assert _succeeded(before) and set(_states(before).values()) == {"skipped"}
    assert "no cutover recorded for user pool us-east-1_NeverMigrated" in capfd.readouterr().out

    expired = "us-east-1_Expired"
    ledger = L.Ledger(ledger_url).create_schema()
    ledger.record_cutover(
        expired, "manual__long_ago", cutover_at=L.utcnow() - timedelta(days=31), window_days=30, organization_id=None
    )
    late = dag.test(run_conf={**FRESH, "user_pool_id": expired})
    assert _succeeded(late) and set(_states(late).values()) == {"skipped"}
    assert "30-day window of us-east-1_Expired closed at" in capfd.readouterr().out
    assert not (run_storage / "reconciliation" / expired).exists() or not any(
        (run_storage / "reconciliation" / expired).iterdir()
    )
    decision, _ = resolve_plan(parse_reconcile_params({"user_pool_id": expired}), ledger=ledger)
    assert not decision.sweep and not decision.final
