"""The Avnology client against the real emulator over HTTP: retries, pacing, errors, the 409 contract, secrecy."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from cognito_migration.avnology import (
    IDEMPOTENCY_NAMESPACE,
    AvnologyAuthError,
    AvnologyClient,
    AvnologyConflict,
    AvnologyHook,
    AvnologyRateLimited,
    AvnologyServerError,
    AvnologyTransportError,
    AvnologyValidationError,
    ConnectionSettings,
    RetryPolicy,
    error_from_response,
    idempotency_key,
    is_ours,
)

POOL = "us-east-1_TestPool1"
FAST_RETRY = RetryPolicy(max_attempts=6, backoff_base_s=0.02, backoff_max_s=0.2)


def client_for(stack: Any, key: str | None = None, **kwargs: Any) -> AvnologyClient:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("timeout", 5.0)
    return AvnologyClient(stack.avnology_url, key or stack.production_key, **kwargs)


def identity(n: int, sub: str, pool: str = POOL, **extra: Any) -> dict[str, Any]:
    return {
        "email": f"person{n}@example.com",
        "username": f"person_{n}",
        "admin_metadata": {"cognito": {"user_pool_id": pool, "sub": sub}},
        **extra,
    }


def production(stack: Any) -> dict[str, Any]:
    return stack.avnology.state("production")


# --- idempotency keys and provenance ---------------------------------------------------------------------------


def test_idempotency_key_is_uuid5_of_pool_and_sub_with_the_fixed_namespace() -> None:
    key = idempotency_key(POOL, "sub-1")
    assert key == str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{POOL}:sub-1"))
    assert key == idempotency_key(POOL, "sub-1")
    assert key != idempotency_key(POOL, "sub-2") != idempotency_key("us-east-1_Other", "sub-1")
    assert str(IDEMPOTENCY_NAMESPACE) == "8e287d25-3c94-5577-8b7b-b1ce075f9ede"  # changing it breaks re-runs
    with pytest.raises(ValueError):
        idempotency_key("", "sub-1")


def test_is_ours_needs_both_pool_and_sub() -> None:
    ours = {"admin_metadata": {"cognito": {"user_pool_id": POOL, "sub": "s1"}}}
    assert is_ours(ours, POOL, "s1")
    assert not is_ours(ours, POOL, "s2")
    assert not is_ours(ours, "us-east-1_Other", "s1")
    assert not is_ours({"admin_metadata": None}, POOL, "s1")
    assert not is_ours({}, POOL, "s1")


# --- error parsing (pure: responses built by hand, the shapes a real gateway may send) ---------------------------


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://api-id.avnology.net/v1/identities")
    return httpx.Response(status, content=body, headers=headers or {}, request=request)


def test_documented_error_envelope_is_parsed_into_a_typed_exception() -> None:
    body = b'{"error": {"code": "AVNOLOGY_AUTH_903", "message": "dup", "request_id": "req_1", "details": {"field": "email"}}}'
    exc = error_from_response(_response(409, body))
    assert isinstance(exc, AvnologyConflict)
    assert (exc.status, exc.code, exc.request_id, exc.field) == (409, "AVNOLOGY_AUTH_903", "req_1", "email")
    assert exc.raw_body == body.decode()
    assert "POST /v1/identities" in str(exc) and "req_1" in str(exc)


def test_flat_body_and_non_json_body_still_give_status_code_and_request_id() -> None:
    flat = error_from_response(
        _response(400, b'{"code": "AVNOLOGY_AUTH_902", "message": "bad phone", "details": {"field": "phone"}}')
    )
    assert isinstance(flat, AvnologyValidationError)
    assert (flat.code, flat.field, flat.message) == ("AVNOLOGY_AUTH_902", "phone", "bad phone")

    html = error_from_response(_response(502, b"<html>Bad Gateway</html>", {"X-Request-Id": "req_gw"}))
    assert isinstance(html, AvnologyServerError)
    assert html.code is None and html.request_id == "req_gw" and html.raw_body == "<html>Bad Gateway</html>"
    assert html.retryable

    text_error = error_from_response(_response(401, b'{"error": "invalid key"}'))
    assert isinstance(text_error, AvnologyAuthError) and text_error.message == "invalid key"


def test_retry_after_as_seconds_as_http_date_and_from_the_body() -> None:
    assert error_from_response(_response(429, b"{}", {"Retry-After": "7"})).retry_after == 7.0  # type: ignore[attr-defined]
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    from_date = error_from_response(_response(429, b"{}", {"Retry-After": later}))
    assert isinstance(from_date, AvnologyRateLimited) and 25 <= (from_date.retry_after or 0) <= 31
    body = b'{"error": {"code": "AVNOLOGY_AUTH_021", "message": "slow down", "retry_after": 3}}'
    assert error_from_response(_response(429, body)).retry_after == 3.0  # type: ignore[attr-defined]


# --- the secret ------------------------------------------------------------------------------------------------


def test_the_key_never_appears_in_reprs_exceptions_or_logs(clean_stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "ak_test_wrong_" + uuid.uuid4().hex
    client = client_for(clean_stack, wrong)
    with pytest.raises(AvnologyAuthError) as caught:
        client.check_auth()
    exc = caught.value
    assert exc.status == 401 and exc.code == "AVNOLOGY_AUTH_005" and exc.request_id
    unreachable = AvnologyClient("http://127.0.0.1:9", wrong, retry=RetryPolicy(max_attempts=2, backoff_base_s=0.01))
    with pytest.raises(AvnologyTransportError) as transport:
        unreachable.list_identities()
    assert "ConnectError; retry 1/1" in caplog.text  # the retry was logged, and the log is checked below
    texts = [repr(client), str(client), str(exc), repr(exc), exc.raw_body, str(transport.value), caplog.text]
    assert all(wrong not in text for text in texts)
    # A body that echoes the key is redacted before it is kept.
    echoed = error_from_response(_response(401, f'{{"message": "bad key {wrong}"}}'.encode()), redact=client.redact)
    assert wrong not in str(echoed) and wrong not in echoed.raw_body and "[redacted]" in echoed.raw_body


def test_hook_from_connection_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "ak_live_" + uuid.uuid4().hex
    monkeypatch.setenv(
        "AIRFLOW_CONN_AVNOLOGY_HOOKTEST",
        f'{{"conn_type": "avnology", "host": "api-id.avnology.net", "password": "{key}", '
        '"extra": {"timeout": 12, "max_concurrency": 3, "rate_limit_rps": 40, "role_namespace": "groups"}}',
    )
    hook = AvnologyHook("avnology_hooktest")
    settings = hook.settings
    assert settings.base_url == "https://api-id.avnology.net"
    assert (settings.timeout, settings.max_concurrency, settings.rate_limit_rps) == (12.0, 3, 40.0)
    assert settings.role_namespace == "groups" and settings.role_relation == "member"
    assert hook.client.max_concurrency == 3 and hook.client.rate_limiter.rate_per_s == 40.0  # type: ignore[union-attr]
    assert key not in repr(hook) and key not in repr(hook.client) and key not in repr(settings)


def test_connection_settings_take_a_full_url_and_reject_bad_extras() -> None:
    assert ConnectionSettings.from_connection("c", "http://127.0.0.1:8900", {}).base_url == "http://127.0.0.1:8900"
    assert ConnectionSettings.from_connection("c", "", {}).base_url == "https://api-id.avnology.net"
    assert ConnectionSettings.from_connection("c", "h", {"rate_limit_rps": 0}).rate_limit_rps is None
    with pytest.raises(ValueError, match=r"connection 'c'.*'timeout' must be positive"):
        ConnectionSettings.from_connection("c", "h", {"timeout": -1})
    with pytest.raises(ValueError, match=r"'max_concurency' is not a setting"):
        ConnectionSettings.from_connection("c", "h", {"max_concurency": 4})


def test_hook_without_a_key_says_where_to_put_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AVNOLOGY_NOKEY", '{"conn_type": "avnology", "host": "api-id.avnology.net"}')
    with pytest.raises(ValueError, match="has no password: put the Avnology API key there"):
        AvnologyHook("avnology_nokey").client  # noqa: B018


# --- documented endpoints against the emulator ---------------------------------------------------------------


def test_check_auth_proves_read_and_write_and_a_read_only_key_fails_on_write(clean_stack: Any) -> None:
    assert client_for(clean_stack).check_auth(write=True)["write"] is True
    readonly = client_for(clean_stack, clean_stack.readonly_key)
    readonly.check_auth()  # reading is allowed
    with pytest.raises(AvnologyAuthError) as caught:
        readonly.check_auth(write=True)
    assert caught.value.status == 403 and caught.value.code == "AVNOLOGY_AUTH_100"
    assert production(clean_stack)["identities"] == []  # the write probe creates nothing


def test_create_is_idempotent_and_a_409_email_is_adopted_only_when_the_provenance_is_ours(clean_stack: Any) -> None:
    client = client_for(clean_stack)
    sub = str(uuid.uuid4())
    first = client.create_or_adopt(identity(1, sub), user_pool_id=POOL, sub=sub)
    again = client.create_or_adopt(identity(1, sub), user_pool_id=POOL, sub=sub)
    assert first.kind == again.kind == "created" and first.avnology_id == again.avnology_id  # replayed

    changed = client.create_or_adopt(identity(1, sub, first_name="Renamed"), user_pool_id=POOL, sub=sub)
    assert (changed.kind, changed.avnology_id) == ("adopted", first.avnology_id)  # key reused → lookup → ours

    other_sub = str(uuid.uuid4())
    foreign = client.create_or_adopt(identity(1, other_sub, username="someone_else"), user_pool_id=POOL, sub=other_sub)
    assert (foreign.kind, foreign.reason) == ("conflict", "email_taken")

    taken_name = client.create_or_adopt(identity(2, other_sub, username="person_1"), user_pool_id=POOL, sub=other_sub)
    assert (taken_name.kind, taken_name.reason) == ("conflict", "username_taken")

    state = production(clean_stack)
    assert len(state["identities"]) == 1
    assert state["counters"]["idempotency_keys"][idempotency_key(POOL, sub)]["creates"] == 1


def test_validate_only_creates_nothing_and_sends_no_idempotency_key(clean_stack: Any) -> None:
    client = client_for(clean_stack)
    sub = str(uuid.uuid4())
    ok = client.create_or_adopt(identity(3, sub), user_pool_id=POOL, sub=sub, validate_only=True)
    bad = client.create_or_adopt(
        identity(4, sub, timezone="Mars/Olympus"), user_pool_id=POOL, sub=sub, validate_only=True
    )
    assert (ok.kind, ok.avnology_id) == ("created", None)
    assert (bad.kind, bad.reason) == ("invalid", "invalid_timezone") and bad.request_id
    state = production(clean_stack)
    assert state["identities"] == [] and state["counters"]["idempotency_keys"] == {}
    assert state["counters"]["validate_only_requests"] == 1
    with pytest.raises(ValueError, match="Idempotency-Key"):
        client.create_identity(identity(5, sub), idempotency_key=None)


def test_organization_roles_patch_and_get(clean_stack: Any) -> None:
    client = client_for(clean_stack)
    org = client.create_organization("my-pool", display_name="My pool")
    assert org["id"].startswith("org_")
    with pytest.raises(AvnologyConflict):
        client.create_organization("my-pool")
    sub = str(uuid.uuid4())
    usr = client.create_or_adopt(identity(6, sub, organization_id=org["id"]), user_pool_id=POOL, sub=sub).avnology_id
    assert usr is not None
    assert client.grant_roles(usr, ["admins", "editors"]) == 2
    assert client.grant_roles(usr, ["admins"]) == 0  # 409: already granted
    tuples = production(clean_stack)["permissions"]
    assert {(t["namespace"], t["object"], t["relation"], t["subject"]) for t in tuples} == {
        ("roles", "admins", "member", f"identities:{usr}"),
        ("roles", "editors", "member", f"identities:{usr}"),
    }
    current = client.get_identity(usr)
    assert current["organization_id"] == org["id"] and current["etag"]
    updated = client.patch_identity(usr, {"first_name": "Ada"}, ["first_name"], etag=current["etag"])
    assert updated["first_name"] == "Ada" and updated["username"] == "person_6"
    with pytest.raises(AvnologyConflict):  # the old ETag is stale now
        client.patch_identity(usr, {"first_name": "Bea"}, "first_name", etag=current["etag"])
    assert client.find_identity_by_email("PERSON6@example.com")["id"] == usr  # type: ignore[index]
    assert client.find_identity_by_email("nobody@example.com") is None


def test_recovery_flow_sends_a_code_and_its_throttle_is_not_retried(clean_stack: Any) -> None:
    client = client_for(clean_stack)
    sub = str(uuid.uuid4())
    client.create_or_adopt(identity(7, sub), user_pool_id=POOL, sub=sub)
    assert client.start_recovery("person7@example.com")["state"] == "sent_email"
    started = time.monotonic()
    with pytest.raises(AvnologyRateLimited) as caught:
        client.start_recovery("person7@example.com")
    assert caught.value.retry_after and caught.value.retry_after > 1
    assert time.monotonic() - started < 2  # raised to the caller, not waited out
    assert [c["email"] for c in production(clean_stack)["recovery_codes_sent"]] == ["person7@example.com"]


# --- retries, pacing, concurrency ------------------------------------------------------------------------------


def test_503s_are_retried_and_a_500_is_not(clean_stack: Any) -> None:
    client = client_for(clean_stack)
    clean_stack.avnology.set_faults(error_rate=0.5, error_statuses=[503], seed=7)
    for _ in range(10):
        client.list_identities(page_size=1)
    assert production(clean_stack)["server"]["faults_injected"] >= 3
    clean_stack.avnology.set_faults(error_rate=1.0, error_statuses=[500])
    with pytest.raises(AvnologyServerError) as caught:
        client.list_identities()
    assert caught.value.status == 500 and caught.value.attempts == 1


def test_persistent_503_gives_up_after_max_attempts(clean_stack: Any) -> None:
    clean_stack.avnology.set_faults(error_rate=1.0, error_statuses=[503])
    with pytest.raises(AvnologyServerError) as caught:
        client_for(clean_stack).list_identities()
    assert caught.value.status == 503 and caught.value.attempts == FAST_RETRY.max_attempts


def test_a_hung_request_times_out_and_the_retry_succeeds(clean_stack: Any) -> None:
    clean_stack.avnology.set_faults(hang_every=2, hang_seconds=4)
    client = client_for(clean_stack, timeout=0.5)
    started = time.monotonic()
    for _ in range(3):
        client.list_identities(page_size=1)
    assert time.monotonic() - started < 3.5


def test_a_refused_request_waits_its_retry_after_then_succeeds(clean_stack: Any) -> None:
    clean_stack.avnology.set_faults(rate_limit_rps=1, rate_limit_burst=1)
    client = client_for(clean_stack)
    client.list_identities(page_size=1)
    started = time.monotonic()
    client.list_identities(page_size=1)  # refused with Retry-After: 1, then retried
    assert time.monotonic() - started >= 1.0
    assert production(clean_stack)["counters"]["rate_limited"] == 1


def test_429_bursts_from_many_workers_all_end_in_success(clean_stack: Any) -> None:
    clean_stack.avnology.set_faults(rate_limit_rps=4, rate_limit_burst=2)
    client = client_for(clean_stack, max_concurrency=4)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.list_identities(page_size=1)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = production(clean_stack)
    assert state["counters"]["rate_limited"] >= 1
    assert time.monotonic() - started >= 1.0  # Retry-After is whole seconds


def test_a_retry_after_beyond_the_limit_is_raised_not_waited(clean_stack: Any) -> None:
    clean_stack.avnology.set_faults(rate_limit_rps=0.01, rate_limit_burst=1)
    client = client_for(clean_stack, retry=RetryPolicy(max_retry_after_s=5))
    client.list_identities()
    with pytest.raises(AvnologyRateLimited) as caught:
        client.list_identities()
    assert (caught.value.retry_after or 0) > 5 and caught.value.code == "AVNOLOGY_AUTH_021"


def test_client_side_rate_limit_paces_requests(clean_stack: Any) -> None:
    client = client_for(clean_stack, rate_limit_rps=20, rate_limit_burst=1)
    started = time.monotonic()
    for _ in range(11):
        client.list_identities(page_size=1)
    assert time.monotonic() - started >= 0.45


def test_concurrency_is_bounded_whatever_the_number_of_threads(clean_stack: Any) -> None:
    clean_stack.avnology.set_faults(latency_ms=100)
    client = client_for(clean_stack, max_concurrency=3)
    threads = [threading.Thread(target=client.list_identities) for _ in range(9)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert 0.28 <= elapsed < 1.5  # 9 requests, 3 at a time, 100 ms each: three waves, not one, not nine
