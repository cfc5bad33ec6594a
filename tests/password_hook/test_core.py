"""The hook's building blocks on their own: signatures, the replay cache, rate limits, settings, redaction."""

from __future__ import annotations

import json
import logging

import pytest

from password_hook import redaction
from password_hook.core import (
    BodyError,
    KeyedLimiter,
    ReplayCache,
    ReplayCacheFull,
    compute_signature,
    parse_body,
    secret_hash,
    signature_matches,
)
from password_hook.settings import (
    SOURCE_LIMIT_CALLER,
    SOURCE_LIMIT_END_USER,
    HookSettings,
    RateSpec,
    Secret,
    SettingsError,
)

BODY = b'{"identifier":"a@example.com","password":"x"}'


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- signatures ---------------------------------------------------------------------------------------------


def test_the_signature_matches_an_independent_computation() -> None:
    # printf '1700000000.<body>' | openssl dgst -sha256 -hmac whsec_test-secret
    expected = "2ee860b5a1c6dc9520e0c7609e8acd5f5201223d94d514f8f44366e61438c652"
    assert compute_signature("whsec_test-secret", "1700000000", BODY) == expected
    assert signature_matches((Secret("whsec_test-secret"),), "1700000000", BODY, expected.upper())
    assert not signature_matches((Secret("whsec_other"),), "1700000000", BODY, expected)
    assert not signature_matches((Secret("whsec_test-secret"),), "1700000001", BODY, expected)
    assert not signature_matches((Secret("whsec_test-secret"),), "1700000000", BODY + b" ", expected)
    assert signature_matches((Secret("whsec_old"), Secret("whsec_test-secret")), "1700000000", BODY, expected)


def test_the_secret_hash_matches_an_independent_computation() -> None:
    # printf 'alice@example.comclient123' | openssl dgst -sha256 -hmac s3cr3t -binary | base64
    assert secret_hash("alice@example.com", "client123", "s3cr3t") == "3oRHe3WR8/3iS7+pKVoHosPyR4ClwhKdlubBSWTpAg0="


# -- replay cache ---------------------------------------------------------------------------------------------


def test_the_replay_cache_remembers_until_expiry_and_never_forgets_a_live_entry() -> None:
    cache = ReplayCache(max_entries=2)
    assert cache.remember("a", expires_at=100, now=0)
    assert not cache.remember("a", expires_at=100, now=50)
    assert cache.remember("b", expires_at=200, now=50)
    with pytest.raises(ReplayCacheFull):
        cache.remember("c", expires_at=300, now=60)
    assert cache.remember("c", expires_at=300, now=100)  # "a" expired, making room
    assert len(cache) == 2
    assert cache.remember("a", expires_at=400, now=200)  # once expired, the timestamp check rejects it anyway


# -- rate limits ----------------------------------------------------------------------------------------------


def test_the_keyed_limiter_counts_each_key_and_stays_bounded() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(RateSpec(2, 60), max_keys=3, clock=clock)
    assert limiter.hit("a") == 0.0 and limiter.hit("a") == 0.0
    assert limiter.hit("a") == pytest.approx(30.0)
    assert limiter.hit("b") == 0.0  # another key has its own bucket
    clock.now += 30
    assert limiter.hit("a") == 0.0
    for key in ("c", "d", "e"):
        limiter.hit(key)
    assert len(limiter._buckets) == 3


# -- the body ---------------------------------------------------------------------------------------------------


def test_parse_body_returns_the_password_wrapped() -> None:
    identifier, password = parse_body(json.dumps({"identifier": " a@example.com ", "password": "hunter22"}).encode())
    assert identifier == "a@example.com"
    assert password.reveal() == "hunter22"
    assert "hunter22" not in repr(password) and "hunter22" not in str(password)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"\xff\xfe", "body"),
        (b'"a string"', "body"),
        (b'{"identifier": "a", "password": ""}', "password"),
        (b'{"identifier": "a", "password": "' + b"p" * 257 + b'"}', "password"),
        (b'{"identifier": "   ", "password": "hunter22"}', "identifier"),
        (b'{"identifier": ["a"], "password": "hunter22"}', "identifier"),
    ],
)
def test_parse_body_names_the_bad_field_without_quoting_it(body: bytes, field: str) -> None:
    with pytest.raises(BodyError) as raised:
        parse_body(body)
    assert raised.value.field_name == field
    assert "hunter22" not in str(raised.value)


