"""The load stages on the real emulator and a real ledger: dry run, gate, import, resume, organization, CLI backend."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from cognito_migration import config, storage
from cognito_migration import ledger as L
from cognito_migration.avnology import AvnologyAuthError, idempotency_key
from cognito_migration.cli_backend import CliImportError
from cognito_migration.gate import DryRunGateOperator
from cognito_migration.ledger import Ledger
from cognito_migration.load import (
    GateFailed,
    ImportIncomplete,
    LoadError,
    evaluate_gate,
    run_dry_run,
    run_gate,
    run_import_batch,
)
from cognito_migration.params import parse_params
from tests.identity_lines import make_line, write_batches

FAKE_CLI = Path(__file__).parent / "fixtures" / "fake-avnology-cli"


@pytest.fixture
def pool() -> str:
    return f"us-east-1_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def run_id() -> str:
    return f"manual__{uuid.uuid4().hex}"


def params_for(pool: str, **overrides: Any) -> Any:
    return parse_params({"user_pool_id": pool, **overrides})


def state(stack: Any, tenant: str = "production") -> dict[str, Any]:
    return stack.avnology.state(tenant)


def creates(stack: Any, tenant: str = "production") -> int:
    return int(state(stack, tenant)["counters"]["by_route"].get("POST /v1/identities", 0))


def set_connection(monkeypatch: pytest.MonkeyPatch, stack: Any, conn_id: str, **changes: Any) -> None:
    """Override one Avnology connection for a test (key or extras), starting from the stack's."""
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    conn = json.loads(stack.connection_env()[name])
    extra = changes.pop("extra", None)
    conn.update(changes)
    if extra is not None:
        conn["extra"] = {**conn["extra"], **extra}
    monkeypatch.setenv(name, json.dumps(conn))


# --- dry run and gate ------------------------------------------------------------------------------------------


def test_dry_run_counts_would_create_conflict_and_invalid_and_creates_nothing(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str
) -> None:
    lines = [make_line(pool, n) for n in range(40)]
    lines[3] = make_line(pool, 3, timezone="Mars/Olympus")
    lines[4] = make_line(pool, 4, timezone="Europe/Atlantis")
    run_path = storage.run_dir(run_id)
    [batch] = write_batches(run_path, [lines], organization_name="dry-pool")
    # Staging already holds someone else's identity with user 7's email.
    from cognito_migration.avnology import AvnologyClient

    staging = AvnologyClient(clean_stack.avnology_url, clean_stack.staging_key)
    staging.create_identity({"email": lines[7]["email"]}, idempotency_key="other-origin")
    before = state(clean_stack, "staging")["counters"]["identities_created"]

    result = run_dry_run(params_for(pool), run_id, batch)

    assert {k: result[k] for k in ("users", "would_create", "already_present", "conflict", "invalid", "errors")} == {
        "users": 40,
        "would_create": 37,
        "already_present": 0,
        "conflict": 1,
        "invalid": 2,
        "errors": 0,
    }
    written = storage.read_json(run_path / "dry_run" / f"{batch}.json")
    assert written["reasons"] == {"conflict": {"email_taken": 1}, "invalid": {"invalid_timezone": 2}}
    assert written["mode"] == "validate_only" and written["tenant"] == config.AVNOLOGY_STAGING_CONN_ID
    assert {s["sub"] for s in written["samples"]} == {lines[3]["sub"], lines[4]["sub"], lines[7]["sub"]}
    assert "@" not in json.dumps(written)  # an aggregate: no emails
    assert state(clean_stack, "staging")["counters"]["identities_created"] == before
    assert state(clean_stack)["identities"] == []


def test_staging_import_mode_rehearses_the_import_in_staging_only(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str
) -> None:
    lines = [make_line(pool, n, groups=["staff"] if n % 2 else []) for n in range(12)]
    [batch] = write_batches(storage.run_dir(run_id), [lines], organization_name="rehearsal")
    params = params_for(pool, staging_mode="import")
    first = run_dry_run(params, run_id, batch)
    again = run_dry_run(params, run_id, batch)
    assert first["would_create"] == 12 and again["would_create"] + again["already_present"] == 12
    staging = state(clean_stack, "staging")
    assert len(staging["identities"]) == 12 and len(staging["organizations"]) == 1
    assert len(staging["permissions"]) == 6
    assert state(clean_stack)["identities"] == []
    assert Ledger().counts(pool) == {}  # the ledger tracks production only


