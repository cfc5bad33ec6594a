"""Extract: sharded ListUsers paging into run storage, checkpoints, memberships, throttles — against real moto.

Faults come through the network path (the throttling proxy answers with Cognito's errors), never by replacing
our own functions.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from cognito_migration import storage
from cognito_migration.extract import (
    ExtractError,
    ExtractIncompleteError,
    extract_completeness,
    extract_memberships,
    extract_shard,
    iter_extracted_users,
    read_memberships,
    shard_prefixes,
    slot_share,
)
from cognito_migration.preflight import PreflightError, snapshot_pool
from cognito_migration.ratelimit import RateLimiter
from emulators.cognito_seed import SeededPool, seed_pool_fast
from emulators.moto_cognito import TEST_CREDENTIALS
from emulators.throttle_proxy import ThrottlingProxy

FAST = 1000.0  # requests/s: effectively unpaced, for tests about paging rather than quota


def _client(endpoint: str, *, attempts: int = 3, mode: str = "adaptive") -> Any:
    return boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=Config(retries={"mode": mode, "total_max_attempts": attempts}, user_agent_extra="app/migration"),
        **TEST_CREDENTIALS,
    )


def _sub(user: dict[str, Any]) -> str:
    return next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")


def _prepare_run(client: Any, pool: SeededPool, run_path: Any, shard_count: int = 16) -> list[str]:
    snapshot = snapshot_pool(client, pool.user_pool_id, "us-east-1")
    snapshot["shards"] = shard_prefixes(shard_count)
    storage.write_json(run_path / "snapshot.json", snapshot)
    return snapshot["shards"]


@pytest.fixture(scope="module")
def pool(stack: Any) -> SeededPool:
    return seed_pool_fast(stack.cognito_client(), 300, seed=21, pool_name="extract-test")


@pytest.fixture
def run_path(tmp_path: Path) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"file://{tmp_path / 'run'}")


@pytest.fixture
def proxy(stack: Any) -> Iterator[ThrottlingProxy]:
    with ThrottlingProxy(stack.moto.url, latency_ms=2, jitter_ms=1, seed=1) as running:
        yield running


def _busiest_prefix(pool: SeededPool) -> tuple[str, set[str]]:
    counts = Counter(sub[0] for sub in pool.subs)
    prefix = max(counts, key=lambda p: (counts[p], p))
    return prefix, {s for s in pool.subs if s.startswith(prefix)}


def test_shard_pages_to_the_end_and_checkpoints(stack: Any, pool: SeededPool, run_path: Any, caplog: Any) -> None:
    prefix, expected = _busiest_prefix(pool)
    caplog.set_level(logging.INFO, logger="cognito_migration.extract")
    summary = extract_shard(
        stack.cognito_client(),
        pool.user_pool_id,
        prefix,
        run_path,
        limiter=RateLimiter(FAST),
        page_limit=3,
        progress_every=2,
        budget_rps=20,
    )
    pages = math.ceil(len(expected) / 3)
    assert summary["pages"] == pages >= 5
    assert summary["users"] == len(expected)
    shard_dir = run_path / "raw" / f"shard-{prefix}"
    written = [storage.read_json(shard_dir / f"page-{n:05d}.json") for n in range(1, pages + 1)]
    assert [len(p["users"]) for p in written[:-1]] == [3] * (pages - 1)
    subs = [_sub(u) for p in written for u in p["users"]]
    assert sorted(subs) == sorted(expected)
    assert isinstance(written[0]["users"][0]["UserCreateDate"], str)  # datetimes stored as ISO strings
    checkpoint = storage.read_json(shard_dir / "checkpoint.json")
    assert checkpoint["done"] is True and checkpoint["next_token"] is None and checkpoint["pages"] == pages
    progress = [r.getMessage() for r in caplog.records if "req/s against" in r.getMessage()]
    assert len(progress) >= pages // 2
    assert "throttles absorbed" in progress[-1] and f"{len(expected)} users" in progress[-1]


def test_union_of_the_shards_is_the_pool(stack: Any, pool: SeededPool, run_path: Any) -> None:
    client = stack.cognito_client()
    shards = _prepare_run(client, pool, run_path)
    summaries = [
        extract_shard(client, pool.user_pool_id, p, run_path, limiter=RateLimiter(FAST), page_limit=10) for p in shards
    ]
    subs = [_sub(u) for u in iter_extracted_users(run_path)]
    assert len(subs) == len(set(subs)) == pool.total
    assert set(subs) == pool.subs
    assert sum(s["users"] for s in summaries) == pool.total
    completeness = extract_completeness(run_path)
    assert completeness["unique_users"] == completeness["estimated_users"] == pool.total
    assert completeness["ratio"] == 1.0
    assert completeness["status_counts"] == dict(sorted(pool.by_status.items()))
    # Running a finished shard again does nothing and reports the same counts.
    again = extract_shard(client, pool.user_pool_id, shards[0], run_path, limiter=RateLimiter(FAST))
    assert again["users"] == summaries[0]["users"] and again["pages"] == summaries[0]["pages"]


def test_empty_shard_completes_with_one_empty_page(stack: Any, pool: SeededPool, run_path: Any) -> None:
    used = {s[:2] for s in pool.subs}
    prefix = next(p for p in shard_prefixes(256) if p not in used)
    summary = extract_shard(stack.cognito_client(), pool.user_pool_id, prefix, run_path, limiter=RateLimiter(FAST))
    assert summary["users"] == 0 and summary["pages"] == 1 and summary["status_counts"] == {}
    page = storage.read_json(run_path / "raw" / f"shard-{prefix}" / "page-00001.json")
    assert page == {"shard": prefix, "page": 1, "users": []}


def test_readers_refuse_an_unfinished_extract(stack: Any, pool: SeededPool, run_path: Any) -> None:
    client = stack.cognito_client()
    shards = _prepare_run(client, pool, run_path)
    extract_shard(client, pool.user_pool_id, shards[0], run_path, limiter=RateLimiter(FAST))
    with pytest.raises(ExtractIncompleteError, match=f"shard {shards[1]} has not finished"):
        list(iter_extracted_users(run_path))
    with pytest.raises(ExtractIncompleteError, match="memberships"):
        read_memberships(run_path)


def test_retried_task_resumes_at_its_last_page(
    stack: Any, pool: SeededPool, run_path: Any, proxy: ThrottlingProxy
) -> None:
    """Cognito fails page k+1 (a 5xx past botocore's retries): the task dies; its retry resumes, nothing twice."""
    prefix, expected = _busiest_prefix(pool)
    pages = math.ceil(len(expected) / 2)
    k = 3
    proxy.fail_operation("ListUsers", after=k, status=500, code="InternalErrorException")
    with pytest.raises(ExtractError, match=rf"shard {prefix}, page {k + 1}.*InternalErrorException"):
        extract_shard(
            _client(proxy.url, attempts=2), pool.user_pool_id, prefix, run_path, limiter=RateLimiter(FAST), page_limit=2
        )
    shard_dir = run_path / "raw" / f"shard-{prefix}"
    checkpoint = storage.read_json(shard_dir / "checkpoint.json")
    assert checkpoint["pages"] == k and checkpoint["done"] is False and checkpoint["next_token"]
    # As if the dead attempt had also written page k+1 before dying (page written, checkpoint not yet).
    stale = storage.read_json(shard_dir / f"page-{k:05d}.json")
    storage.write_json(shard_dir / f"page-{k + 1:05d}.json", {**stale, "page": k + 1})

    proxy.clear_faults()
    proxy.reset_stats()
    summary = extract_shard(
        _client(proxy.url), pool.user_pool_id, prefix, run_path, limiter=RateLimiter(FAST), page_limit=2
    )
    assert summary["resumed_from_page"] == k
    assert summary["pages"] == pages and summary["users"] == len(expected)
    assert proxy.stats()["operation"]["ListUsers"]["forwarded"] == pages - k  # not one page fetched twice
    subs = [_sub(u) for n in range(1, pages + 1) for u in storage.read_json(shard_dir / f"page-{n:05d}.json")["users"]]
    assert len(subs) == len(set(subs)) and set(subs) == expected


def test_refused_token_restarts_the_shard_without_duplicates(stack: Any, run_path: Any, caplog: Any) -> None:
    """A token Cognito no longer accepts (here: its user was deleted) restarts the shard from page one."""
    client = stack.cognito_client()
    small = seed_pool_fast(client, 60, seed=4, pool_name="token-test")
    prefix = Counter(s[0] for s in small.subs).most_common(1)[0][0]
    members = {u: s for u, s in small.users.items() if s.startswith(prefix)}
    assert len(members) >= 3
    with ThrottlingProxy(stack.moto.url, latency_ms=1, jitter_ms=0) as proxy:
        proxy.fail_operation("ListUsers", after=1)
        with pytest.raises(ExtractError):
            extract_shard(
                _client(proxy.url, attempts=1),
                small.user_pool_id,
                prefix,
                run_path,
                limiter=RateLimiter(FAST),
                page_limit=1,
            )
    written = {_sub(u) for u in storage.read_json(run_path / "raw" / f"shard-{prefix}" / "page-00001.json")["users"]}
    for username, sub in members.items():
        if sub not in written:
            client.admin_delete_user(UserPoolId=small.user_pool_id, Username=username)
    caplog.set_level(logging.WARNING, logger="cognito_migration.extract")
    summary = extract_shard(client, small.user_pool_id, prefix, run_path, limiter=RateLimiter(FAST), page_limit=1)
    assert any("pagination token refused" in r.getMessage() for r in caplog.records)
    assert summary["users"] == len(written) == summary["pages"]
    assert not (run_path / "raw" / f"shard-{prefix}" / f"page-{summary['pages'] + 1:05d}.json").exists()


def test_low_quota_throttles_are_absorbed_and_output_is_exact(stack: Any, pool: SeededPool, run_path: Any) -> None:
    """UserList quota 5 RPS, our shards asking for 20: throttled often, finished exactly, every throttle counted."""
    with ThrottlingProxy(stack.moto.url, quotas={"UserList": 5}, latency_ms=5, jitter_ms=2, seed=2) as proxy:
        shards = _prepare_run(_client(proxy.url), pool, run_path)
        share = slot_share(20, slots=4)

        def one(prefix: str) -> dict[str, Any]:
            return extract_shard(
                _client(proxy.url, attempts=2),
                pool.user_pool_id,
                prefix,
                run_path,
                limiter=RateLimiter(share),
                page_limit=30,
                budget_rps=20,
            )

        with ThreadPoolExecutor(max_workers=4) as workers:
            summaries = list(workers.map(one, shards))
        throttled_at_proxy = proxy.throttled(category="UserList")
    subs = [_sub(u) for u in iter_extracted_users(run_path)]
    assert len(subs) == len(set(subs)) == pool.total and set(subs) == pool.subs
    assert throttled_at_proxy > 0
    assert sum(s["throttles"] for s in summaries) == throttled_at_proxy  # botocore's own retries included
    assert extract_completeness(run_path)["throttles"] == throttled_at_proxy


def test_memberships_group_by_group(stack: Any, pool: SeededPool, run_path: Any, proxy: ThrottlingProxy) -> None:
    summary = extract_memberships(
        _client(proxy.url),
        pool.user_pool_id,
        run_path,
        limiter=RateLimiter(FAST),
        groups_limiter=RateLimiter(FAST),
        page_limit=7,
    )
    memberships = read_memberships(run_path)
    per_group = Counter(g for groups in memberships.values() for g in groups)
    assert dict(per_group) == {g: n for g, n in pool.group_members.items() if n}
    assert summary["memberships"] == sum(per_group.values()) == pool.memberships
    assert summary["users_in_groups"] == len(memberships)
    assert sum(1 for groups in memberships.values() if len(groups) > 1) == pool.multi_group_users
    assert set(memberships) <= pool.subs
    operations = proxy.stats()["operation"]
    assert "AdminListGroupsForUser" not in operations
    assert operations["ListUsersInGroup"]["forwarded"] == summary["requests"]
    lines = [json.loads(line) for line in (run_path / "memberships.jsonl").read_text().splitlines()]
    assert len(lines) == pool.memberships and set(lines[0]) == {"group", "sub"}


def test_memberships_resume_inside_a_group(stack: Any, pool: SeededPool, run_path: Any, proxy: ThrottlingProxy) -> None:
    proxy.fail_operation("ListUsersInGroup", after=4)
    with pytest.raises(ExtractError, match="ListUsersInGroup"):
        extract_memberships(
            _client(proxy.url, attempts=1),
            pool.user_pool_id,
            run_path,
            limiter=RateLimiter(FAST),
            groups_limiter=RateLimiter(FAST),
            page_limit=7,
        )
    proxy.clear_faults()
    proxy.reset_stats()
    summary = extract_memberships(
        _client(proxy.url),
        pool.user_pool_id,
        run_path,
        limiter=RateLimiter(FAST),
        groups_limiter=RateLimiter(FAST),
        page_limit=7,
    )
    assert summary["memberships"] == pool.memberships
    assert "ListGroups" not in proxy.stats()["operation"]  # the group list was frozen by the first attempt
    needed = sum(max(1, math.ceil(n / 7)) for n in pool.group_members.values())
    assert proxy.stats()["operation"]["ListUsersInGroup"]["forwarded"] == needed - 4


def test_mfa_inventory_reads_each_user_once(
    stack: Any, pool: SeededPool, run_path: Any, proxy: ThrottlingProxy
) -> None:
    prefix, expected = _busiest_prefix(pool)
    summary = extract_shard(
        _client(proxy.url),
        pool.user_pool_id,
        prefix,
        run_path,
        limiter=RateLimiter(FAST),
        mfa_limiter=RateLimiter(FAST),
    )
    users = storage.read_json(run_path / "raw" / f"shard-{prefix}" / "page-00001.json")["users"]
    assert summary["mfa_users"] == len(users) == len(expected)
    assert all(set(u["MfaInventory"]) == {"UserMFASettingList", "PreferredMfaSetting"} for u in users)
    assert proxy.stats()["operation"]["AdminGetUser"]["forwarded"] == len(expected)


def test_missing_pool_is_a_clear_error(stack: Any, run_path: Any) -> None:
    client = stack.cognito_client()
    with pytest.raises(ExtractError, match=r"us-east-1_Missing0.*does not exist"):
        extract_shard(client, "us-east-1_Missing0", "a", run_path, limiter=RateLimiter(FAST))
    with pytest.raises(PreflightError, match=r"DescribeUserPool\(us-east-1_Missing0\).*does not exist in us-east-1"):
        snapshot_pool(client, "us-east-1_Missing0", "us-east-1")
    with pytest.raises(ValueError, match="hex"):
        extract_shard(client, "us-east-1_Missing0", 'a" or "1', run_path, limiter=RateLimiter(FAST))


def test_s3_run_storage(stack: Any, pool: SeededPool, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs", reason="ObjectStoragePath needs s3fs for s3:// (not installable next to botocore 1.44)")
    s3 = stack.moto.client("s3")
    s3.create_bucket(Bucket="migration-runs")
    monkeypatch.setenv("COGNITO_MIGRATION_STORAGE", "s3://migration-runs/cognito")
    monkeypatch.setenv("COGNITO_MIGRATION_STORAGE_CONN_ID", "aws_storage")
    run_path = storage.run_dir("s3-extract-test")
    assert run_path.protocol == "s3"
    client = stack.cognito_client()
    shards = _prepare_run(client, pool, run_path)
    for prefix in shards:
        extract_shard(client, pool.user_pool_id, prefix, run_path, limiter=RateLimiter(FAST))
    extract_memberships(
        client, pool.user_pool_id, run_path, limiter=RateLimiter(FAST), groups_limiter=RateLimiter(FAST)
    )
    assert {_sub(u) for u in iter_extracted_users(run_path)} == pool.subs
    assert sum(len(g) for g in read_memberships(run_path).values()) == pool.memberships
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="migration-runs", Prefix="cognito/")["Contents"]]
    assert any(k.endswith("raw/shard-0/checkpoint.json") for k in keys)
    assert any(k.endswith("memberships.jsonl") for k in keys)


