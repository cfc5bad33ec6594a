"""write_batches: every user ends in exactly one place, batches stay under the limits, and the same users give
byte-identical files whatever order they arrive in."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from bench.gen_users import generate
from cognito_migration.batches import REJECTS_COLUMNS, write_batches
from cognito_migration.convert import ConvertPolicy, PoolContext
from cognito_migration.models import BATCH_MAX_BYTES, ConvertSummary
from tests.test_convert import AUTH0_VALIDATOR, POOL, cognito_user

SUB_A = "0a000000-0000-4000-8000-000000000001"
SUB_B = "5b000000-0000-4000-8000-000000000002"
SUB_C = "fc000000-0000-4000-8000-000000000003"
SUB_D = "3d000000-0000-4000-8000-000000000004"


def read_outputs(out: Any) -> dict[str, bytes]:
    """Every file the stage wrote, by relative path."""
    root = Path(str(out))
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def rejects(out: Path) -> list[dict[str, str]]:
    text = (out / "rejects.csv").read_text()
    assert text.splitlines()[0] == ",".join(REJECTS_COLUMNS)
    return list(csv.DictReader(io.StringIO(text)))


def batch_users(out: Path, summary: ConvertSummary) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for batch in summary.batches:
        data = (out / batch.auth0_file).read_bytes()
        assert len(data) == batch.bytes <= BATCH_MAX_BYTES
        batch_records = json.loads(data)
        batch_lines = [json.loads(line) for line in (out / batch.identities_file).read_text().splitlines()]
        assert [r["user_id"] for r in batch_records] == [line["sub"] for line in batch_lines]
        assert len(batch_records) == batch.users
        records += batch_records
        lines += batch_lines
    return records, lines


def assert_conserved(out: Path, summary: ConvertSummary) -> None:
    """The invariant, recomputed from the files: each user is in exactly one batch or one rejects row."""
    records, _ = batch_users(out, summary)
    for record in records:
        AUTH0_VALIDATOR.validate(record)
    subs = [r["user_id"] for r in records]
    assert len(subs) == len(set(subs)) == summary.converted
    rows = rejects(out)
    assert len(rows) == summary.skipped + summary.rejected
    assert summary.seen == len(records) + len(rows)
    on_disk = json.loads((out / "convert_summary.json").read_text())
    assert ConvertSummary.model_validate(on_disk) == summary


def test_a_small_pool_lands_in_batches_rejects_and_summary(tmp_path: Path) -> None:
    users = [
        cognito_user(sub=SUB_C, username="carol", email="carol@example.com", given_name="Carol"),
        cognito_user(sub=SUB_A, username="ann", email="ann@example.com", phone_number="555-0100"),
        cognito_user(sub=SUB_B, status="UNCONFIRMED", email="bob@example.com"),
        cognito_user(sub=SUB_D, email=None, phone_number="+447911123456"),
        {"Username": "broken"},
    ]
    memberships = {SUB_A: ["admins"], "99000000-0000-4000-8000-000000000099": ["ghosts"]}
    summary = write_batches(users, memberships, POOL, ConvertPolicy(), tmp_path)

    assert_conserved(tmp_path, summary)
    assert (summary.seen, summary.converted, summary.skipped, summary.rejected) == (5, 2, 1, 2)
    assert summary.by_reason == {"unconfirmed": 1, "no_email": 1, "invalid_record": 1}
    assert summary.by_status == {
        "CONFIRMED": {"converted": 2, "skipped": 0, "rejected": 1},
        "UNCONFIRMED": {"converted": 0, "skipped": 1, "rejected": 0},
        "(unknown)": {"converted": 0, "skipped": 0, "rejected": 1},
    }
    assert summary.warnings == {"email_verified_not_carried": 2, "phone_dropped": 1}
    assert (summary.unique_subs, summary.memberships_without_user) == (4, 1)
    assert [b.model_dump() for b in summary.batches] == [
        {
            "id": "batch-0001",
            "auth0_file": "auth0/batch-0001.json",
            "identities_file": "identities/batch-0001.jsonl",
            "users": 2,
            "bytes": summary.batches[0].bytes,
        }
    ]
    records, lines = batch_users(tmp_path, summary)
    assert [r["user_id"] for r in records] == [SUB_A, SUB_C]  # ordered by sub, not by input
    assert lines[0]["groups"] == ["admins"] and lines[1]["groups"] == []
    assert rejects(tmp_path) == [
        {"sub": SUB_D, "username": SUB_D, "email": "", "outcome": "rejected", "reason": "no_email",
         "detail": "no email attribute (phone-only user)"},
        {"sub": SUB_B, "username": SUB_B, "email": "bob@example.com", "outcome": "skipped",
         "reason": "unconfirmed", "detail": "policy unconfirmed=skip"},
        {"sub": "", "username": "broken", "email": "", "outcome": "rejected", "reason": "invalid_record",
         "detail": "UserCreateDate: Field required (+3 more)"},
    ]  # fmt: skip


def test_case_duplicate_emails_keep_one_by_the_stated_rule(tmp_path: Path) -> None:
    users = [
        cognito_user(sub=SUB_A, email="Dup@Example.com", modified="2024-05-01T00:00:00Z"),
        cognito_user(sub=SUB_B, email="dup@example.com", modified="2024-06-01T00:00:00Z"),
        cognito_user(sub=SUB_C, email="DUP@EXAMPLE.COM", status="FORCE_CHANGE_PASSWORD", modified="2025-01-01T00:00:00Z"),
        cognito_user(sub=SUB_D, email="other@example.com"),
    ]  # fmt: skip
    summary = write_batches(users, {}, POOL, ConvertPolicy(), tmp_path)
    assert_conserved(tmp_path, summary)
    records, _ = batch_users(tmp_path, summary)
    assert sorted(r["user_id"] for r in records) == [SUB_D, SUB_B]  # CONFIRMED first, then most recent
    assert [(row["sub"], row["reason"], row["detail"]) for row in rejects(tmp_path)] == [
        (SUB_A, "duplicate_email", f"kept {SUB_B}"),
        (SUB_C, "duplicate_email", f"kept {SUB_B}"),
    ]


def test_case_duplicate_emails_policy_reject_all(tmp_path: Path) -> None:
    users = [cognito_user(sub=SUB_A, email="x@example.com"), cognito_user(sub=SUB_B, email="X@example.com")]
    summary = write_batches(users, {}, POOL, ConvertPolicy(duplicate_email="reject_all"), tmp_path)
    assert_conserved(tmp_path, summary)
    assert (summary.converted, summary.by_reason) == (0, {"duplicate_email": 2})
    assert {row["detail"] for row in rejects(tmp_path)} == {
        "policy reject_all: other users share this email (any case)"
    }


def test_a_sub_fed_twice_is_kept_once_in_its_latest_version(tmp_path: Path) -> None:
    old = cognito_user(sub=SUB_A, given_name="Old", modified="2024-01-01T00:00:00Z")
    new = cognito_user(sub=SUB_A, given_name="New", email="new@example.com", modified="2024-02-01T00:00:00Z")
    other = cognito_user(sub=SUB_B, email="jane.doe@example.com")  # same email as the old version only
    summary = write_batches([new, old, old, other], {}, POOL, ConvertPolicy(), tmp_path)
    assert_conserved(tmp_path, summary)
    records, _ = batch_users(tmp_path, summary)
    assert [(r["user_id"], r.get("given_name")) for r in records] == [(SUB_A, "New"), (SUB_B, None)]
    assert (summary.seen, summary.unique_subs, summary.by_reason) == (4, 2, {"duplicate_sub": 2})
    assert all(row["outcome"] == "skipped" and row["sub"] == SUB_A for row in rejects(tmp_path))


def test_batches_respect_the_user_and_byte_limits(tmp_path: Path) -> None:
    users = [cognito_user(sub=f"{i:08x}-0000-4000-8000-000000000000", email=f"u{i}@example.com") for i in range(25)]
    by_count = write_batches(users, {}, POOL, ConvertPolicy(batch_max_users=10), tmp_path / "count")
    assert [b.users for b in by_count.batches] == [10, 10, 5]
    assert_conserved(tmp_path / "count", by_count)

    padded = [
        cognito_user(sub=f"{i:08x}-0000-4000-8000-000000000000", email=f"u{i}@example.com", custom_bio="b" * 3000)
        for i in range(25)
    ]
    limit = 10_016  # the smallest the policy allows: a little over one 10 KB profile
    by_bytes = write_batches(padded, {}, POOL, ConvertPolicy(batch_max_bytes=limit), tmp_path / "bytes")
    assert_conserved(tmp_path / "bytes", by_bytes)
    assert len(by_bytes.batches) > 1
    assert all(b.bytes <= limit for b in by_bytes.batches)
    # A batch is cut only when the next user would not fit: records sit one a line, joined by ",\n".
    second = (tmp_path / "bytes" / by_bytes.batches[1].auth0_file).read_bytes()
    next_record = second[2:-3].split(b",\n")[0]
    assert by_bytes.batches[0].bytes + 2 + len(next_record) > limit


def test_same_users_in_any_order_give_byte_identical_files(tmp_path: Path) -> None:
    users = [user for user, _ in generate(1500, seed=11, edge_rate=0.2)]
    memberships = {"ignored-sub": ["g"]}
    first = write_batches(users, memberships, POOL, ConvertPolicy(batch_max_users=120), tmp_path / "a")
    shuffled = users[:]
    random.Random(3).shuffle(shuffled)
    as_text = [json.dumps(u) for u in shuffled]  # the JSON-text path must give the same bytes as dicts
    second = write_batches(lambda: iter(as_text), memberships, POOL, ConvertPolicy(batch_max_users=120), tmp_path / "b")
    assert first == second
    assert read_outputs(tmp_path / "a") == read_outputs(tmp_path / "b")
    assert_conserved(tmp_path / "a", first)
    assert len(first.batches) >= 10 and set(first.by_reason) >= {"duplicate_email", "duplicate_sub", "no_email"}


def test_writes_through_object_storage_paths(tmp_path: Path) -> None:
    """Only ``/``, ``mkdir`` and ``open`` are used, so Airflow's ObjectStoragePath (and S3) work."""
    from airflow.sdk import ObjectStoragePath
    from upath import UPath

    users = [cognito_user(sub=SUB_A), cognito_user(sub=SUB_B, status="UNCONFIRMED")]
    local = write_batches(users, {}, POOL, ConvertPolicy(), tmp_path / "local")
    expected = read_outputs(tmp_path / "local")
    storage = ObjectStoragePath(f"file://{tmp_path}/object-storage")
    assert write_batches(users, {}, POOL, ConvertPolicy(), storage) == local
    assert read_outputs(tmp_path / "object-storage") == expected
    memory = UPath(f"memory:///convert-test-{tmp_path.name}/run")
    assert write_batches(users, {}, POOL, ConvertPolicy(), memory) == local
    assert {name: (memory / name).read_bytes() for name in expected} == expected


