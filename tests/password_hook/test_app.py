"""The hook as an ASGI app on uvicorn, over real HTTP, against moto's real AdminInitiateAuth."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from cognito_migration.ledger import Ledger, SeenUser
from emulators.ports import free_port
from password_hook.app import HOOK_PATH
from password_hook.core import secret_hash
from password_hook.server import HookServer
from password_hook.settings import HookSettings, RateSpec, Secret
from tests.password_hook.conftest import PASSWORD, TEMP_PASSWORD, WRONG_PASSWORD, HookPool, ScriptedCognito

ALICE = "alice@example.com"
Sign = Callable[..., tuple[bytes, dict[str, str]]]


@pytest.fixture
def serve() -> Iterator[Callable[[HookSettings], HookServer]]:
    servers: list[HookServer] = []

    def start(settings: HookSettings) -> HookServer:
        servers.append(HookServer(settings).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def post(server: HookServer, signed: tuple[bytes, dict[str, str]], **headers: str) -> httpx.Response:
    body, signed_headers = signed
    return httpx.post(server.url + HOOK_PATH, content=body, headers={**signed_headers, **headers}, timeout=30)


def attempt(identifier: str, password: str) -> dict[str, Any]:
    return {"identifier": identifier, "password": password}


# -- the credential check -------------------------------------------------------------------------------------


def test_the_right_password_matches(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings())
    response = post(server, sign(attempt(ALICE, PASSWORD)))
    assert response.status_code == 200
    assert response.json() == {"status": "password_match"}


def test_a_wrong_password_is_a_mismatch(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings())
    response = post(server, sign(attempt(ALICE, WRONG_PASSWORD)))
    assert (response.status_code, response.json()) == (200, {"status": "password_mismatch"})


def test_an_unknown_user_is_a_mismatch(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings())
    response = post(server, sign(attempt("nobody@example.com", PASSWORD)))
    assert (response.status_code, response.json()) == (200, {"status": "password_mismatch"})


def test_a_disabled_user_is_a_mismatch(serve: Any, make_settings: Any, sign: Sign, hook_pool: HookPool) -> None:
    hook_pool.add_user("gone@example.com")
    hook_pool.moto.client().admin_disable_user(UserPoolId=hook_pool.user_pool_id, Username="gone@example.com")
    server = serve(make_settings())
    assert post(server, sign(attempt("gone@example.com", PASSWORD))).json() == {"status": "password_mismatch"}


def test_a_temporary_password_is_not_a_match(serve: Any, make_settings: Any, sign: Sign, hook_pool: HookPool) -> None:
    """FORCE_CHANGE_PASSWORD: Cognito answers NEW_PASSWORD_REQUIRED; an admin-issued password is not carried over."""
    hook_pool.add_user("new@example.com", password=None, temporary=TEMP_PASSWORD)
    server = serve(make_settings())
    assert post(server, sign(attempt("new@example.com", TEMP_PASSWORD))).json() == {"status": "password_mismatch"}


def test_a_confidential_client_sends_the_secret_hash(
    serve: Any, make_settings: Any, sign: Sign, hook_pool: HookPool
) -> None:
    settings = make_settings(client_id=hook_pool.secret_client_id, client_secret=Secret(hook_pool.client_secret))
    server = serve(settings)
    assert post(server, sign(attempt(ALICE, PASSWORD))).json() == {"status": "password_match"}
    assert post(server, sign(attempt(ALICE, WRONG_PASSWORD))).json() == {"status": "password_mismatch"}


def test_the_secret_hash_is_on_the_wire(
    serve: Any, make_settings: Any, sign: Sign, scripted_cognito: ScriptedCognito
) -> None:
    """moto does not check SECRET_HASH, so read the request Cognito would receive."""
    scripted_cognito.answer(200, {"AuthenticationResult": {"AccessToken": "a.b.c"}})
    settings = make_settings(
        cognito_endpoint_url=scripted_cognito.url, client_id="client123", client_secret=Secret("s3cr3t-value")
    )
    server = serve(settings)
    assert post(server, sign(attempt(ALICE, PASSWORD))).json() == {"status": "password_match"}
    sent = scripted_cognito.requests[-1]
    assert sent["target"] == "AWSCognitoIdentityProviderService.AdminInitiateAuth"
    assert sent["body"]["AuthFlow"] == "ADMIN_USER_PASSWORD_AUTH"
    assert sent["body"]["ClientId"] == "client123"
    assert sent["body"]["AuthParameters"]["SECRET_HASH"] == secret_hash(ALICE, "client123", "s3cr3t-value")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (("error", "PasswordResetRequiredException"), (200, "password_mismatch")),
        (("error", "UserNotConfirmedException"), (200, "password_mismatch")),
        (("error", "UserLambdaValidationException"), (200, "password_mismatch")),
        (("challenge", "SOFTWARE_TOKEN_MFA"), (200, "password_mismatch")),
        (("challenge", "CUSTOM_CHALLENGE"), (200, "password_mismatch")),
        (("error", "ResourceNotFoundException"), (500, "hook_misconfigured")),
        (("error", "InvalidParameterException"), (500, "hook_misconfigured")),
    ],
)
def test_the_documented_decisions(
    serve: Any,
    make_settings: Any,
    sign: Sign,
    scripted_cognito: ScriptedCognito,
    answer: tuple[str, str],
    expected: tuple[int, str],
) -> None:
    kind, name = answer
    if kind == "error":
        scripted_cognito.error(name)
    else:
        scripted_cognito.answer(200, {"ChallengeName": name, "Session": "sess", "ChallengeParameters": {}})
    server = serve(make_settings(cognito_endpoint_url=scripted_cognito.url))
    response = post(server, sign(attempt(ALICE, PASSWORD)))
    body = response.json()
    assert (response.status_code, body.get("status") or body["error"]["code"]) == expected


def test_an_mfa_challenge_can_count_as_a_match(
    serve: Any, make_settings: Any, sign: Sign, scripted_cognito: ScriptedCognito
) -> None:
    scripted_cognito.answer(200, {"ChallengeName": "SMS_MFA", "Session": "sess", "ChallengeParameters": {}})
    server = serve(make_settings(cognito_endpoint_url=scripted_cognito.url, accept_mfa_challenge=True))
    assert post(server, sign(attempt(ALICE, PASSWORD))).json() == {"status": "password_match"}


# -- Cognito unavailable ----------------------------------------------------------------------------------------


def test_cognito_down_answers_503(serve: Any, make_settings: Any, sign: Sign) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = serve(make_settings(cognito_endpoint_url=closed, cognito_max_attempts=2))
    response = post(server, sign(attempt(ALICE, PASSWORD)))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "cognito_unavailable"
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(("code", "status"), [("TooManyRequestsException", 400), ("InternalErrorException", 500)])
def test_throttling_after_retries_answers_503(
    serve: Any, make_settings: Any, sign: Sign, scripted_cognito: ScriptedCognito, code: str, status: int
) -> None:
    scripted_cognito.error(code, status)
    server = serve(make_settings(cognito_endpoint_url=scripted_cognito.url, cognito_max_attempts=3))
    response = post(server, sign(attempt(ALICE, PASSWORD)))
    assert response.status_code == 503
    assert len(scripted_cognito.requests) == 3  # botocore retried before the hook gave up


def test_the_quota_slice_paces_cognito_calls(serve: Any, make_settings: Any, sign: Sign, hook_pool: HookPool) -> None:
    """With a slice of 1 call/s and no wait allowed, the second call in the same second is refused with 503."""
    hook_pool.add_user("bob@example.com")
    server = serve(make_settings(cognito_rps=1, cognito_wait_s=0))
    assert post(server, sign(attempt(ALICE, PASSWORD))).status_code == 200
    response = post(server, sign(attempt("bob@example.com", PASSWORD)))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "cognito_unavailable"


# -- signatures, freshness, replays ---------------------------------------------------------------------------


def test_a_bad_signature_answers_401(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings())
    other = sign(attempt(ALICE, PASSWORD), secret="whsec_not-the-configured-one")
    assert post(server, other).status_code == 401
    body, headers = sign(attempt(ALICE, WRONG_PASSWORD))
    tampered = body.replace(b"alice@", b"alicf@")
    response = post(server, (tampered, headers))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_signature")
    unsigned = {k: v for k, v in headers.items() if k != "X-Avnology-Signature"}
    response = post(server, (body, unsigned))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "missing_signature")


def test_a_rotated_secret_still_verifies(serve: Any, make_settings: Any, sign: Sign, webhook_secret: str) -> None:
    server = serve(make_settings(webhook_secrets=(Secret("whsec_next-secret"), Secret(webhook_secret))))
    assert post(server, sign(attempt(ALICE, PASSWORD))).status_code == 200
    assert post(server, sign(attempt(ALICE, PASSWORD), secret="whsec_next-secret")).status_code == 200


def test_a_stale_timestamp_answers_401(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings())
    response = post(server, sign(attempt(ALICE, PASSWORD), age_s=301))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "stale_timestamp")
    assert post(server, sign(attempt(ALICE, PASSWORD), age_s=240)).status_code == 200


def test_a_future_timestamp_answers_401(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings())
    response = post(server, sign(attempt(ALICE, PASSWORD), age_s=-120))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "future_timestamp")


def test_a_replayed_request_answers_401(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings())
    signed = sign(attempt(ALICE, PASSWORD))
    assert post(server, signed).json() == {"status": "password_match"}
    response = post(server, signed)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "replayed")


# -- abuse limits ---------------------------------------------------------------------------------------------


def test_too_many_attempts_for_one_identifier_answer_429(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings(identifier_limit=RateSpec(3, 600)))
    # Different case, same person: the limit is per identifier, not per spelling.
    for n, identifier in enumerate((ALICE, ALICE.upper(), ALICE)):
        assert post(server, sign(attempt(identifier, f"{WRONG_PASSWORD}-{n}"))).status_code == 200
    response = post(server, sign(attempt(ALICE, PASSWORD)))
    assert response.status_code == 429
    assert response.json()["error"]["details"] == {"scope": "identifier"}
    assert int(response.headers["retry-after"]) >= 1


def test_too_many_attempts_from_one_source_answer_429(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings(source_ip_header="X-Forwarded-For", source_limit=RateSpec(2, 600)))
    for n in range(2):
        response = post(server, sign(attempt(f"user{n}@example.com", PASSWORD)), **{"X-Forwarded-For": "203.0.113.7"})
        assert response.status_code == 200
    # A forged left-most entry does not help: the right-most one (our proxy's) is the source.
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    response = post(server, sign(attempt("user9@example.com", PASSWORD)), **spoofed)
    assert (response.status_code, response.json()["error"]["details"]) == (429, {"scope": "source"})
    other = post(server, sign(attempt("user10@example.com", PASSWORD)), **{"X-Forwarded-For": "203.0.113.8"})
    assert other.status_code == 200


# -- the body -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"identifier": ALICE}, "password"),
        ({"identifier": "", "password": PASSWORD}, "identifier"),
        ({"identifier": ALICE, "password": 12345678}, "password"),
        (["not", "an", "object"], "body"),
    ],
)
def test_a_malformed_body_answers_400_without_echoing_it(
    serve: Any, make_settings: Any, sign: Sign, payload: Any, field: str
) -> None:
    server = serve(make_settings())
    response = post(server, sign(payload))
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": field}
    assert "12345678" not in response.text and PASSWORD not in response.text


def test_an_oversized_body_answers_413(serve: Any, make_settings: Any, sign: Sign) -> None:
    server = serve(make_settings(max_body_bytes=1024))
    response = post(server, sign({"identifier": ALICE, "password": PASSWORD, "padding": "x" * 2000}))
    assert response.status_code == 413


def test_the_health_probe_does_not_call_cognito(
    serve: Any, make_settings: Any, scripted_cognito: ScriptedCognito
) -> None:
    server = serve(make_settings(cognito_endpoint_url=scripted_cognito.url))
    assert httpx.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert scripted_cognito.requests == []


# -- the ledger -----------------------------------------------------------------------------------------------


def test_a_match_marks_the_user_hook_migrated_and_the_campaign_skips_them(
    serve: Any, make_settings: Any, sign: Sign, hook_pool: HookPool, ledger_url: str
) -> None:
    """The configured ledger (COGNITO_MIGRATION_LEDGER_URL) records the match, so no reset email goes out."""
    from cognito_migration import notify

    ledger = Ledger(ledger_url).create_schema()
    bob_sub = hook_pool.add_user("bob@example.com")
    alice_sub = hook_pool.subs[ALICE]
    pool_id = hook_pool.user_pool_id
    ledger.record_seen(
        pool_id,
        [SeenUser(sub, sub, email, "CONFIRMED", True, None) for email, sub in hook_pool.subs.items()],
        run_id="r1",
    )
    for n, sub in enumerate((alice_sub, bob_sub)):
        ledger.record_import(
            pool_id, sub, avnology_id=f"usr_{n}", already_present=False, cognito_last_modified=None, run_id="r1"
        )

    server = serve(make_settings(ledger_url=None))  # None: the pipeline's configured ledger
    assert post(server, sign(attempt(ALICE, PASSWORD))).json() == {"status": "password_match"}
    assert post(server, sign(attempt("bob@example.com", WRONG_PASSWORD))).json() == {"status": "password_mismatch"}

    assert ledger.get(pool_id, alice_sub)["hook_migrated_at"] is not None
    assert ledger.get(pool_id, bob_sub)["hook_migrated_at"] is None
    recipients, skipped = notify.eligible_recipients(ledger, pool_id, [alice_sub, bob_sub], "reset-1")
    assert [r.sub for r in recipients] == [bob_sub]
    assert skipped == {"hook_migrated": 1}


def test_a_ledger_outage_does_not_lock_the_user_out(
    serve: Any, make_settings: Any, sign: Sign, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="password_hook")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    server = serve(make_settings(ledger_url=f"sqlite:///{not_a_dir}/ledger.db"))
    assert post(server, sign(attempt(ALICE, PASSWORD))).json() == {"status": "password_match"}
    assert any("ledger write failed" in r.getMessage() for r in caplog.records)


# -- no secrets in output --------------------------------------------------------------------------------------


def test_no_password_secret_or_token_reaches_the_logs(
    serve: Any,
    make_settings: Any,
    sign: Sign,
    hook_pool: HookPool,
    webhook_secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(client_id=hook_pool.secret_client_id, client_secret=Secret(hook_pool.client_secret))
    server = serve(settings)
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3", "password_hook"):
        caplog.set_level(logging.DEBUG, logger=name)
    caplog.clear()

    responses = [
        post(server, sign(attempt(ALICE, PASSWORD))),
        post(server, sign(attempt(ALICE, WRONG_PASSWORD))),
        post(server, sign(attempt("nobody@example.com", PASSWORD))),
        post(server, sign({"identifier": ALICE, "password": PASSWORD, "x": 1}, age_s=900)),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 401]

    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "AdminInitiateAuth" in text, "botocore's DEBUG log was not captured: the test would prove nothing"
    assert "Response body" in text
    hashes = [
        secret_hash(i, hook_pool.secret_client_id, hook_pool.client_secret) for i in (ALICE, "nobody@example.com")
    ]
    forbidden = {
        "password": PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "password (JSON)": json.dumps(PASSWORD)[1:-1],
        "password (bytes repr)": repr(json.dumps(PASSWORD).encode())[2:-1],
        "webhook secret": webhook_secret,
        "client secret": hook_pool.client_secret,
        **{f"secret hash {n}": h for n, h in enumerate(hashes)},
    }
    for what, value in forbidden.items():
        assert value not in text, f"the {what} reached the logs"
        assert all(value not in r.text for r in responses), f"the {what} reached a response"
    assert '"AccessToken": "ey' not in text and '"IdToken": "ey' not in text
