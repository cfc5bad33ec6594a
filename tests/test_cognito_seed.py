"""The seeded pool holds what SeededPool says it holds: checked by reading it back through the Cognito API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from typing import Any

import pytest

from emulators.airflow_home import PROJECT_ROOT
from emulators.cognito_seed import (
    LAMBDA_TRIGGERS,
    add_user,
    delete_user,
    disable_user,
    modify_user,
    plan_users,
    seed_pool,
    seed_pool_fast,
)

E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def _all_users(client: Any, pool_id: str, **extra: Any) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.list_users(UserPoolId=pool_id, **extra, **({"PaginationToken": token} if token else {}))
        users.extend(page["Users"])
        token = page.get("PaginationToken")
        if not token:
            return users


def _members(client: Any, pool_id: str, group: str) -> list[str]:
    subs: list[str] = []
    token = None
    while True:
        page = client.list_users_in_group(
            UserPoolId=pool_id, GroupName=group, **({"NextToken": token} if token else {})
        )
        subs.extend(next(a["Value"] for a in u["Attributes"] if a["Name"] == "sub") for u in page["Users"])
        token = page.get("NextToken")
        if not token:
            return subs


def _attrs(user: dict[str, Any]) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in user["Attributes"]}


def test_plan_is_deterministic_and_holds_every_category() -> None:
    first, again, other = plan_users(200, seed=7), plan_users(200, seed=7), plan_users(200, seed=8)
    assert first == again
    assert first != other
    tags = Counter(t for spec in first for t in spec.tags)
    for tag in ("federated", "phone_only", "case_duplicate", "invalid_email", "non_e164_phone", "unicode_name"):
        assert tags[tag] >= 1, tag
    assert {s.status for s in first} == {
        "CONFIRMED",
        "FORCE_CHANGE_PASSWORD",
        "UNCONFIRMED",
        "RESET_REQUIRED",
        "EXTERNAL_PROVIDER",
    }
    assert len({s.username for s in first}) == 200


def test_too_small_a_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        plan_users(5)


def test_seed_pool_through_the_api_creates_what_it_reports(stack: Any) -> None:
    client = stack.cognito_client()
    pool = seed_pool(client, 120, seed=3, pool_name="seed-test")
    users = _all_users(client, pool.user_pool_id)
    assert len(users) == pool.total == 120
    assert {_attrs(u)["sub"] for u in users} == pool.subs

    assert Counter(u["UserStatus"] for u in users) == Counter(pool.by_status)
    assert pool.federated_status == "EXTERNAL_PROVIDER"  # moto runs in this process: set on its backend
    assert sum(1 for u in users if not u["Enabled"]) == pool.disabled >= 1
    federated = [u for u in users if u["Username"].startswith("Google_")]
    assert len(federated) == pool.federated >= 1
    for user in federated:
        assert user["UserStatus"] == "EXTERNAL_PROVIDER"
        identities = json.loads(_attrs(user)["identities"])
        assert identities[0]["providerName"] == "Google" and identities[0]["userId"]
    phone_only = [u for u in users if "email" not in _attrs(u)]
    assert len(phone_only) == pool.phone_only >= 1
    assert all(E164.match(_attrs(u)["phone_number"]) for u in phone_only)

    by_folded: dict[str, set[str]] = defaultdict(set)
    for user in users:
        if "email" in _attrs(user):
            by_folded[_attrs(user)["email"].lower()].add(_attrs(user)["email"])
    dup_users = sum(1 for u in users if "email" in _attrs(u) and len(by_folded[_attrs(u)["email"].lower()]) > 1)
    assert dup_users == pool.case_duplicate_emails >= 2
    assert sum(1 for u in users if _attrs(u).get("email", "").count("@") > 1) == pool.invalid_emails == 1
    phones = [_attrs(u)["phone_number"] for u in users if "phone_number" in _attrs(u)]
    assert sum(1 for p in phones if not E164.match(p)) == pool.non_e164_phones >= 1
    assert sum(1 for u in users if len(_attrs(u)["name"]) > 150) == pool.long_names >= 1
    assert sum(1 for u in users if any(ord(c) > 127 for c in _attrs(u)["name"])) == pool.unicode_names >= 1
    assert sum(1 for u in users if any(k.startswith("custom:") for k in _attrs(u))) == pool.custom_attributes

    members = {g: _members(client, pool.user_pool_id, g) for g in pool.groups}
    assert {g: len(m) for g, m in members.items()} == pool.group_members
    per_user = Counter(sub for subs in members.values() for sub in subs)
    assert sum(per_user.values()) == pool.memberships
    assert sum(1 for n in per_user.values() if n > 1) == pool.multi_group_users >= 1

    described = client.describe_user_pool(UserPoolId=pool.user_pool_id)["UserPool"]
    assert set(LAMBDA_TRIGGERS) <= set(described["LambdaConfig"])
    assert {"custom:tier", "custom:legacy_id"} <= {a["Name"] for a in described["SchemaAttributes"]}
    assert described["Domain"] == pool.domain
    clients = {
        name: client.describe_user_pool_client(UserPoolId=pool.user_pool_id, ClientId=cid)["UserPoolClient"]
        for name, cid in pool.clients.items()
    }
    assert "ClientSecret" not in clients["web-spa"] and clients["web-spa"]["AllowedOAuthFlows"] == ["code"]
    assert clients["backend-confidential"]["ClientSecret"]
    assert clients["legacy-implicit"]["AllowedOAuthFlows"] == ["implicit"]
    assert "ALLOW_USER_PASSWORD_AUTH" in clients["legacy-implicit"]["ExplicitAuthFlows"]


def test_seed_pool_fast_writes_the_same_mix_into_moto(stack: Any) -> None:
    client = stack.cognito_client()
    pool = seed_pool_fast(client, 300, seed=3, pool_name="fast-test")
    users = _all_users(client, pool.user_pool_id)
    assert {_attrs(u)["sub"] for u in users} == pool.subs and len(users) == 300
    assert Counter(u["UserStatus"] for u in users) == Counter(pool.by_status)
    assert sum(1 for u in users if not u["Enabled"]) == pool.disabled
    assert {g: len(_members(client, pool.user_pool_id, g)) for g in pool.groups} == pool.group_members


def test_reconciliation_helpers_change_the_pool(stack: Any) -> None:
    client = stack.cognito_client()
    pool = seed_pool_fast(client, 20, seed=5, pool_name="helpers-test")
    sub = add_user(client, pool.user_pool_id, "newcomer", "newcomer@example.com", groups=["viewers"])
    got = client.admin_get_user(UserPoolId=pool.user_pool_id, Username="newcomer")
    assert got["UserStatus"] == "CONFIRMED"
    assert {a["Name"]: a["Value"] for a in got["UserAttributes"]}["sub"] == sub
    assert sub in _members(client, pool.user_pool_id, "viewers")

    modify_user(client, pool.user_pool_id, "newcomer", name="Renamed Person", custom_tier="pro")
    attrs = {
        a["Name"]: a["Value"]
        for a in client.admin_get_user(UserPoolId=pool.user_pool_id, Username="newcomer")["UserAttributes"]
    }
    assert attrs["name"] == "Renamed Person" and attrs["custom:tier"] == "pro"
    disable_user(client, pool.user_pool_id, "newcomer")
    assert client.admin_get_user(UserPoolId=pool.user_pool_id, Username="newcomer")["Enabled"] is False
    delete_user(client, pool.user_pool_id, "newcomer")
    with pytest.raises(client.exceptions.UserNotFoundException):
        client.admin_get_user(UserPoolId=pool.user_pool_id, Username="newcomer")
    with pytest.raises(ValueError, match="at least one attribute"):
        modify_user(client, pool.user_pool_id, "whoever")


def test_cli_seeds_a_moto_in_another_process(stack: Any) -> None:
    """From another process moto's backend is out of reach: federated users stay CONFIRMED, and it says so."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulators.cognito_seed",
            "--endpoint-url",
            stack.moto.url,
            "--users",
            "25",
            "--pool-name",
            "cli-test",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["total"] == 25 and summary["federated_status"] == "CONFIRMED"
    assert "users" not in summary  # counts only: no usernames or subs on the terminal
    users = _all_users(stack.cognito_client(), summary["user_pool_id"])
    assert len(users) == 25
    assert Counter(u["UserStatus"] for u in users) == Counter(summary["by_status"])


def test_cli_serve_runs_its_own_moto_until_stdin_closes() -> None:
    import boto3

    from emulators.moto_cognito import TEST_CREDENTIALS

    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.cognito_seed", "--serve", "--fast", "--fastpath", "--users", "40"],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = json.loads(proc.stdout.readline())
        client = boto3.client(
            "cognito-idp", region_name="us-east-1", endpoint_url=line["endpoint_url"], **TEST_CREDENTIALS
        )
        assert len(_all_users(client, line["user_pool_id"], Filter='sub ^= ""')) == 40 == line["total"]
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