# -- settings -------------------------------------------------------------------------------------------------


def test_settings_from_the_environment() -> None:
    env = {
        "PASSWORD_HOOK_WEBHOOK_SECRET": "whsec_new, whsec_old",
        "PASSWORD_HOOK_USER_POOL_ID": "eu-west-2_AbC123",
        "PASSWORD_HOOK_CLIENT_ID": "client123",
        "PASSWORD_HOOK_CLIENT_SECRET": "s3cr3t",
        "PASSWORD_HOOK_IDENTIFIER_LIMIT": "5/60",
        "PASSWORD_HOOK_COGNITO_RPS": "7.5",
        "PASSWORD_HOOK_ACCEPT_MFA_CHALLENGE": "yes",
        "COGNITO_MIGRATION_LEDGER_URL": "postgresql://ledger@db/ledger",
    }
    settings = HookSettings.from_env(env)
    assert settings.region == "eu-west-2"
    assert [s.reveal() for s in settings.webhook_secrets] == ["whsec_new", "whsec_old"]
    assert settings.identifier_limit == RateSpec(5, 60)
    assert settings.source_limit == SOURCE_LIMIT_CALLER  # no end-user IP header: a flood cap on the caller
    assert settings.cognito_rps == 7.5 and settings.accept_mfa_challenge
    assert settings.ledger_url == "postgresql://ledger@db/ledger"
    assert settings.replay_window_s == 360
    shown = repr(settings)
    assert "s3cr3t" not in shown and "whsec_new" not in shown and "whsec_old" not in shown
    with_header = HookSettings.from_env({**env, "PASSWORD_HOOK_SOURCE_IP_HEADER": "X-Forwarded-For"})
    assert with_header.source_limit == SOURCE_LIMIT_END_USER


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"PASSWORD_HOOK_WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET is required"),
        ({"PASSWORD_HOOK_WEBHOOK_SECRET": "plain-secret"}, "must start with 'whsec_'"),
        ({"PASSWORD_HOOK_USER_POOL_ID": "AbC123"}, "USER_POOL_ID"),
        ({"PASSWORD_HOOK_CLIENT_ID": ""}, "CLIENT_ID is required"),
        ({"PASSWORD_HOOK_IDENTIFIER_LIMIT": "lots"}, "IDENTIFIER_LIMIT"),
        ({"PASSWORD_HOOK_COGNITO_RPS": "fast"}, "COGNITO_RPS"),
        ({"PASSWORD_HOOK_COGNITO_RPS": "0"}, "cognito_rps must be positive"),
        ({"PASSWORD_HOOK_ACCEPT_MFA_CHALLENGE": "maybe"}, "ACCEPT_MFA_CHALLENGE"),
    ],
)
def test_bad_settings_name_the_variable(change: dict[str, str], message: str) -> None:
    env = {
        "PASSWORD_HOOK_WEBHOOK_SECRET": "whsec_abc",
        "PASSWORD_HOOK_USER_POOL_ID": "us-east-1_AbC123",
        "PASSWORD_HOOK_CLIENT_ID": "client123",
    }
    with pytest.raises(SettingsError, match=message):
        HookSettings.from_env({**env, **change})


# -- redaction ------------------------------------------------------------------------------------------------


def test_the_filter_scrubs_secrets_in_flight_in_every_encoding(caplog: pytest.LogCaptureFixture) -> None:
    redaction.install(["whsec_static-secret"])
    log = logging.getLogger("botocore.endpoint")
    caplog.set_level(logging.DEBUG, logger="botocore")
    password = 'Pa"ss\\wörd-ñ 42'
    body = json.dumps({"AuthParameters": {"PASSWORD": password}}).encode()
    with redaction.guarding(password):
        log.debug("params: %s", {"body": body})
        log.debug("raw %s and %r", password, password)
        try:
            raise RuntimeError(f"failed with {password}")
        except RuntimeError:
            log.exception("boom")
    log.debug("static whsec_static-secret and a token %s", '{"IdToken": "eyJabc.def.ghi"}')
    text = caplog.text
    assert "wörd" not in text and "w\\u00f6rd" not in text and "w\\\\u00f6rd" not in text
    assert "whsec_static-secret" not in text and "eyJabc" not in text
    assert text.count(redaction.MASK) >= 5
    assert "RuntimeError" in text  # the traceback survives, scrubbed
