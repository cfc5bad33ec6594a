"""The same hook as an AWS Lambda handler, called with API Gateway HTTP API (payload 2.0) events."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from cognito_migration.ledger import Ledger, SeenUser
from emulators.ports import free_port
from password_hook import lambda_handler
from tests.password_hook.conftest import PASSWORD, WRONG_PASSWORD, HookPool

ALICE = "alice@example.com"
Sign = Callable[..., tuple[bytes, dict[str, str]]]


def api_gateway_event(
    signed: tuple[bytes, dict[str, str]], *, method: str = "POST", base64_body: bool = False
) -> dict[str, Any]:
    """An HTTP API (v2) event: header names arrive lower-cased, the body as text or base64."""
    body, headers = signed
    return {
        "version": "2.0",
        "routeKey": "POST /password-migration",
        "rawPath": "/password-migration",
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "http": {
                "method": method,
                "path": "/password-migration",
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.20",
            },
            "requestId": "req-1",
            "stage": "$default",
        },
        "body": base64.b64encode(body).decode() if base64_body else body.decode(),
        "isBase64Encoded": base64_body,
    }


def answer(result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert result["headers"]["content-type"] == "application/json"
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.parametrize("base64_body", [False, True])
def test_match_and_mismatch(make_settings: Any, sign: Sign, base64_body: bool) -> None:
    handle = lambda_handler.make_handler(make_settings())
    match = handle(api_gateway_event(sign({"identifier": ALICE, "password": PASSWORD}), base64_body=base64_body), None)
    assert answer(match) == (200, {"status": "password_match"})
    mismatch = handle(api_gateway_event(sign({"identifier": ALICE, "password": WRONG_PASSWORD})), None)
    assert answer(mismatch) == (200, {"status": "password_mismatch"})
    unknown = handle(api_gateway_event(sign({"identifier": "nobody@example.com", "password": PASSWORD})), None)
    assert answer(unknown) == (200, {"status": "password_mismatch"})


def test_signature_freshness_and_replay(make_settings: Any, sign: Sign) -> None:
    handle = lambda_handler.make_handler(make_settings())
    forged = sign({"identifier": ALICE, "password": PASSWORD}, secret="whsec_forged")
    assert answer(handle(api_gateway_event(forged), None))[0] == 401
    stale = sign({"identifier": ALICE, "password": PASSWORD}, age_s=600)
    assert answer(handle(api_gateway_event(stale), None))[1]["error"]["code"] == "stale_timestamp"
    event = api_gateway_event(sign({"identifier": ALICE, "password": PASSWORD}))
    assert answer(handle(event, None)) == (200, {"status": "password_match"})
    assert answer(handle(event, None))[1]["error"]["code"] == "replayed"


def test_cognito_down_answers_503(make_settings: Any, sign: Sign) -> None:
    handle = lambda_handler.make_handler(make_settings(cognito_endpoint_url=f"http://127.0.0.1:{free_port()}"))
    result = handle(api_gateway_event(sign({"identifier": ALICE, "password": PASSWORD})), None)
    assert result["statusCode"] == 503
    assert int(result["headers"]["Retry-After"]) >= 1


def test_only_post_is_accepted(make_settings: Any, sign: Sign) -> None:
    handle = lambda_handler.make_handler(make_settings())
    result = handle(api_gateway_event(sign({}), method="GET"), None)
    assert (result["statusCode"], result["headers"]["Allow"]) == (405, "POST")


def test_the_entry_point_reads_the_environment_and_marks_the_ledger(
    monkeypatch: pytest.MonkeyPatch, hook_pool: HookPool, webhook_secret: str, ledger_url: str, sign: Sign
) -> None:
    """``handler`` is what Lambda calls: settings from the environment, built once per execution environment."""
    ledger = Ledger(ledger_url).create_schema()
    sub = hook_pool.subs[ALICE]
    ledger.record_seen(hook_pool.user_pool_id, [SeenUser(sub, sub, ALICE, "CONFIRMED", True, None)], run_id="r1")
    env = {
        "PASSWORD_HOOK_WEBHOOK_SECRET": webhook_secret,
        "PASSWORD_HOOK_USER_POOL_ID": hook_pool.user_pool_id,
        "PASSWORD_HOOK_CLIENT_ID": hook_pool.secret_client_id,
        "PASSWORD_HOOK_CLIENT_SECRET": hook_pool.client_secret,
        "PASSWORD_HOOK_COGNITO_ENDPOINT_URL": hook_pool.moto.url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(lambda_handler, "_hook", None)  # a cold start

    result = lambda_handler.handler(api_gateway_event(sign({"identifier": ALICE, "password": PASSWORD})), None)
    assert answer(result) == (200, {"status": "password_match"})
    warm = lambda_handler._hook
    result = lambda_handler.handler(api_gateway_event(sign({"identifier": ALICE, "password": WRONG_PASSWORD})), None)
    assert answer(result) == (200, {"status": "password_mismatch"})
    assert lambda_handler._hook is warm
    assert ledger.get(hook_pool.user_pool_id, sub)["hook_migrated_at"] is not None
