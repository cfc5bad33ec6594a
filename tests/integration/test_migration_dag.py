"""User story: an engineer migrates a realistic pool end to end, then runs it again by mistake.

The real DAG runs with dag.test() against moto, the Avnology emulator and the SMTP sink. Every user must be
accounted for, created exactly once, and emailed at most once — also on the second run.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from cognito_migration import storage
from cognito_migration.ledger import Ledger
from emulators.cognito_seed import seed_pool

pytestmark = pytest.mark.slow

USERS = 120


def _production(stack: Any) -> dict[str, Any]:
    response = httpx.get(f"{stack.avnology_url}/_emulator/state", params={"tenant": "production"}, timeout=30)
    response.raise_for_status()
    return response.json()


def _run(dagbag: Any, conf: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    dag_run = dagbag.get_dag("cognito_migration").test(run_conf=conf)
    report = json.loads((storage.run_dir(dag_run.run_id) / "report.json").read_text())
    return dag_run, report


def test_pool_migrates_once_and_a_rerun_changes_nothing(clean_stack: Any, dagbag: Any, ledger_url: str) -> None:
    seeded = seed_pool(clean_stack.cognito_client(), users=USERS)
    conf = {"user_pool_id": seeded.user_pool_id, "region": seeded.region, "email_mode": "send"}

    dag_run, report = _run(dagbag, conf)

    assert str(dag_run.state).endswith("success"), report["conservation"]["equation"]
    conservation = report["conservation"]
    assert conservation["holds"] and conservation["seen"] == seeded.total
    assert conservation["pending"] == 0 and conservation["failed"] == 0
    reasons = {(r["status"], r["reason"]): r["count"] for r in report["reasons"]}
    assert reasons[("skipped", "unconfirmed")] == seeded.by_status.get("UNCONFIRMED", 0)
    assert reasons[("rejected", "no_email")] == seeded.phone_only
    assert reasons[("rejected", "invalid_email")] == seeded.invalid_emails

    ledger = Ledger(ledger_url)
    counts = ledger.counts(seeded.user_pool_id)
    state = _production(clean_stack)
    identities = state["identities"]
    assert len(identities) == counts["imported"]
    subs = Counter(i["admin_metadata"]["cognito"]["sub"] for i in identities)
    assert max(subs.values()) == 1, "an identity was created twice"

    messages = clean_stack.smtp.messages
    recipients = Counter(r.lower() for m in messages for r in m.recipients)
    assert messages and max(recipients.values()) == 1, "a user was emailed twice"
    emailed = {row["email_lower"] for row in ledger.users(seeded.user_pool_id) if row["email_lower"] in recipients}
    assert len(emailed) == len(recipients)
    for row in ledger.users(seeded.user_pool_id):
        if row["email_lower"] in recipients:
            assert row["cognito_enabled"] and not row["federated"]

    run_path = storage.run_dir(dag_run.run_id)
    for name in ("report.html", "rejects.csv", "cutover/kit.md", "auth0/batch-0001.json"):
        assert (run_path / name).exists(), name

    # The same pool again: nothing new is created, nobody is emailed again, and the report still balances.
    sent_before = len(messages)
    dag_run2, report2 = _run(dagbag, conf)
    assert str(dag_run2.state).endswith("success")
    assert report2["conservation"]["holds"]
    assert len(_production(clean_stack)["identities"]) == len(identities)
    assert len(clean_stack.smtp.messages) == sent_before
    assert Ledger(ledger_url).counts(seeded.user_pool_id) == counts
