"""An operator gets a cutover kit for the pool, and a confidential client's secret is in no file and no log.

Cognito is moto over real HTTP: its CreateUserPoolClient(GenerateSecret=True) returns a real secret, which is the
value we hunt for in every file of the run and in everything logged or printed while the real preflight, the real
memberships read and the kit build run.
"""

from __future__ import annotations

import json
import logging
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from cognito_migration import storage
from cognito_migration.cutover_kit import build_cutover_kit
from cognito_migration.extract import run_memberships
from cognito_migration.params import parse_params
from cognito_migration.preflight import run_preflight

LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:"


def _create_pool(cognito: Any) -> tuple[str, str]:
    """A pool with a hosted domain, three app clients, triggers and a group with two members; returns (id, secret)."""
    pool_id = cognito.create_user_pool(
        PoolName="acme customers",
        UsernameAttributes=["email"],
        LambdaConfig={
            "PreSignUp": LAMBDA + "pre-sign-up",
            "UserMigration": LAMBDA + "user-migration",
            "CustomMessage": LAMBDA + "custom-message",
            "PreTokenGenerationConfig": {"LambdaVersion": "V2_0", "LambdaArn": LAMBDA + "claims"},
        },
    )["UserPool"]["Id"]
    cognito.create_user_pool_domain(Domain="acme-login", UserPoolId=pool_id)
    oauth = {"AllowedOAuthFlowsUserPoolClient": True, "SupportedIdentityProviders": ["COGNITO"]}
    cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="web-spa",
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid", "email"],
        CallbackURLs=["https://app.acme.test/callback"],
        LogoutURLs=["https://app.acme.test/"],
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        **oauth,
    )
    secret = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="billing-backend",
        GenerateSecret=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid"],
        CallbackURLs=["https://billing.acme.test/oauth/callback"],
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        **oauth,
    )["UserPoolClient"]["ClientSecret"]
    cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="legacy-widget",
        AllowedOAuthFlows=["implicit"],
        AllowedOAuthScopes=["openid"],
        CallbackURLs=["https://widget.acme.test/cb"],
        **oauth,
    )
    cognito.create_group(GroupName="admins", UserPoolId=pool_id, Precedence=1)
    for email in ("ana@acme.test", "bo@acme.test"):
        username = cognito.admin_create_user(
            UserPoolId=pool_id, Username=email, UserAttributes=[{"Name": "email", "Value": email}]
        )["User"]["Username"]
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName="admins")
    assert len(secret) >= 16
    return pool_id, secret


def _put_secret_back(run_path: Any, client_name: str, secret: str) -> None:
    """Defence in depth: a snapshot that still holds the ClientSecret (as if preflight had missed it)."""
    snapshot = storage.read_json(run_path / "snapshot.json")
    for client in snapshot["clients"]:
        if client["ClientName"] == client_name:
            client["ClientSecret"] = secret
    storage.write_json(run_path / "snapshot.json", snapshot)


def _files_containing(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_kit_from_a_moto_pool_never_holds_the_client_secret(
    clean_stack: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    cognito = clean_stack.cognito_client()
    pool_id, secret = _create_pool(cognito)
    run_id = f"manual__cutover-{uuid.uuid4().hex[:8]}"
    params = parse_params({"user_pool_id": pool_id, "stop_after": "extract", "avnology_api_domain": "id-api.acme.test"})
    run_path = storage.run_dir(run_id)
    run_folder = Path(run_path.path)

    caplog.set_level(logging.INFO)  # the deployed level, for the stages that call Cognito
    caplog.set_level(logging.DEBUG, logger="cognito_migration")
    run_preflight(params, run_id)
    run_memberships(params, run_id)
    result = build_cutover_kit(params, run_id)

    kit_folder = run_folder / "cutover"
    assert result == {
        "kit_md": str(run_path / "cutover" / "kit.md"),
        "kit_json": str(run_path / "cutover" / "kit.json"),
        "clients": 3,
        "warnings": 5,  # password auth, implicit; pre-token V2_0, UserMigration, CustomMessage
    }
    kit = json.loads((kit_folder / "kit.json").read_text())
    by_name = {c["name"]: c for c in kit["clients"]}
    assert {n: c["client_type"] for n, c in by_name.items()} == {
        "billing-backend": "confidential",
        "legacy-widget": "public",
        "web-spa": "public",
    }
    assert by_name["billing-backend"]["redirect_uris"] == ["https://billing.acme.test/oauth/callback"]
    assert by_name["billing-backend"]["secret_rotation"]
    assert kit["url_mapping"][0] == {
        "endpoint": "authorize",
        "cognito": "https://acme-login.auth.us-east-1.amazoncognito.com/oauth2/authorize",
        "avnology": "https://id-api.acme.test/oauth2/auth",
        "source": "seed",
    }
    assert [(t["trigger"], t["status"]) for t in kit["triggers"]] == [
        ("PreSignUp", "mapped"),
        ("PreTokenGeneration", "mapped_with_caveat"),
        ("UserMigration", "superseded"),
        ("CustomMessage", "no_equivalent"),
    ]
    assert [(r["group"], r["member_count"], r["role_tuple"]["subject"]) for r in kit["roles"]] == [
        ("admins", 2, "identities:<usr_id>")
    ]
    markdown = (kit_folder / "kit.md").read_text()
    assert "## 1. App clients → OAuth 2.1 clients (3)" in markdown
    for name in ("kit.md", "kit.json"):
        assert stat.S_IMODE((kit_folder / name).stat().st_mode) == 0o600

    # Through the real preflight: the secret is in no file of the run.
    assert _files_containing(run_folder, secret) == []
    # A snapshot that still holds it (defence in depth): the kit rebuilt from it still does not.
    _put_secret_back(run_path, "billing-backend", secret)
    assert build_cutover_kit(params, run_id) == result
    assert _files_containing(run_folder, secret) == [str(run_folder / "snapshot.json")]

    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    printed = capfd.readouterr()
    assert "Cutover kit for" in logged
    assert secret not in logged
    assert secret not in printed.out + printed.err
