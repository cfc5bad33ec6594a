"""Fixtures for the password hook: moto as a real Cognito over HTTP, a pool with users, signed requests,
and a scripted Cognito for the answers moto cannot give (throttling, PasswordResetRequired, MFA challenges).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emulators.moto_cognito import MotoServer
from password_hook.core import compute_signature
from password_hook.settings import HookSettings, RateSpec, Secret

# Quote, backslash, non-ASCII and a space: every way botocore could escape it in a log line.
PASSWORD = 'Pa"ss\\wörd-ñ 42'
WRONG_PASSWORD = 'Pa"ss\\wörd-ñ 43'
TEMP_PASSWORD = "Temp-pass-0!"


@dataclass
class HookPool:
    """A moto user pool signed into by email, with an app client that allows ADMIN_USER_PASSWORD_AUTH."""

    moto: MotoServer
    user_pool_id: str
    client_id: str
    secret_client_id: str
    client_secret: str
    subs: dict[str, str] = field(default_factory=dict)

    def add_user(self, email: str, password: str | None = PASSWORD, *, temporary: str | None = None) -> str:
        client = self.moto.client()
        created = client.admin_create_user(
            UserPoolId=self.user_pool_id,
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
            **({"TemporaryPassword": temporary} if temporary else {}),
        )
        if password is not None:
            client.admin_set_user_password(
                UserPoolId=self.user_pool_id, Username=email, Password=password, Permanent=True
            )
        attrs = {a["Name"]: a["Value"] for a in created["User"]["Attributes"]}
        self.subs[email] = attrs["sub"]
        return attrs["sub"]


@pytest.fixture(scope="session")
def hook_moto() -> Iterator[MotoServer]:
    with MotoServer() as moto:
        yield moto


@pytest.fixture(autouse=True)
def aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook uses boto3's default credential chain (a role in Lambda); moto takes its test values."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hook_pool(hook_moto: MotoServer) -> HookPool:
    client = hook_moto.client()
    pool_id = client.create_user_pool(
        PoolName=f"hook-{uuid.uuid4().hex[:8]}",
        UsernameAttributes=["email"],
        Policies={"PasswordPolicy": {"MinimumLength": 8, "RequireSymbols": False}},
    )["UserPool"]["Id"]
    flows = ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    public = client.create_user_pool_client(UserPoolId=pool_id, ClientName="hook", ExplicitAuthFlows=flows)
    confidential = client.create_user_pool_client(
        UserPoolId=pool_id, ClientName="hook-secret", ExplicitAuthFlows=flows, GenerateSecret=True
    )["UserPoolClient"]
    pool = HookPool(
        hook_moto,
        pool_id,
        public["UserPoolClient"]["ClientId"],
        confidential["ClientId"],
        confidential["ClientSecret"],
    )
    pool.add_user("alice@example.com")
    return pool


@pytest.fixture
def webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


@pytest.fixture
def make_settings(hook_pool: HookPool, webhook_secret: str, tmp_path: Path) -> Callable[..., HookSettings]:
    """Settings for the pool above; keyword arguments override any field."""

    def make(**overrides: Any) -> HookSettings:
        values: dict[str, Any] = {
            "webhook_secrets": (Secret(webhook_secret),),
            "user_pool_id": hook_pool.user_pool_id,
            "client_id": hook_pool.client_id,
            "cognito_endpoint_url": hook_pool.moto.url,
            "ledger_url": f"sqlite:///{tmp_path / 'hook-ledger.db'}",
            "identifier_limit": RateSpec(20, 60),
            "cognito_timeout_s": 2.0,
            "cognito_max_attempts": 2,
        }
        values.update(overrides)
        return HookSettings(**values)

    return make


@pytest.fixture
def sign(webhook_secret: str) -> Callable[..., tuple[bytes, dict[str, str]]]:
    """``sign({"identifier": ..., "password": ...}, age_s=0)`` -> (raw body, headers) as Avnology sends them."""

    def make(payload: dict[str, Any], *, age_s: float = 0, secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload).encode()
        timestamp = str(int(time.time() - age_s))
        signature = compute_signature(secret or webhook_secret, timestamp, body)
        headers = {
            "content-type": "application/json",
            "X-Avnology-Timestamp": timestamp,
            "X-Avnology-Signature": signature,
        }
        return body, headers

    return make


class ScriptedCognito:
    """A real HTTP server speaking Cognito's JSON protocol with answers chosen by the test.

    ``answer(status, body)`` sets the reply to every request; ``requests`` counts what arrived (botocore's
    retries included), so a test can see the retries happen.
    """

    def __init__(self) -> None:
        self.status, self.body = 200, {}
        self.requests: list[dict[str, Any]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                scripted.requests.append({"target": self.headers.get("x-amz-target"), "body": body})
                payload = json.dumps(scripted.body).encode()
                self.send_response(scripted.status)
                self.send_header("content-type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-requestid", "scripted-" + uuid.uuid4().hex[:8])
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body

    def error(self, code: str, status: int = 400) -> None:
        self.answer(status, {"__type": code, "message": f"scripted {code}"})


@pytest.fixture
def scripted_cognito() -> Iterator[ScriptedCognito]:
    scripted = ScriptedCognito()
    scripted._thread.start()
    try:
        yield scripted
    finally:
        scripted._server.shutdown()
        scripted._server.server_close()
