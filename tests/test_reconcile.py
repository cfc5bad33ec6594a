"""The reconciliation's pure parts (window, diff, update mask, checklist) and the purge on local and S3 storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cognito_migration.assets import cutover_event_extra, parse_cutover_extra
from cognito_migration.params import ParamsError
from cognito_migration.reconcile import (
    Category,
    FreshUser,
    Window,
    classify,
    decide,
    diff_pool,
    fresh_user,
    patch_body,
    update_mask,
)
from cognito_migration.reconcile_params import (
    ENV_DEFAULTS,
    deployment_defaults,
    for_pool,
    parse_reconcile_params,
)
from cognito_migration.reconcile_report import cumulative_progress, decommission_checklist

POOL = "us-east-1_Recon1"
CUTOVER = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
T0 = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)


# --- window ---------------------------------------------------------------------------------------------------


def test_window_days_are_calendar_days_from_the_cutover_date() -> None:
    window = Window(POOL, CUTOVER, 30)
    assert window.closes_at == datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
    assert window.day_number(CUTOVER) == 1
    assert window.day_number(datetime(2026, 3, 2, 3, 0, tzinfo=UTC)) == 2  # 12 h after cutover: the next day
    assert window.is_open(CUTOVER) and not window.is_open(CUTOVER - timedelta(seconds=1))
    assert window.is_open(window.closes_at - timedelta(seconds=1)) and not window.is_open(window.closes_at)


@pytest.mark.parametrize("hour", [0, 3, 14, 15, 23])
def test_exactly_one_daily_run_is_the_final_one_whatever_the_hour(hour: int) -> None:
    window = Window(POOL, CUTOVER, 30)
    runs = [datetime(2026, 3, 1, hour, 0, tzinfo=UTC) + timedelta(days=d) for d in range(35)]
    finals = [r for r in runs if decide(window, r).final]
    sweeps = [r for r in runs if decide(window, r).sweep]
    assert len(finals) == 1
    assert finals[0] == max(sweeps)  # the last sweep of the window writes the final report
    assert window.closes_at - timedelta(days=1) <= finals[0] < window.closes_at


def test_decide_says_why_it_skips() -> None:
    window = Window(POOL, CUTOVER, 30)
    none = decide(None, CUTOVER, user_pool_id=POOL)
    assert not none.sweep and "no cutover recorded for user pool us-east-1_Recon1" in none.reason

    closed = decide(Window(POOL, T0 - timedelta(days=31), 30), T0)
    assert not closed.sweep and not closed.final
    assert "30-day window of us-east-1_Recon1 closed at" in closed.reason

    early = decide(window, CUTOVER - timedelta(hours=1))
    assert not early.sweep and "in the future" in early.reason

    again = decide(window, CUTOVER + timedelta(days=3), swept_today_by="scheduled__x")
    assert not again.sweep and "already reconciled today" in again.reason and "scheduled__x" in again.reason

    day4 = decide(window, CUTOVER + timedelta(days=3))
    assert day4.sweep and not day4.final and day4.day == 4
    assert day4.sweep_date == (CUTOVER + timedelta(days=3)).date()


def test_forced_final_report_runs_even_after_the_window_but_needs_a_cutover() -> None:
    closed = Window(POOL, T0 - timedelta(days=40), 30)
    forced = decide(closed, T0, force_final=True)
    assert forced.sweep and forced.final
    assert not decide(None, T0, force_final=True).sweep


def test_window_rejects_a_bad_length() -> None:
    with pytest.raises(ValueError, match=r"1\.\.365"):
        Window(POOL, CUTOVER, 0)


# --- diff -----------------------------------------------------------------------------------------------------


def _fresh(sub: str, modified: datetime = T0, *, enabled: bool = True, status: str = "CONFIRMED") -> FreshUser:
    return FreshUser(sub, modified, enabled, status)


def _row(sub: str, status: str = "imported", **kw: Any) -> dict[str, Any]:
    row = {
        "sub": sub,
        "status": status,
        "cognito_enabled": True,
        "cognito_status": "CONFIRMED",
        "cognito_last_modified": T0,
        "imported_last_modified": T0 if status in ("imported", "already_present") else None,
        "deleted_in_cognito_at": None,
        "avnology_id": f"usr_{sub}" if status in ("imported", "already_present") else None,
    }
    row.update(kw)
    return row


def test_classify_each_category() -> None:
    later = T0 + timedelta(minutes=5)
    assert classify(_fresh("a"), None) is Category.NEW
    assert classify(_fresh("a"), _row("a", "failed")) is Category.RETRY
    assert classify(_fresh("a"), _row("a", "pending")) is Category.RETRY
    assert classify(_fresh("a"), _row("a")) is Category.UNCHANGED
    assert classify(_fresh("a", later), _row("a")) is Category.MODIFIED
    assert classify(_fresh("a", later), _row("a", "already_present")) is Category.MODIFIED
    assert classify(_fresh("a", enabled=False), _row("a")) is Category.DISABLED
    assert classify(None, _row("a")) is Category.DELETED
    assert classify(None, _row("a", deleted_in_cognito_at=T0)) is Category.UNCHANGED  # reported before


def test_disabled_wins_over_modified_and_reenabled_counts_as_modified() -> None:
    later = T0 + timedelta(minutes=5)
    assert classify(_fresh("a", later, enabled=False), _row("a")) is Category.DISABLED
    # imported blocked (disabled at import), enabled since: its provenance changes and the email becomes due
    assert classify(_fresh("a"), _row("a", cognito_enabled=False)) is Category.MODIFIED
    # still disabled, as at import: nothing to do
    assert classify(_fresh("a", enabled=False), _row("a", cognito_enabled=False)) is Category.UNCHANGED


def test_left_out_users_are_retried_only_when_cognito_changed() -> None:
    for status in ("rejected", "skipped", "conflict"):
        assert classify(_fresh("a"), _row("a", status)) is Category.UNCHANGED
        assert classify(_fresh("a", T0 + timedelta(seconds=1)), _row("a", status)) is Category.RETRY
    # an UNCONFIRMED user skipped by policy who confirmed since
    assert classify(_fresh("a"), _row("a", "skipped", cognito_status="UNCONFIRMED")) is Category.RETRY


def test_modified_is_compared_at_millisecond_precision() -> None:
    stored_naive = T0.replace(tzinfo=None)  # SQLite hands back naive UTC
    assert classify(_fresh("a", T0 + timedelta(microseconds=400)), _row("a", imported_last_modified=stored_naive)) is (
        Category.UNCHANGED
    )
    assert classify(_fresh("a", T0 + timedelta(milliseconds=2)), _row("a", imported_last_modified=stored_naive)) is (
        Category.MODIFIED
    )


def test_diff_pool_puts_every_user_in_exactly_one_category() -> None:
    later = T0 + timedelta(hours=1)
    rows = {
        "keep": _row("keep"),
        "mod": _row("mod"),
        "off": _row("off"),
        "gone": _row("gone"),
        "gone-before": _row("gone-before", deleted_in_cognito_at=T0),
        "failed": _row("failed", "failed"),
        "rejected": _row("rejected", "rejected"),
    }
    fresh = [
        _fresh("keep"),
        _fresh("mod", later),
        _fresh("off", enabled=False),
        _fresh("failed"),
        _fresh("rejected"),
        _fresh("brand-new"),
        _fresh("brand-new"),  # a page repeated by Cognito's eventually consistent paging
    ]
    lookups: list[list[str]] = []

    def lookup(subs: list[str]) -> dict[str, dict[str, Any]]:
        lookups.append(list(subs))
        return {s: rows[s] for s in subs if s in rows}

    diff = diff_pool(fresh, lookup, lambda: rows.values(), chunk_size=3)
    assert diff["new"] == ["brand-new"]
    assert diff["retry"] == ["failed"]
    assert diff["modified"] == ["mod"]
    assert diff["disabled"] == ["off"]
    assert diff["deleted"] == ["gone"]
    assert diff.unchanged == 3  # keep, rejected (unchanged since), gone-before
    assert diff.carry_over == ["brand-new", "failed"]
    assert diff.extracted == 6 and diff.in_ledger == 7
    assert all(len(chunk) <= 3 for chunk in lookups)
    assert sum(len(v) for v in diff.subs.values()) + diff.unchanged == len(set(rows) | {u.sub for u in fresh})
    again = type(diff).from_json(json.loads(json.dumps(diff.as_json())))
    assert again.as_json() == diff.as_json()


def test_fresh_user_reads_the_extractors_page_format() -> None:
    raw = {
        "Username": "ana",
        "Attributes": [{"Name": "email", "Value": "a@example.com"}, {"Name": "sub", "Value": "0a-1"}],
        "UserLastModifiedDate": "2026-03-02T10:00:00.123000+00:00",
        "Enabled": False,
        "UserStatus": "CONFIRMED",
    }
    user = fresh_user(raw)
    assert user == FreshUser("0a-1", datetime(2026, 3, 2, 10, 0, 0, 123000, tzinfo=UTC), False, "CONFIRMED")
    with pytest.raises(ValueError, match="no sub"):
        fresh_user({"Username": "x", "Attributes": []})


# --- update mask ----------------------------------------------------------------------------------------------


def _identity(**overrides: Any) -> dict[str, Any]:
    base = {
        "email": "ana@example.com",
        "username": "ana",
        "first_name": "Ana",
        "last_name": "Silva",
        "phone": "+14155550100",
        "traits": {"custom": {"tier": "gold"}, "website": "https://a.example"},
        "admin_metadata": {"cognito": {"sub": "s1", "last_modified_at": "2026-03-01T00:00:00Z", "enabled": True}},
    }
    base.update(overrides)
    return base


def _current(**overrides: Any) -> dict[str, Any]:
    current = _identity(
        id="usr_1",
        state="active",
        email_verified=False,
        organization_id="org_1",
        etag="e1",
        display_name=None,
        locale="",
        timezone=None,
    )
    current.update(overrides)
    return current


def test_update_mask_is_empty_when_nothing_changed_even_with_server_fields_and_empty_values() -> None:
    assert update_mask(_identity(), _current()) == []


def test_update_mask_names_exactly_the_changed_fields() -> None:
    new = _identity(
        first_name="Ana María",
        traits={"custom": {"tier": "platinum"}, "website": "https://a.example"},
        admin_metadata={"cognito": {"sub": "s1", "last_modified_at": "2026-03-05T00:00:00Z", "enabled": True}},
    )
    assert update_mask(new, _current()) == ["first_name", "traits", "admin_metadata"]


def test_a_field_removed_in_cognito_is_masked_and_cleared() -> None:
    new = _identity()
    del new["phone"]
    mask = update_mask(new, _current())
    assert mask == ["phone"]
    assert patch_body(new, _current(), mask) == {}  # masked but absent: the PATCH clears it


def test_traits_and_metadata_written_in_avnology_survive_and_do_not_count_as_changes() -> None:
    current = _current(
        traits={"custom": {"tier": "gold"}, "website": "https://a.example", "app_theme": "dark"},
        admin_metadata={**_identity()["admin_metadata"], "support_note": "vip"},
    )
    assert update_mask(_identity(), current) == []
    new = _identity(
        traits={"custom": {"tier": "platinum"}, "website": "https://a.example"},
        admin_metadata={"cognito": {"sub": "s1", "last_modified_at": "2026-03-05T00:00:00Z", "enabled": False}},
    )
    mask = update_mask(new, current)
    body = patch_body(new, current, mask)
    assert mask == ["traits", "admin_metadata"]
    assert body["traits"] == {"custom": {"tier": "platinum"}, "website": "https://a.example", "app_theme": "dark"}
    assert body["admin_metadata"] == {"cognito": new["admin_metadata"]["cognito"], "support_note": "vip"}


def test_organization_is_never_patched() -> None:
    assert update_mask(_identity(organization_id="org_other"), _current()) == []
    with pytest.raises(ValueError, match="organization_id"):
        patch_body(_identity(), _current(), ["organization_id"])


def test_an_email_change_is_a_change_even_in_case_only() -> None:
    assert update_mask(_identity(email="Ana@Example.com"), _current()) == ["email"]


# --- reports --------------------------------------------------------------------------------------------------


def test_checklist_accounts_for_every_user_with_a_reason() -> None:
    rows = [
        _row("ok", email="o@example.com", federated=False),
        _row("fed", email="f@example.com", federated=True),
        _row("off", email="x@example.com", federated=False, cognito_enabled=False),
        _row("fail", "failed", reason="server_error"),
        _row("fail-gone", "failed", reason="server_error", deleted_in_cognito_at=T0),
        _row("conf", "conflict", reason="email_taken"),
        _row("rej", "rejected", reason="invalid_email"),
        _row("unsent", email="u@example.com", federated=False),
    ]
    sends = {"ok": "sent", "unsent": "claimed"}
    checklist = decommission_checklist(rows, sends, in_cognito_not_in_ledger=["late"], campaign="cutover-reset")
    assert not checklist["safe_to_decommission"]
    assert checklist["unaccounted"] == [
        {"sub": "late", "reason": "in_cognito_not_in_ledger"},
        {"sub": "fail", "reason": "failed:server_error"},
    ]
    assert checklist["open_conflicts"] == [{"sub": "conf", "reason": "email_taken"}]
    reasons = {u["sub"]: u["reason"] for u in checklist["never_emailed"]["users"]}
    assert "ok" not in reasons
    assert reasons["fed"] == "federated" and reasons["off"] == "disabled" and reasons["unsent"] == "unknown"
    assert reasons["rej"] == "rejected:invalid_email" and reasons["conf"] == "conflict:email_taken"
    assert checklist["deleted_in_cognito"] == 1

    settled = decommission_checklist(rows[:3], sends, in_cognito_not_in_ledger=[], campaign="c")
    assert settled["safe_to_decommission"]


def test_cumulative_progress_keeps_one_entry_per_date() -> None:
    day = {"counts": {"new": 2, "modified": 1}, "carried_over_today": [{"sub": "a"}, {"sub": "b"}]}
    progress = cumulative_progress(
        [
            {**day, "sweep_date": "2026-03-02", "day": 2, "complete": False},
            {**day, "sweep_date": "2026-03-02", "day": 2, "complete": True, "sync": {"outcomes": {"patched": 1}}},
            {**day, "sweep_date": "2026-03-01", "day": 1, "complete": True},
        ]
    )
    assert [d["sweep_date"] for d in progress["days"]] == ["2026-03-01", "2026-03-02"]
    assert progress["totals"] == {
        "new": 4,
        "retry": 0,
        "modified": 2,
        "disabled": 0,
        "deleted": 0,
        "carried_over": 4,
        "patched": 1,
    }


# --- params and the Asset -------------------------------------------------------------------------------------


def test_params_default_to_a_lower_budget_and_map_onto_the_migrations() -> None:
    params = parse_reconcile_params({"email_mode": "send", "unknown_key": 1})
    assert params.user_pool_id == "" and params.userlist_budget_rps == 10.0
    migration = for_pool(params, user_pool_id=POOL, region="eu-west-1", window_days=30)
    assert (migration.user_pool_id, migration.region, migration.email_mode) == (POOL, "eu-west-1", "send")
    assert migration.userlist_budget_rps == 10.0
    with pytest.raises(ParamsError, match="retention_days"):
        parse_reconcile_params({"retention_days": -1})


def test_deployment_defaults_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DEFAULTS, '{"email_mode": "send", "window_days": 45}')
    assert deployment_defaults() == {"email_mode": "send", "window_days": 45}
    monkeypatch.setenv(ENV_DEFAULTS, '{"emailmode": "send"}')
    with pytest.raises(ParamsError, match="emailmode"):
        deployment_defaults()
    monkeypatch.setenv(ENV_DEFAULTS, "{not json")
    with pytest.raises(ParamsError, match="not valid JSON"):
        deployment_defaults()


def test_cutover_event_extra_round_trips() -> None:
    report = {"user_pool_id": POOL, "cutover_at": CUTOVER.isoformat(), "window_days": 30, "seen": 10}
    extra = cutover_event_extra(report, run_id="manual__1", region="us-east-1")
    assert set(extra) == {"user_pool_id", "cutover_at", "window_days", "run_id", "region"}
    event = parse_cutover_extra(json.loads(json.dumps(extra)))
    assert event is not None and event.cutover_at == CUTOVER and event.window_days == 30
    no_import = parse_cutover_extra(cutover_event_extra({**report, "cutover_at": None}, run_id="r", region="x"))
    assert no_import is not None and no_import.cutover_at is None
    assert parse_cutover_extra({"cutover_at": "garbage"}) is None


# --- purge, on local and S3 storage ---------------------------------------------------------------------------


def _make_run(run_id: str, pool: str, taken_at: datetime) -> Any:
    from cognito_migration import storage

    run_path = storage.run_dir(run_id)
    storage.write_json(run_path / "snapshot.json", {"UserPool": {"Id": pool}, "taken_at": taken_at.isoformat()})
    storage.write_json(run_path / "raw" / "shard-0" / "page-00001.json", {"users": [{"Username": "ana"}]})
    storage.write_json(run_path / "identities" / "batch-0001.jsonl", {"sub": "s"})
    with (run_path / "rejects.csv").open("w") as fh:
        fh.write("sub,username,email\n")
    storage.write_json(run_path / "report.json", {"aggregate": True})
    return run_path


def _check_purge() -> None:
    from cognito_migration.reconcile_stage import purge_runs

    now = datetime.now(UTC)
    old = _make_run("manual__migration", POOL, now - timedelta(days=31))
    recent = _make_run("scheduled__yesterday", POOL, now - timedelta(days=1))
    other = _make_run("manual__other_pool", "us-east-1_Other", now - timedelta(days=60))

    result = purge_runs(POOL, older_than_days=7, now=now)
    assert result["purged"] == [{"run": "manual__migration", "removed": ["raw", "identities", "rejects.csv"]}]
    assert result["kept"] == ["scheduled__yesterday"]
    assert sorted(p.name for p in old.iterdir()) == ["report.json", "snapshot.json"]
    assert (recent / "raw").exists() and (other / "raw").exists()

    assert [p["run"] for p in purge_runs(POOL, older_than_days=0, now=now)["purged"]] == [
        "manual__migration",
        "scheduled__yesterday",
    ]
    assert not (recent / "raw").exists() and (recent / "report.json").exists()


def test_purge_on_local_storage(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COGNITO_MIGRATION_STORAGE", str(tmp_path / "storage"))
    _check_purge()


def test_purge_on_s3_storage(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs", reason="ObjectStoragePath needs s3fs for s3:// (not installable next to botocore 1.44)")
    bucket = "reconcile-purge-test"
    s3 = stack.moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("COGNITO_MIGRATION_STORAGE", f"s3://{bucket}/cognito")
    monkeypatch.setenv("COGNITO_MIGRATION_STORAGE_CONN_ID", "aws_storage")
    _check_purge()
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    ours = [k for k in keys if "/manual__other_pool/" not in k]
    assert ours and all(k.endswith(("/report.json", "/snapshot.json")) for k in ours), ours
    assert "cognito/runs/manual__other_pool/raw/shard-0/page-00001.json" in keys


# --- existing identities against the Avnology emulator (real HTTP, no DAG) ------------------------------------

SUB = "0b6c5bde-3c44-4d2e-9e7a-6f3d1a2b4c5d"
LATER = "2026-03-09T08:30:00+00:00"


def _cognito_user(modified: str = "2026-03-02T10:00:00+00:00", **attrs: str) -> dict[str, Any]:
    values = {"sub": SUB, "email": "ana@example.com", "given_name": "Ana", "family_name": "Silva", **attrs}
    return {
        "Username": "ana_silva",
        "Attributes": [{"Name": k, "Value": v} for k, v in values.items()],
        "UserCreateDate": "2026-01-05T10:00:00+00:00",
        "UserLastModifiedDate": modified,
        "Enabled": True,
        "UserStatus": "CONFIRMED",
    }


@pytest.fixture
def production(clean_stack: Any) -> Any:
    from cognito_migration.avnology import AvnologyClient

    with AvnologyClient(clean_stack.avnology_url, clean_stack.production_key) as client:
        yield client


def _convert() -> Any:
    from cognito_migration.convert import ConvertPolicy, PoolContext, convert_user

    pool = PoolContext(POOL, "pool", "pool")
    return lambda raw: convert_user(raw, {}, pool, ConvertPolicy())


def _imported(client: Any, **attrs: str) -> dict[str, Any]:
    """An identity as the migration created it from the Cognito user with ``attrs``; its ledger row."""
    line = json.loads(_convert()(_cognito_user(**attrs)).line_json)
    created = client.create_identity(line["identity"], idempotency_key=f"k-{SUB}")
    return {"sub": SUB, "avnology_id": created["id"], "status": "imported", "username": "ana_silva"}


def test_sync_patches_exactly_the_changed_fields_and_nothing_when_in_sync(production: Any, clean_stack: Any) -> None:
    from cognito_migration.reconcile_stage import sync_modified

    row = _imported(production)
    result, line = sync_modified(production, _cognito_user(), row, _convert(), True)
    assert (result.outcome, result.mask, line is not None) == ("in_sync", (), True)

    look, _ = sync_modified(production, _cognito_user(LATER, given_name="Ana María"), row, _convert(), False)
    assert (look.outcome, look.mask) == ("would_patch", ("first_name", "admin_metadata"))
    assert production.get_identity(row["avnology_id"])["first_name"] == "Ana"  # a look-only run writes nothing

    done, line = sync_modified(production, _cognito_user(LATER, given_name="Ana María"), row, _convert(), True)
    assert (done.outcome, done.mask) == ("patched", ("first_name", "admin_metadata"))
    identity = production.get_identity(row["avnology_id"])
    assert (identity["first_name"], identity["last_name"], identity["email"]) == (
        "Ana María",
        "Silva",
        "ana@example.com",
    )
    assert line is not None and line["first_name"] == "Ana María"
    routes = clean_stack.avnology.state("production")["counters"]["by_route"]
    assert routes["PATCH /v1/identities/{identity_id}"] == 1


def test_sync_rereads_after_a_concurrent_change_and_reports_what_it_cannot_fix(production: Any) -> None:
    from cognito_migration.reconcile_stage import sync_modified

    row = _imported(production)

    class ConcurrentWriter:
        """The real client; an app changes the identity between our read and our write, once."""

        def __init__(self) -> None:
            self.raced = False

        def __getattr__(self, name: str) -> Any:
            return getattr(production, name)

        def patch_identity(self, identity_id: str, *args: Any, **kwargs: Any) -> Any:
            if not self.raced:
                self.raced = True
                current = production.get_identity(identity_id)
                traits = {**current["traits"], "app_theme": "dark"}
                production.patch_identity(identity_id, {"traits": traits}, ["traits"])
            return production.patch_identity(identity_id, *args, **kwargs)

    writer = ConcurrentWriter()
    result, _ = sync_modified(writer, _cognito_user(LATER, family_name="Souza"), row, _convert(), True)
    assert writer.raced and (result.outcome, result.mask) == ("patched", ("last_name", "admin_metadata"))
    identity = production.get_identity(row["avnology_id"])
    assert identity["last_name"] == "Souza" and identity["traits"]["app_theme"] == "dark"  # the app's write survives

    production.create_identity({"email": "taken@example.com"}, idempotency_key="other-owner")
    taken, _ = sync_modified(production, _cognito_user(LATER, email="taken@example.com"), row, _convert(), True)
    assert (taken.outcome, taken.detail) == ("conflict", "email")

    invalid, _ = sync_modified(production, _cognito_user(email="not-an-email"), row, _convert(), True)
    assert (invalid.outcome, invalid.detail) == ("not_converted", "invalid_email")

    missing, _ = sync_modified(production, _cognito_user(), {**row, "avnology_id": "usr_gone"}, _convert(), True)
    assert missing.outcome == "identity_missing"


def test_disabled_policy(production: Any) -> None:
    from cognito_migration.reconcile_stage import sync_disabled

    row = _imported(production)
    assert sync_disabled(production, row, "report", True).outcome == "reported"
    assert sync_disabled(production, row, "soft_delete", False).outcome == "would_soft_delete"
    assert production.get_identity(row["avnology_id"])["state"] == "active"
    assert sync_disabled(production, row, "soft_delete", True).outcome == "soft_deleted"
    assert production.get_identity(row["avnology_id"])["state"] == "scheduled_deletion"
    assert sync_disabled(production, {**row, "avnology_id": "usr_gone"}, "soft_delete", True).outcome == "already_gone"