def test_gate_passes_under_the_threshold_and_fails_readably_over_it() -> None:
    ok = {"users": 1000, "would_create": 995, "conflict": 2, "invalid": 3, "errors": 0, "reasons": {}}
    assert evaluate_gate({"batch-0001": ok}, max_reject_ratio=0.01).passed

    bad = {
        "users": 200,
        "would_create": 180,
        "conflict": 5,
        "invalid": 15,
        "errors": 0,
        "reasons": {"invalid": {"invalid_timezone": 15}, "conflict": {"email_taken": 5}},
    }
    decision = evaluate_gate({"batch-0001": ok, "batch-0002": bad}, max_reject_ratio=0.01)
    assert not decision.passed
    text = "; ".join(decision.reasons)
    assert "invalid 18 + conflict 7 = 25 of 1200 users (2.08%) exceeds max_reject_ratio 1.00%" in text
    assert "invalid_timezone 15" in text and "email_taken 5" in text
    assert "| invalid | 18 |" in decision.markdown()


def test_gate_fails_on_errors_missing_batches_and_a_failed_cli_dry_run() -> None:
    clean = {"users": 10, "would_create": 10, "reasons": {}}
    errors = {"users": 10, "would_create": 9, "errors": 1, "reasons": {"errors": {"server_error": 1}}}
    assert "unexpected error" in evaluate_gate({"batch-0001": errors}, max_reject_ratio=0.5).reasons[0]
    missing = evaluate_gate({"batch-0001": clean, "batch-0002": None}, max_reject_ratio=0.5)
    assert not missing.passed and "no dry-run result for 1 batches (batch-0002)" in missing.reasons[0]
    cli = evaluate_gate({"batch-0001": {**clean, "cli_exit_code": 3}}, max_reject_ratio=0.5)
    assert not cli.passed and "exited non-zero for batch-0001" in cli.reasons[0]
    assert evaluate_gate({}, max_reject_ratio=0.0).passed  # nothing to import is not an error


def test_gate_operator_without_approval_returns_the_summary_and_fails_over_the_threshold(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str
) -> None:
    run_path = storage.run_dir(run_id)
    storage.write_json(run_path / "dry_run" / "batch-0001.json", {"users": 100, "would_create": 100, "reasons": {}})
    gate = DryRunGateOperator(task_id="gate", batch_ids=["batch-0001"])
    summary = gate.execute({"params": {"user_pool_id": pool}, "run_id": run_id})
    assert summary["passed"] and summary["totals"]["users"] == 100
    assert storage.read_json(run_path / "dry_run" / "summary.json")["passed"] is True

    storage.write_json(
        run_path / "dry_run" / "batch-0002.json",
        {"users": 100, "would_create": 90, "invalid": 10, "reasons": {"invalid": {"invalid_phone": 10}}},
    )
    gate = DryRunGateOperator(task_id="gate", batch_ids=["batch-0001", "batch-0002"])
    with pytest.raises(AirflowFailException, match=r"production import stopped: invalid 10 \+ conflict 0"):
        gate.execute({"params": {"user_pool_id": pool, "max_reject_ratio": 0.02}, "run_id": run_id})
    with pytest.raises(GateFailed):
        run_gate(params_for(pool, max_reject_ratio=0.02), run_id, ["batch-0001", "batch-0002"])
    with pytest.raises(AirflowSkipException):
        gate.execute({"params": {"user_pool_id": pool, "stop_after": "convert"}, "run_id": run_id})


# --- production import -----------------------------------------------------------------------------------------


def test_import_creates_the_organization_once_every_identity_and_its_roles(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str
) -> None:
    groups = {0: ["admins", "staff"], 1: ["staff"]}
    lines = [make_line(pool, n, groups=groups.get(n % 3, [])) for n in range(60)]
    batches = write_batches(storage.run_dir(run_id), [lines[:30], lines[30:]], organization_name="acme-users")
    params = params_for(pool)

    results = [run_import_batch(params, run_id, batch) for batch in batches]

    assert [r["imported"] for r in results] == [30, 30]
    assert all(r["failed"] == r["conflict"] == r["rejected"] == 0 for r in results)
    prod = state(clean_stack)
    [org] = prod["organizations"]
    assert org["name"] == "acme-users"
    assert len(prod["identities"]) == 60 and {i["organization_id"] for i in prod["identities"]} == {org["id"]}
    assert sorted(i["admin_metadata"]["cognito"]["sub"] for i in prod["identities"]) == sorted(
        line["sub"] for line in lines
    )
    expected_tuples = sum(len(line["groups"]) for line in lines)
    assert len(prod["permissions"]) == expected_tuples == sum(r["roles_granted"] for r in results)
    book = Ledger()
    assert book.counts(pool) == {L.IMPORTED: 60}
    assert all(row["roles_granted_at"] for row in book.users(pool))
    by_sub = {i["admin_metadata"]["cognito"]["sub"]: i["id"] for i in prod["identities"]}
    assert book.imported_subs(pool, by_sub) == by_sub
    assert book.organization_id(pool, config.AVNOLOGY_PRODUCTION_CONN_ID) == org["id"]
    written = storage.read_json(storage.run_dir(run_id) / "import" / "batch-0002.json")
    assert written["imported"] == 30 and written["organization_id"] == org["id"]


