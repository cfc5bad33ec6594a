"""User story: the reset-email campaign reaches every eligible user exactly once, even when the worker dies.

Counted at the real SMTP sink: what the server received is what users would see.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from typing import Any

import pytest

from cognito_migration import ledger as L
from cognito_migration import notify
from cognito_migration.avnology import AvnologyClient
from cognito_migration.params import parse_params
from emulators.airflow_home import PROJECT_ROOT
from emulators.cognito_seed import seed_pool

POOL = "us-east-1_Campaign1"
RUN = "manual__2026-11-26T11:00:00+00:00"
USERS = [f"user{i:02d}" for i in range(12)]
KILL_AT = 5  # the worker dies while waiting for the server's answer to the 5th message

# The worker, as a separate process that can be SIGKILLed (a task killed by the OOM killer or a lost node).
WORKER = """
import json, sys
from cognito_migration import ledger as L, notify
from cognito_migration.params import parse_params
form, run_id, subs, url = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
notify.send_emails_for_subs(parse_params(form), run_id, subs, label="doomed", ledger=L.Ledger(url))
"""


def _seed(ledger: L.Ledger) -> None:
    ledger.record_seen(
        POOL,
        [L.SeenUser(s, s, f"{s}@example.com", "CONFIRMED", True, None, first_name=s.title()) for s in USERS],
        run_id=RUN,
    )
    for sub in USERS:
        ledger.record_import(
            POOL, sub, avnology_id=f"usr_{sub}", already_present=False, cognito_last_modified=None, run_id=RUN
        )


def test_campaign_killed_midway_then_rerun_sends_no_duplicates(
    clean_stack: Any, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = clean_stack.smtp
    ledger = L.Ledger(ledger_url).create_schema()
    _seed(ledger)
    form = {"user_pool_id": POOL, "email_mode": "send", "emails_per_second": 200}

    # The sink stores the KILL_AT-th message, then sits on its "250" until the worker is dead: the message was
    # accepted, the worker never learnt it. That is the one window where at-most-once has to hold.
    stored, release = threading.Event(), threading.Event()
    store = sink._store

    def store_then_hold(message: Any) -> None:
        store(message)
        if len(sink.messages) == KILL_AT:
            stored.set()
            release.wait(30)

    monkeypatch.setattr(sink, "_store", store_then_hold)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)])}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(form), RUN, json.dumps(USERS), ledger_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert stored.wait(60), "the worker never reached the message it should die on"
        worker.kill()
        worker.wait(30)
    finally:
        release.set()
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -9

    before = {r["sub"]: r["status"] for r in ledger.email_sends(POOL, "cutover-reset")}
    assert Counter(before.values()) == Counter({L.EMAIL_SENT: KILL_AT - 1, L.EMAIL_CLAIMED: 1})
    stuck = next(sub for sub, status in before.items() if status == L.EMAIL_CLAIMED)

    out = notify.send_emails_for_subs(parse_params(form), RUN, USERS, label="rerun", ledger=ledger)

    assert out["sent"] == len(USERS) - KILL_AT
    assert out["unknown"] == 1 and out["ineligible"] == {"already_sent": KILL_AT - 1}
    received = Counter(r for m in sink.messages for r in m.recipients)
    assert received == Counter({f"{s}@example.com": 1 for s in USERS})  # the stuck user got theirs, once
    assert {r["sub"]: r["status"] for r in ledger.email_sends(POOL, "cutover-reset")}[stuck] == L.EMAIL_CLAIMED
    assert notify.campaign_status(ledger, POOL, "cutover-reset") == {
        "sent": len(USERS) - 1,
        "failed": 0,
        "unknown": 1,
    }


# --- the real DAG under dag.test(): import, then the campaign ----------------------------------------------------


def _expected_recipients(user_pool_id: str) -> tuple[set[str], set[str]]:
    """Straight from the ledger rows (not through notify): who must get an email, and who must not."""
    to_email, not_to_email = set(), set()
    for row in L.Ledger().users(user_pool_id):
        if not row["email"]:
            continue
        wanted = row["status"] in L.SUCCESS_STATUSES and row["cognito_enabled"] and not row["federated"]
        (to_email if wanted else not_to_email).add(row["email"].lower())
    return to_email, not_to_email


def test_send_emails_runs_only_after_a_successful_import_behind_the_gate(dagbag: Any) -> None:
    dag = dagbag.get_dag("cognito_migration")
    task = dag.get_task("send_emails")
    assert task.trigger_rule == "all_success"
    assert {"import_batch", "gate", "dry_run"} <= task.get_flat_relative_ids(upstream=True)
    assert task.pool == "smtp_sends"


@pytest.mark.slow
def test_the_dag_emails_every_eligible_imported_user_once_and_nobody_else(
    dagbag: Any, clean_stack: Any, ledger_url: str
) -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    seeded = seed_pool(clean_stack.cognito_client(), 80, seed=11, pool_name="email-dag-pool")
    conf = {
        "user_pool_id": seeded.user_pool_id,
        "stop_after": "emails",
        "email_mode": "send",
        "emails_per_second": 200,
        "max_reject_ratio": 0.3,
    }

    run = dagbag.get_dag("cognito_migration").test(run_conf=conf)

    states = Counter((ti.task_id, ti.state) for ti in run.get_task_instances())
    assert run.state == "success", states
    assert states[("send_emails", "success")] == states[("import_batch", "success")] >= 1
    to_email, not_to_email = _expected_recipients(seeded.user_pool_id)
    ledger = L.Ledger()
    users = list(ledger.users(seeded.user_pool_id))
    assert any(not u["cognito_enabled"] and u["status"] in L.SUCCESS_STATUSES for u in users)  # imported blocked
    assert any(u["federated"] and u["status"] in L.SUCCESS_STATUSES for u in users)
    received = Counter(r.lower() for m in clean_stack.smtp.messages for r in m.recipients)
    assert set(received) == to_email and max(received.values()) == 1
    # The seeded pool has addresses that differ only in case: one user of such a pair may be eligible.
    assert not set(received) & (not_to_email - to_email)
    assert notify.campaign_status(ledger, seeded.user_pool_id, "cutover-reset") == {
        "sent": len(to_email),
        "failed": 0,
        "unknown": 0,
    }


@pytest.mark.slow
def test_a_failed_gate_sends_nothing(dagbag: Any, clean_stack: Any, ledger_url: str) -> None:
    client = clean_stack.cognito_client()
    seeded = seed_pool(client, 60, seed=12, pool_name="email-gate-pool")
    # Someone already holds six of these addresses in staging: the dry run reports conflicts over the threshold.
    taken = sorted(
        attrs["email"]
        for user in client.list_users(UserPoolId=seeded.user_pool_id, Limit=60)["Users"]
        if (attrs := {a["Name"]: a["Value"] for a in user["Attributes"]}).get("email")
        and user["Enabled"]
        and user["UserStatus"] == "CONFIRMED"
    )[:6]
    with AvnologyClient(clean_stack.avnology_url, clean_stack.staging_key) as staging:
        for n, address in enumerate(taken):
            staging.create_identity({"email": address}, idempotency_key=f"someone-else-{n}")
    conf = {
        "user_pool_id": seeded.user_pool_id,
        "stop_after": "emails",
        "email_mode": "send",
        "max_reject_ratio": 0.01,
    }

    run = dagbag.get_dag("cognito_migration").test(run_conf=conf)

    states = {(ti.task_id, ti.state) for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert ("gate", "failed") in states
    assert not any(task == "send_emails" and state == "success" for task, state in states)
    assert clean_stack.smtp.messages == []
    assert L.Ledger().email_sends(seeded.user_pool_id) == []