def test_bad_connection_fails_preflight_clearly(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from cognito_migration.params import parse_params
    from cognito_migration.preflight import run_preflight
    from emulators.ports import free_port

    params = parse_params({"user_pool_id": "us-east-1_Whatever1", "stop_after": "extract"})
    dead = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {
            "region_name": "us-east-1",
            "service_config": {"cognito-idp": {"endpoint_url": f"http://127.0.0.1:{free_port()}"}},
            "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 1}, "connect_timeout": 2},
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_COGNITO", json.dumps(dead))
    with pytest.raises(PreflightError, match="unreachable through connection 'aws_cognito'"):
        run_preflight(params, "bad-connection")
    monkeypatch.delenv("AIRFLOW_CONN_AWS_COGNITO")
    with pytest.raises(PreflightError, match="'aws_cognito' is not defined"):
        run_preflight(params, "no-connection")


def test_slots_together_spend_the_budget_and_no_more() -> None:
    """Eight tasks, each paced by slot_limiter(20): together they send 20 requests/s, never ahead of it."""
    import threading
    import time

    from cognito_migration.extract import USERLIST_SLOTS, slot_limiter

    sent: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + 1.5

    def task() -> None:
        limiter = slot_limiter(20)
        while True:
            limiter.acquire()
            now = time.monotonic()
            if now >= deadline:
                return
            with lock:
                sent.append(now - started)

    threads = [threading.Thread(target=task) for _ in range(USERLIST_SLOTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    # Each task's bucket starts empty, so each may lose at most one request of its share over the window.
    assert 20 * 1.5 - USERLIST_SLOTS <= len(sent) <= 20 * 1.5
    assert all(sum(1 for t in sent if t <= s) <= 20 * s + 1e-6 for s in sent)  # never ahead, at any moment