def test_a_resumed_batch_skips_settled_users_and_finishes_their_missing_roles(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str
) -> None:
    lines = [make_line(pool, n, groups=["staff"]) for n in range(20)]
    [batch] = write_batches(storage.run_dir(run_id), [lines], organization_name="resume-pool")
    params = params_for(pool)
    run_import_batch(params, run_id, batch)
    book = Ledger()
    # Pretend a crash lost the role grants of user 0 (roles_granted_at unset) and the whole record of user 1.
    with book.engine.begin() as conn:
        conn.execute(L.users.update().where(L.users.c.sub == lines[0]["sub"]).values(roles_granted_at=None))
        conn.execute(
            L.users.update().where(L.users.c.sub == lines[1]["sub"]).values(status=L.PENDING, avnology_id=None)
        )
    posts_before = creates(clean_stack)

    again = run_import_batch(params, run_id, batch)  # the task retried

    assert again["done_before"] == 19 and again["imported"] == 1  # user 1 re-sent with its key: replayed
    assert creates(clean_stack) == posts_before + 1
    prod = state(clean_stack)
    assert len(prod["identities"]) == 20
    assert prod["counters"]["idempotency_keys"][idempotency_key(pool, lines[1]["sub"])]["replays"] == 1
    assert book.counts(pool) == {L.IMPORTED: 20}
    assert book.get(pool, lines[0]["sub"])["roles_granted_at"] is not None  # type: ignore[index]


def test_an_identity_of_another_origin_is_a_conflict_and_ours_is_adopted(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str
) -> None:
    from cognito_migration.avnology import AvnologyClient

    lines = [make_line(pool, n) for n in range(10)]
    [batch] = write_batches(storage.run_dir(run_id), [lines], organization_name="mixed-pool")
    prod = AvnologyClient(clean_stack.avnology_url, clean_stack.production_key)
    prod.create_identity({"email": lines[2]["email"]}, idempotency_key="someone-else")
    ours = dict(lines[5]["identity"], first_name="Earlier")  # imported by an earlier tool or a lost ledger
    prod.create_identity(ours, idempotency_key="earlier-run")

    result = run_import_batch(params_for(pool), run_id, batch)

    assert (result["imported"], result["already_present"], result["conflict"]) == (8, 1, 1)
    book = Ledger()
    assert book.counts(pool) == {L.IMPORTED: 8, L.ALREADY_PRESENT: 1, L.CONFLICT: 1}
    assert book.get(pool, lines[2]["sub"])["reason"] == "email_taken"  # type: ignore[index]
    assert len(state(clean_stack)["identities"]) == 10


