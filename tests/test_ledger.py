"""The ledger on a real SQLite file and on a real PostgreSQL server (skipped without one unless REQUIRE_POSTGRES=1)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cognito_migration import ledger as L
from cognito_migration.ledger import ImportedUser, Ledger, Outcome, SeenUser

POOL = "us-east-1_Ledger1"
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    book = Ledger(url).create_schema()
    yield book
    L.metadata.drop_all(book.engine)  # the PostgreSQL database is shared by the session's tests
    book.engine.dispose()


def seen(n: int, **kwargs: Any) -> SeenUser:
    values: dict[str, Any] = {
        "sub": f"sub-{n:04d}",
        "username": f"user{n}",
        "email": f"User{n}@Example.com",
        "cognito_status": "CONFIRMED",
        "enabled": True,
        "last_modified": T0,
    }
    values.update(kwargs)
    return SeenUser(**values)


def test_schema_is_idempotent_and_new_users_start_pending(ledger: Ledger) -> None:
    ledger.create_schema()
    assert ledger.record_seen(POOL, [seen(1), seen(2)], run_id="run-1") == 2
    row = ledger.get(POOL, "sub-0001")
    assert row is not None
    assert row["status"] == L.PENDING and row["email_lower"] == "user1@example.com"
    assert row["cognito_last_modified"] == T0  # timezone-aware on both databases
    assert ledger.counts(POOL) == {L.PENDING: 2}
    assert ledger.get(POOL, "nobody") is None


def test_seeing_a_user_again_updates_its_facts_but_not_its_status(ledger: Ledger) -> None:
    ledger.record_seen(POOL, [seen(1)], run_id="run-1")
    ledger.record_imports(POOL, [ImportedUser("sub-0001", "usr_1", already_present=False)], run_id="run-1")
    later = T0 + timedelta(days=3)
    ledger.record_seen(POOL, [seen(1, email="new@example.com", last_modified=later)], run_id="run-2")
    row = ledger.get(POOL, "sub-0001")
    assert row is not None
    assert (row["status"], row["email"], row["cognito_last_modified"], row["last_run_id"]) == (
        L.IMPORTED,
        "new@example.com",
        later,
        "run-2",
    )


def test_imports_outcomes_and_the_resume_check(ledger: Ledger) -> None:
    ledger.record_seen(POOL, [seen(n) for n in range(1, 6)], run_id="run-1")
    ledger.record_imports(
        POOL,
        [
            ImportedUser("sub-0001", "usr_1", already_present=False, cognito_last_modified=T0, roles_granted=True),
            ImportedUser("sub-0002", "usr_2", already_present=True),
        ],
        run_id="run-1",
    )
    ledger.record_import(
        POOL, "sub-0003", avnology_id="usr_3", already_present=False, cognito_last_modified=None, run_id="run-1"
    )
    ledger.record_outcomes(
        POOL,
        [
            Outcome("sub-0004", L.CONFLICT, "email_taken", "held by usr_x"),
            Outcome("sub-0005", L.FAILED, "server_error"),
        ],
    )
    assert ledger.imported_subs(POOL, [f"sub-{n:04d}" for n in range(1, 6)]) == {
        "sub-0001": "usr_1",
        "sub-0002": "usr_2",
        "sub-0003": "usr_3",
    }
    assert ledger.counts(POOL) == {L.IMPORTED: 2, L.ALREADY_PRESENT: 1, L.CONFLICT: 1, L.FAILED: 1}
    assert ledger.reason_counts(POOL) == {
        (L.ALREADY_PRESENT, "adopted_existing"): 1,
        (L.CONFLICT, "email_taken"): 1,
        (L.FAILED, "server_error"): 1,
    }
    rows = ledger.get_many(POOL, ["sub-0001", "sub-0003", "missing"])
    assert set(rows) == {"sub-0001", "sub-0003"}
    assert rows["sub-0001"]["roles_granted_at"] is not None and rows["sub-0003"]["roles_granted_at"] is None
    assert rows["sub-0001"]["imported_last_modified"] == T0
    # A failed user that imports later becomes imported; an imported user never goes back to failed.
    ledger.record_imports(POOL, [ImportedUser("sub-0005", "usr_5", already_present=False)], run_id="run-2")
    ledger.record_outcomes(POOL, [Outcome("sub-0001", L.FAILED, "server_error")])
    assert ledger.get(POOL, "sub-0005")["status"] == L.IMPORTED  # type: ignore[index]
    assert ledger.get(POOL, "sub-0001")["status"] == L.IMPORTED  # type: ignore[index]
    ledger.mark_roles_granted(POOL, "sub-0003")
    assert ledger.get(POOL, "sub-0003")["roles_granted_at"] is not None  # type: ignore[index]


def test_counts_by_run_and_users_by_status(ledger: Ledger) -> None:
    ledger.record_seen(POOL, [seen(1), seen(2)], run_id="run-1")
    ledger.record_seen(POOL, [seen(3)], run_id="run-2")
    ledger.record_seen("us-east-1_OtherPool", [seen(9)], run_id="run-2")
    assert ledger.counts(POOL, run_id="run-2") == {L.PENDING: 1}
    assert [u["sub"] for u in ledger.users(POOL, statuses=[L.PENDING])] == ["sub-0001", "sub-0002", "sub-0003"]


def test_outcomes_need_a_reason_and_a_known_status() -> None:
    with pytest.raises(ValueError, match="no reason"):
        Outcome("s", L.REJECTED, "")
    with pytest.raises(ValueError, match="outcome status"):
        Outcome("s", L.IMPORTED, "why")


def test_an_email_is_claimed_once_even_by_racing_workers(ledger: Ledger) -> None:
    ledger.record_seen(POOL, [seen(1)], run_id="run-1")
    wins: list[bool] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        wins.append(ledger.claim_email(POOL, "sub-0001", "cutover-reset", run_id="run-1"))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 5 + [True]
    ledger.mark_email(POOL, "sub-0001", "cutover-reset", status=L.EMAIL_SENT)
    sends = ledger.email_sends(POOL, "cutover-reset")
    assert [(s["sub"], s["status"]) for s in sends] == [("sub-0001", L.EMAIL_SENT)] and sends[0]["sent_at"]
    assert ledger.claim_email(POOL, "sub-0001", "another-campaign") is True
    with pytest.raises(ValueError):
        ledger.mark_email(POOL, "sub-0001", "cutover-reset", status="maybe")


def test_hook_migration_matches_email_case_insensitively_or_username(ledger: Ledger) -> None:
    ledger.record_seen(POOL, [seen(1), seen(2)], run_id="run-1")
    assert ledger.mark_hook_migrated(POOL, " user1@example.COM ") == 1
    assert ledger.mark_hook_migrated(POOL, "user1@example.com") == 0  # already marked
    assert ledger.mark_hook_migrated(POOL, "user2") == 1
    assert ledger.mark_hook_migrated(POOL, "nobody") == 0


def test_the_cutover_window_starts_at_the_first_cutover(ledger: Ledger) -> None:
    assert ledger.first_cutover(POOL) is None
    ledger.record_cutover(POOL, "run-2", cutover_at=T0 + timedelta(days=1), window_days=30, organization_id="org_1")
    ledger.record_cutover(POOL, "run-1", cutover_at=T0, window_days=30, organization_id="org_1", summary={"n": 1})
    first = ledger.first_cutover(POOL)
    assert first is not None and first["run_id"] == "run-1" and first["cutover_at"] == T0


def test_the_first_organization_stored_wins(ledger: Ledger) -> None:
    assert ledger.organization_id(POOL, "avnology_production") is None
    assert ledger.remember_organization(POOL, "avnology_production", "org_a", "my-pool") == "org_a"
    assert ledger.remember_organization(POOL, "avnology_production", "org_b", "my-pool") == "org_a"
    assert ledger.remember_organization(POOL, "avnology_staging", "org_s", "my-pool") == "org_s"
    assert ledger.organization_id(POOL, "avnology_production") == "org_a"


def test_repr_hides_the_database_password() -> None:
    book = Ledger("postgresql://migrator:s3cr3t-pw@db.example.com:5432/ledger")
    assert "s3cr3t-pw" not in repr(book) and "db.example.com" in repr(book)
