"""The throttling proxy answers like Cognito over quota: at once, with the error boto3 knows, per category."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from emulators.airflow_home import PROJECT_ROOT
from emulators.cognito_seed import seed_pool_fast
from emulators.moto_cognito import TEST_CREDENTIALS
from emulators.throttle_proxy import ThrottlingProxy


def _client(url: str, caller: str = "test") -> Any:
    return boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url=url,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, user_agent_extra=f"app/{caller}"),
        **TEST_CREDENTIALS,
    )


@pytest.fixture(scope="module")
def pool_id(stack: Any) -> str:
    return seed_pool_fast(stack.cognito_client(), 30, seed=2, pool_name="proxy-test").user_pool_id


def test_over_quota_is_answered_at_once_with_too_many_requests(stack: Any, pool_id: str) -> None:
    username = stack.cognito_client().list_users(UserPoolId=pool_id, Limit=1)["Users"][0]["Username"]
    with ThrottlingProxy(stack.moto.url, quotas={"UserList": 2}, burst_s=1.0, latency_ms=100, jitter_ms=0) as proxy:
        client = _client(proxy.url)
        client.list_users(UserPoolId=pool_id, Limit=1)
        client.list_users(UserPoolId=pool_id, Limit=1)  # the bucket held two
        started = time.monotonic()
        with pytest.raises(client.exceptions.TooManyRequestsException) as raised:
            client.list_users(UserPoolId=pool_id, Limit=1)
        assert time.monotonic() - started < 0.08  # no latency, no queuing
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        # Another category has its own bucket; ListUsersInGroup shares UserList's.
        client.admin_get_user(UserPoolId=pool_id, Username=username)
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.list_users_in_group(UserPoolId=pool_id, GroupName="viewers")
        assert proxy.throttled(category="UserList") == 2
        assert proxy.throttled(caller="test") == 2


def test_forwarded_requests_take_the_modelled_latency(stack: Any, pool_id: str) -> None:
    with ThrottlingProxy(stack.moto.url, latency_ms=120, jitter_ms=20, seed=3) as proxy:
        client = _client(proxy.url)
        durations = []
        for _ in range(5):
            started = time.monotonic()
            client.list_users(UserPoolId=pool_id, Limit=5)
            durations.append(time.monotonic() - started)
    assert all(0.099 <= d < 0.5 for d in durations), durations


def test_per_pool_bucket_and_faults(stack: Any, pool_id: str) -> None:
    with ThrottlingProxy(stack.moto.url, latency_ms=1, jitter_ms=0) as proxy:
        client = _client(proxy.url)
        outcomes = []
        started = time.monotonic()
        for _ in range(8):  # ListGroups: 20 RPS per account but 5 per pool
            try:
                client.list_groups(UserPoolId=pool_id)
                outcomes.append("ok")
            except client.exceptions.TooManyRequestsException:
                outcomes.append("throttled")
        refilled = 5 * (time.monotonic() - started)  # tokens earned while the eight calls ran
        assert 5 <= outcomes.count("ok") <= 5 + refilled and "throttled" in outcomes
        proxy.fail_operation("DescribeUserPool", after=1, times=1, status=503, code="ServiceUnavailable")
        client.describe_user_pool(UserPoolId=pool_id)
        with pytest.raises(client.exceptions.ClientError, match="ServiceUnavailable"):
            client.describe_user_pool(UserPoolId=pool_id)
        client.describe_user_pool(UserPoolId=pool_id)
        assert proxy.stats()["operation"]["DescribeUserPool"] == {"forwarded": 2, "throttled": 0, "failed": 1}


def test_runs_as_its_own_process_with_admin_routes(stack: Any, pool_id: str) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.throttle_proxy",
            "--upstream",
            stack.moto.url,
            "--quota",
            "UserList=1",
            "--latency-ms",
            "1",
            "--jitter-ms",
            "0",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        client = _client(info["url"], caller="prod")
        client.list_users(UserPoolId=pool_id, Limit=1)
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.list_users(UserPoolId=pool_id, Limit=1)
        stats = httpx.get(info["admin"] + "/stats", timeout=5).json()
        assert stats["caller"]["prod"] == {"forwarded": 1, "throttled": 1, "failed": 0}
        httpx.post(info["admin"] + "/reset", timeout=5).raise_for_status()
        assert httpx.get(info["admin"] + "/stats", timeout=5).json()["caller"] == {}
        client.list_users(UserPoolId=pool_id, Limit=1)  # a reset refills the buckets
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_rejects_an_unknown_category() -> None:
    with pytest.raises(ValueError, match="unknown quota categories"):
        ThrottlingProxy("http://127.0.0.1:1", quotas={"UserLists": 3})