def test_users_that_got_no_answer_fail_the_task_and_the_retry_settles_them(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [make_line(pool, n) for n in range(15)]
    [batch] = write_batches(storage.run_dir(run_id), [lines], organization_name="flaky-pool")
    params = params_for(pool)
    from cognito_migration.avnology import AvnologyClient

    org = AvnologyClient(clean_stack.avnology_url, clean_stack.production_key).create_organization("flaky-pool")
    set_connection(monkeypatch, clean_stack, "avnology_production", extra={"organization_id": org["id"]})
    clean_stack.avnology.set_faults(error_rate=1.0, error_statuses=[500])

    with pytest.raises(ImportIncomplete, match=r"15 users not imported .*server_error 15"):
        run_import_batch(params, run_id, batch)
    assert Ledger().counts(pool) == {L.FAILED: 15}

    clean_stack.avnology.set_faults()
    assert run_import_batch(params, run_id, batch)["imported"] == 15
    assert Ledger().counts(pool) == {L.IMPORTED: 15}
    assert {i["organization_id"] for i in state(clean_stack)["identities"]} == {org["id"]}


def test_an_organization_that_exists_but_is_unknown_to_the_ledger_fails_with_advice(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str
) -> None:
    from cognito_migration import load
    from cognito_migration.avnology import AvnologyClient

    client = AvnologyClient(clean_stack.avnology_url, clean_stack.production_key)
    client.create_organization("taken-name")
    with pytest.raises(LoadError, match=r'already exists .*"organization_id": "org_…"'):
        load.ensure_organization(
            client,
            Ledger().create_schema(),
            user_pool_id=pool,
            tenant="avnology_production",
            name="taken-name",
            wait_s=0.2,
        )


def test_a_wrong_production_key_stops_the_batch_at_once(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [make_line(pool, n) for n in range(5)]
    [batch] = write_batches(storage.run_dir(run_id), [lines], organization_name="badkey-pool")
    set_connection(monkeypatch, clean_stack, "avnology_production", password="ak_test_revoked_key_123")
    with pytest.raises(AvnologyAuthError) as caught:
        run_import_batch(params_for(pool), run_id, batch)
    assert caught.value.status == 401 and "ak_test_revoked_key_123" not in str(caught.value)
    assert state(clean_stack)["identities"] == []


def test_stages_outside_stop_after_are_skipped(ledger_url: str, pool: str, run_id: str) -> None:
    with pytest.raises(AirflowSkipException, match="stop_after=dry_run: the import stage does not run"):
        run_import_batch(params_for(pool, stop_after="dry_run"), run_id, "batch-0001")
    with pytest.raises(AirflowSkipException, match="stop_after=convert"):
        run_dry_run(params_for(pool, stop_after="convert"), run_id, "batch-0001")


def test_a_missing_batch_file_says_which_and_what_to_do(ledger_url: str, pool: str, run_id: str) -> None:
    with pytest.raises(LoadError, match=r"identities/batch-0042.jsonl is missing .* re-run convert"):
        run_import_batch(params_for(pool), run_id, "batch-0042")
    with pytest.raises(LoadError, match="not of the form batch-NNNN"):
        run_import_batch(params_for(pool), run_id, "../etc/passwd")


# --- the cli backend -------------------------------------------------------------------------------------------


def test_cli_backend_runs_the_cli_keeps_its_output_and_settles_users_through_the_api(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "cli-calls.jsonl"
    monkeypatch.setenv("FAKE_AVNOLOGY_CLI_LOG", str(calls))
    lines = [make_line(pool, n, groups=["staff"] if n < 3 else []) for n in range(8)]
    run_path = storage.run_dir(run_id)
    [batch] = write_batches(run_path, [lines], organization_name="cli-pool")
    params = params_for(pool, import_backend="cli", cli_path=str(FAKE_CLI))

    dry = run_dry_run(params, run_id, batch)
    result = run_import_batch(params, run_id, batch)

    assert dry["cli_exit_code"] == 0 and dry["would_create"] == 8
    assert result["imported"] == 8 and result["cli_exit_code"] == 0 and result["roles_granted"] == 3
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [(r["argv"][:3], r["dry_run"], r["users"]) for r in runs] == [
        (["migrate", "auth0", "--import"], True, 8),
        (["migrate", "auth0", "--import"], False, 8),
    ]
    log_text = (run_path / "import" / f"{batch}.cli.log").read_text()
    assert "import finished: 8 imported" in log_text and "[exit code 0" in log_text
    assert clean_stack.production_key not in log_text
    assert Ledger().counts(pool) == {L.IMPORTED: 8}
    assert len(state(clean_stack)["identities"]) == 8


def test_cli_backend_failure_keeps_the_exit_code_and_output(
    clean_stack: Any, ledger_url: str, pool: str, run_id: str
) -> None:
    run_path = storage.run_dir(run_id)
    [batch] = write_batches(run_path, [[make_line(pool, 1)]], organization_name="cli-bad")
    storage.write_json(run_path / "auth0" / f"{batch}.json", [{"email": "x@example.com", "surprise": 1}])
    params = params_for(pool, import_backend="cli", cli_path=str(FAKE_CLI))
    with pytest.raises(CliImportError, match=r"(?s)exited 3.*unknown fields \['surprise'\]"):
        run_import_batch(params, run_id, batch)
    assert storage.read_json(run_path / "import" / f"{batch}.json")["cli_exit_code"] == 3
    assert "unknown fields" in (run_path / "import" / f"{batch}.cli.log").read_text()
    with pytest.raises(CliImportError, match="is not installed"):
        run_import_batch(params_for(pool, import_backend="cli", cli_path="/nonexistent/avnology"), run_id, batch)
