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
from cognito_migration.params import parse_params
from emulators.airflow_home import PROJECT_ROOT

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