def test_an_empty_pool_writes_an_empty_run(tmp_path: Path) -> None:
    summary = write_batches([], {}, POOL, ConvertPolicy(), tmp_path)
    assert (summary.seen, summary.batches, summary.by_status) == (0, [], {})
    assert rejects(tmp_path) == []
    assert json.loads((tmp_path / "convert_summary.json").read_text())["seen"] == 0


def test_garbage_text_is_escaped_not_fatal(tmp_path: Path) -> None:
    users = [
        cognito_user(sub=SUB_A, username="bad\ud800name", status="ARCHIVED"),
        "not json at all",
        json.dumps(cognito_user(sub=SUB_B, given_name='comma, "quote"\nnewline')),
    ]
    summary = write_batches(users, {}, POOL, ConvertPolicy(), tmp_path)
    assert_conserved(tmp_path, summary)
    rows = rejects(tmp_path)
    assert [row["reason"] for row in rows] == ["invalid_record", "invalid_record"]
    assert rows[0]["detail"] == "Username: Input should be a valid string, unable to parse raw data as a unicode string"
    assert rows[0]["username"] == "bad\\ud800name"


def test_a_trailing_newline_is_not_a_valid_value(tmp_path: Path) -> None:
    """Python's ``$`` matches before a final newline; the converter must not (a sub with one once broke the
    tab-separated spool index and crashed the stage)."""
    users = [
        cognito_user(sub=SUB_A + "\n"),
        cognito_user(sub=SUB_B, email="b@example.com\n"),
        cognito_user(sub=SUB_C, email="c@example.com", phone_number="+14155550100\n"),
    ]
    summary = write_batches(users, {}, POOL, ConvertPolicy(), tmp_path)
    assert_conserved(tmp_path, summary)
    rows = rejects(tmp_path)
    assert [(row["reason"], row["detail"]) for row in rows] == [
        ("invalid_email", "email is not a valid address (ASCII local part @ dotted host name)"),
        ("invalid_record", "the sub attribute is missing or not a UUID"),  # no valid sub: written last
    ]
    records, _ = batch_users(tmp_path, summary)
    assert [(r["user_id"], "phone_number" in r) for r in records] == [(SUB_C, False)]
    assert summary.warnings["phone_dropped"] == 1


def test_bad_memberships_fail_with_the_sub_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=SUB_A):
        write_batches([], {SUB_A: "admins"}, POOL, ConvertPolicy(), tmp_path)
    with pytest.raises(TypeError, match="hold a int"):
        write_batches([], {SUB_A: [1]}, POOL, ConvertPolicy(), tmp_path)


def test_spool_is_private_and_removed(tmp_path: Path) -> None:
    spool_parent = tmp_path / "spool"
    spool_parent.mkdir()
    seen_modes: list[int] = []

    def users() -> Any:
        yield cognito_user(sub=SUB_A)
        spools = list(spool_parent.iterdir())
        seen_modes.extend(p.stat().st_mode & 0o777 for p in spools)
        yield cognito_user(sub=SUB_B)

    write_batches(users, {}, POOL, ConvertPolicy(), tmp_path / "out", spool_dir=str(spool_parent))
    assert seen_modes == [0o700]
    assert list(spool_parent.iterdir()) == []


def test_pool_context_reaches_the_summary(tmp_path: Path) -> None:
    pool = PoolContext("eu-west-1_Z", "Zeta", "zeta-org")
    summary = write_batches([cognito_user()], {}, pool, ConvertPolicy(unconfirmed="import"), tmp_path)
    assert (summary.user_pool_id, summary.organization_name) == ("eu-west-1_Z", "zeta-org")
    assert summary.policy["unconfirmed"] == "import"


def test_spool_parent_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_batches([cognito_user()], {}, POOL, ConvertPolicy(), tmp_path / "out", spool_dir=str(tmp_path / "nope"))
