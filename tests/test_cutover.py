"""The cutover kit's plan: the seed's tables applied to a pool snapshot (pure code, no I/O)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cognito_migration.cutover import (
    CUSTOM_AUTH_ACTION,
    CUSTOM_SENDER_ACTION,
    DIRECT_SIGN_IN_WARNING,
    IMPLICIT_WARNING,
    M2M_WITHOUT_KEY_WARNING,
    TRIGGER_TABLE,
    CutoverError,
    avnology_base_url,
    build_kit,
    cognito_base_url,
    count_members,
    plan_client,
    plan_triggers,
    strip_secrets,
)
from cognito_migration.cutover_markdown import render_markdown

LAMBDA = "arn:aws:lambda:eu-west-1:123456789012:function:"
GOLDEN_SECRET = "s3cr3t-golden-value-7f1c"


def golden_snapshot() -> dict[str, Any]:
    """A pool with three clients (public, confidential, implicit) and several triggers."""
    return {
        "region": "eu-west-1",
        "domain": "acme-login",
        "shards": ["0", "1"],
        "user_pool": {
            "Id": "eu-west-1_Gold3n",
            "Name": "Acme customers",
            "Domain": "acme-login",
            "MfaConfiguration": "OPTIONAL",
            "LambdaConfig": {
                "PreSignUp": LAMBDA + "pre-sign-up",
                "PostAuthentication": LAMBDA + "post-auth",
                "PreTokenGeneration": LAMBDA + "claims",
                "PreTokenGenerationConfig": {"LambdaVersion": "V2_0", "LambdaArn": LAMBDA + "claims"},
                "UserMigration": LAMBDA + "user-migration",
                "CustomMessage": LAMBDA + "custom-message",
                "CreateAuthChallenge": LAMBDA + "create-challenge",
                "CustomEmailSender": {"LambdaVersion": "V1_0", "LambdaArn": LAMBDA + "email-sender"},
                "KMSKeyID": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd",
            },
        },
        "clients": [
            {
                "ClientId": "spa0001",
                "ClientName": "web-spa",
                "HasSecret": False,
                "AllowedOAuthFlows": ["code"],
                "AllowedOAuthScopes": ["openid", "email", "profile"],
                "CallbackURLs": ["https://app.acme.test/callback", "http://localhost:3000/callback"],
                "LogoutURLs": ["https://app.acme.test/signed-out"],
                "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
                "SupportedIdentityProviders": ["COGNITO", "Google"],
            },
            {
                "ClientId": "conf0002",
                "ClientName": "billing-backend",
                "HasSecret": True,
                # Defence in depth: preflight removes it, but a snapshot that still has it must not leak it.
                "ClientSecret": GOLDEN_SECRET,
                "AllowedOAuthFlows": ["code"],
                "AllowedOAuthScopes": ["openid", "aws.cognito.signin.user.admin", "billing/read"],
                "CallbackURLs": ["https://billing.acme.test/oauth/callback"],
                "LogoutURLs": [],
                "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
                "SupportedIdentityProviders": ["COGNITO"],
            },
            {
                "ClientId": "impl0003",
                "ClientName": "legacy-widget",
                "HasSecret": False,
                "AllowedOAuthFlows": ["implicit"],
                "AllowedOAuthScopes": ["openid", "phone"],
                "CallbackURLs": ["https://widget.acme.test/cb"],
                "SupportedIdentityProviders": ["COGNITO"],
            },
        ],
        "groups": [
            {
                "GroupName": "admins",
                "Description": "Administrators",
                "Precedence": 0,
                "RoleArn": "arn:aws:iam::123456789012:role/acme-admins",
                "CreationDate": "2024-01-02T03:04:05+00:00",
            },
            {"GroupName": "beta-testers", "Precedence": 10},
        ],
    }


HOSTED = "https://acme-login.auth.eu-west-1.amazoncognito.com"
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Gold3n"
AVN = "https://api-id.avnology.net"
ROTATION = [
    "Register the client in the Avnology dashboard; it shows the new client secret once.",
    "Store the new secret in your secret manager as a new entry; never in code, tickets, chat or this kit.",
    "Deploy the app reading OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET from the secret manager.",
    "The Cognito secret is not migrated. Delete Cognito app client conf0002 when the migration window closes: "
    "that revokes it.",
]
NEW_ID = "<client id the Avnology dashboard assigns>"
KEEP_FOR_HOOK = "remove after the migration window (the password migration hook's Lambda still needs it)"
PRE_TOKEN_ACTION = (
    "Register a webhook hook for token.pre_issue and configure a token claim resolver. Version V2_0 also customises "
    "access tokens and their scopes: the seed documents only a claim resolver, so check that token.pre_issue can "
    "set access-token claims before cutover."
)


def _flow(cognito: str, avnology: str | None, note: str = "") -> dict[str, Any]:
    return {"cognito": cognito, "avnology": avnology, "note": note}


def _env(variable: str, old: str | None, new: str | None, note: str = "") -> dict[str, Any]:
    return {"variable": variable, "old": old, "new": new, "note": note}


def _trigger(name: str, arn: str, version: str | None, event: str | None, status: str, action: str) -> dict[str, Any]:
    return {
        "trigger": name,
        "lambda_arn": LAMBDA + arn,
        "lambda_version": version,
        "avnology_event": event,
        "status": status,
        "action": action,
        "flagged": status != "mapped",
    }


EXPECTED_KIT: dict[str, Any] = {
    "kit_version": 1,
    "user_pool_id": "eu-west-1_Gold3n",
    "pool_name": "Acme customers",
    "region": "eu-west-1",
    "avnology_base_url": AVN,
    "cognito_base_url": HOSTED,
    "member_counts_known": True,
    "notes": [],
    "clients": [
        {
            "name": "billing-backend",
            "cognito_client_id": "conf0002",
            "client_type": "confidential",
            "pkce": "recommended",
            "redirect_uris": ["https://billing.acme.test/oauth/callback"],
            "logout_urls": [],
            "scopes": ["openid", "billing/read"],
            "grant_types": ["authorization_code", "refresh_token"],
            "flow_mapping": [
                _flow("code", "authorization_code"),
                _flow("ALLOW_USER_PASSWORD_AUTH", None, "password grant (deprecated): use authorization code + PKCE"),
                _flow("ALLOW_REFRESH_TOKEN_AUTH", "refresh_token"),
            ],
            "identity_providers": ["COGNITO"],
            "warnings": [DIRECT_SIGN_IN_WARNING.format(flow="ALLOW_USER_PASSWORD_AUTH")],
            "notes": [
                "Scope aws.cognito.signin.user.admin lets a token call Cognito's own user APIs; it has no Avnology "
                "equivalent and is left out.",
                "Custom scopes (billing/read) are not OIDC standard: define them in Avnology first.",
            ],
            "secret_rotation": ROTATION,
            "env": [
                _env("OAUTH_CLIENT_ID", "conf0002", NEW_ID),
                _env(
                    "OAUTH_CLIENT_SECRET",
                    "<the Cognito secret, in your secret manager>",
                    "<the new secret, read from your secret manager>",
                    "never in code",
                ),
            ],
        },
        {
            "name": "legacy-widget",
            "cognito_client_id": "impl0003",
            "client_type": "public",
            "pkce": "required",
            "redirect_uris": ["https://widget.acme.test/cb"],
            "logout_urls": [],
            "scopes": ["openid", "phone"],
            "grant_types": ["authorization_code"],
            "flow_mapping": [_flow("implicit", "authorization_code", "with PKCE: OAuth 2.1 removes implicit")],
            "identity_providers": ["COGNITO"],
            "warnings": [IMPLICIT_WARNING],
            "notes": [],
            "secret_rotation": [],
            "env": [_env("OAUTH_CLIENT_ID", "impl0003", NEW_ID)],
        },
        {
            "name": "web-spa",
            "cognito_client_id": "spa0001",
            "client_type": "public",
            "pkce": "required",
            "redirect_uris": ["https://app.acme.test/callback", "http://localhost:3000/callback"],
            "logout_urls": ["https://app.acme.test/signed-out"],
            "scopes": ["openid", "email", "profile"],
            "grant_types": ["authorization_code", "refresh_token"],
            "flow_mapping": [
                _flow("code", "authorization_code"),
                _flow(
                    "ALLOW_USER_SRP_AUTH",
                    None,
                    "SRP is Cognito's own protocol (Amplify's signIn): the app redirects to the hosted sign-in page "
                    "instead",
                ),
                _flow("ALLOW_REFRESH_TOKEN_AUTH", "refresh_token"),
            ],
            "identity_providers": ["COGNITO", "Google"],
            "warnings": [],
            "notes": ["Federated sign-in through Google: set up the same providers in Avnology."],
            "secret_rotation": [],
            "env": [_env("OAUTH_CLIENT_ID", "spa0001", NEW_ID)],
        },
    ],
    "url_mapping": [
        {
            "endpoint": "authorize",
            "cognito": HOSTED + "/oauth2/authorize",
            "avnology": AVN + "/oauth2/auth",
            "source": "seed",
        },
        {"endpoint": "token", "cognito": HOSTED + "/oauth2/token", "avnology": AVN + "/oauth2/token", "source": "seed"},
        {
            "endpoint": "jwks",
            "cognito": HOSTED + "/.well-known/jwks.json",
            "avnology": AVN + "/.well-known/jwks.json",
            "source": "seed",
        },
        {
            "endpoint": "userinfo",
            "cognito": HOSTED + "/oauth2/userInfo",
            "avnology": AVN + "/userinfo",
            "source": "seed",
        },
        {
            "endpoint": "logout",
            "cognito": HOSTED + "/logout",
            "avnology": AVN + "/oauth2/sessions/logout",
            "source": "seed",
        },
        {
            "endpoint": "jwks (issuer)",
            "cognito": ISSUER + "/.well-known/jwks.json",
            "avnology": AVN + "/.well-known/jwks.json",
            "source": "issuer",
        },
    ],
    "env_changes": [
        _env("OAUTH_AUTHORIZE_URL", HOSTED + "/oauth2/authorize", AVN + "/oauth2/auth"),
        _env("OAUTH_TOKEN_URL", HOSTED + "/oauth2/token", AVN + "/oauth2/token"),
        _env("OAUTH_JWKS_URL", HOSTED + "/.well-known/jwks.json", AVN + "/.well-known/jwks.json"),
        _env("OAUTH_USERINFO_URL", HOSTED + "/oauth2/userInfo", AVN + "/userinfo"),
        _env("OAUTH_LOGOUT_URL", HOSTED + "/logout", AVN + "/oauth2/sessions/logout"),
        _env("OAUTH_ISSUER", ISSUER, AVN, "assumed: confirm against the iss claim of a tenant token"),
        _env("COGNITO_USER_POOL_ID", "eu-west-1_Gold3n", None, KEEP_FOR_HOOK),
        _env("COGNITO_REGION", "eu-west-1", None, KEEP_FOR_HOOK),
        _env("COGNITO_DOMAIN", HOSTED, None, "remove at cutover"),
    ],
    "triggers": [
        _trigger(
            "PreSignUp",
            "pre-sign-up",
            None,
            "user.pre_create",
            "mapped",
            "Register a webhook hook for user.pre_create.",
        ),
        _trigger(
            "PostAuthentication",
            "post-auth",
            None,
            "session.created",
            "mapped",
            "Register a webhook hook for session.created.",
        ),
        _trigger("PreTokenGeneration", "claims", "V2_0", "token.pre_issue", "mapped_with_caveat", PRE_TOKEN_ACTION),
        _trigger(
            "UserMigration",
            "user-migration",
            None,
            "password migration hook",
            "superseded",
            TRIGGER_TABLE["UserMigration"][2],
        ),
        _trigger("CustomMessage", "custom-message", None, None, "no_equivalent", TRIGGER_TABLE["CustomMessage"][2]),
        _trigger("CreateAuthChallenge", "create-challenge", None, None, "no_equivalent", CUSTOM_AUTH_ACTION),
        _trigger(
            "CustomEmailSender",
            "email-sender",
            "V1_0",
            None,
            "no_equivalent",
            CUSTOM_SENDER_ACTION.format(what="emails"),
        ),
    ],
    "roles": [
        {
            "group": "admins",
            "description": "Administrators",
            "precedence": 0,
            "iam_role_arn": "arn:aws:iam::123456789012:role/acme-admins",
            "member_count": 2,
            "role_tuple": {
                "namespace": "roles",
                "object": "admins",
                "relation": "member",
                "subject": "identities:<usr_id>",
            },
            "notes": [
                "Its IAM role arn:aws:iam::123456789012:role/acme-admins (handed out through an Identity Pool) has "
                "no direct analog: use service accounts or external federation."
            ],
            "warnings": [],
        },
        {
            "group": "beta-testers",
            "description": "",
            "precedence": 10,
            "iam_role_arn": None,
            "member_count": 5,
            "role_tuple": {
                "namespace": "roles",
                "object": "beta-testers",
                "relation": "member",
                "subject": "identities:<usr_id>",
            },
            "notes": [],
            "warnings": [],
        },
    ],
    "warnings": [
        {
            "area": "client",
            "subject": "billing-backend",
            "message": DIRECT_SIGN_IN_WARNING.format(flow="ALLOW_USER_PASSWORD_AUTH"),
        },
        {"area": "client", "subject": "legacy-widget", "message": IMPLICIT_WARNING},
        {"area": "trigger", "subject": "PreTokenGeneration", "message": PRE_TOKEN_ACTION},
        {"area": "trigger", "subject": "UserMigration", "message": TRIGGER_TABLE["UserMigration"][2]},
        {"area": "trigger", "subject": "CustomMessage", "message": TRIGGER_TABLE["CustomMessage"][2]},
        {"area": "trigger", "subject": "CreateAuthChallenge", "message": CUSTOM_AUTH_ACTION},
        {"area": "trigger", "subject": "CustomEmailSender", "message": CUSTOM_SENDER_ACTION.format(what="emails")},
    ],
}


def golden_kit() -> Any:
    return build_kit(golden_snapshot(), {"admins": 2, "beta-testers": 5}, "api-id.avnology.net")


def test_three_clients_and_several_triggers_yield_exactly_the_expected_plan() -> None:
    assert golden_kit().to_dict() == EXPECTED_KIT


def test_kit_json_round_trips() -> None:
    data = golden_kit().to_dict()
    assert json.loads(json.dumps(data)) == data


def test_the_client_secret_reaches_neither_the_plan_nor_the_markdown() -> None:
    kit = golden_kit()
    assert GOLDEN_SECRET not in json.dumps(kit.to_dict())
    assert GOLDEN_SECRET not in render_markdown(kit)
    assert GOLDEN_SECRET not in repr(kit)


def test_preflight_key_userpool_is_read_like_user_pool() -> None:
    snapshot = golden_snapshot()
    snapshot["UserPool"] = snapshot.pop("user_pool")
    assert build_kit(snapshot, {"admins": 2, "beta-testers": 5}, "api-id.avnology.net").to_dict() == EXPECTED_KIT


def test_the_snapshot_passed_in_is_not_modified() -> None:
    snapshot = golden_snapshot()
    before = copy.deepcopy(snapshot)
    build_kit(snapshot, None, "api-id.avnology.net")
    assert snapshot == before


def test_strip_secrets_removes_client_secret_at_any_depth() -> None:
    raw = {
        "ClientSecret": "a",
        "client_secret": "b",
        "clients": [{"ClientId": "x", "ClientSecret": "c", "nested": {"clientSecret": "d", "keep": 1}}],
        "HasSecret": True,
    }
    assert strip_secrets(raw) == {"clients": [{"ClientId": "x", "nested": {"keep": 1}}], "HasSecret": True}


def test_a_raw_describe_dict_with_a_secret_is_confidential_even_without_has_secret() -> None:
    plan = plan_client({"ClientId": "c1", "ClientName": "raw", "ClientSecret": "zzz", "AllowedOAuthFlows": ["code"]})
    assert plan.client_type == "confidential"
    assert plan.secret_rotation
    assert "zzz" not in repr(plan)


def test_client_credentials_only_is_machine_to_machine() -> None:
    plan = plan_client(
        {
            "ClientId": "m2m1",
            "ClientName": "nightly-sync",
            "HasSecret": True,
            "AllowedOAuthFlows": ["client_credentials"],
            "AllowedOAuthScopes": ["sync/write"],
            "ExplicitAuthFlows": ["ALLOW_REFRESH_TOKEN_AUTH"],
        }
    )
    assert (plan.client_type, plan.pkce, plan.grant_types) == (
        "machine_to_machine",
        "not_applicable",
        ("client_credentials",),
    )
    assert plan.scopes == ("sync/write",)
    assert plan.warnings == ()
    assert [e.variable for e in plan.env] == ["OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"]
    assert len(plan.secret_rotation) == 4


def test_client_credentials_without_a_secret_is_flagged() -> None:
    plan = plan_client({"ClientId": "m2", "ClientName": "m2", "AllowedOAuthFlows": ["client_credentials"]})
    assert plan.client_type == "machine_to_machine"
    assert plan.warnings == (M2M_WITHOUT_KEY_WARNING,)


def test_code_plus_client_credentials_with_a_secret_is_one_confidential_client() -> None:
    plan = plan_client(
        {"ClientId": "c", "ClientName": "c", "HasSecret": True, "AllowedOAuthFlows": ["code", "client_credentials"]}
    )
    assert (plan.client_type, plan.grant_types) == ("confidential", ("authorization_code", "client_credentials"))


def test_sdk_only_client_moves_to_code_with_pkce() -> None:
    """Amplify-style apps sign in with SRP and have no hosted-UI flow; they must adopt the redirect flow."""
    plan = plan_client(
        {"ClientId": "amp", "ClientName": "mobile", "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_CUSTOM_AUTH"]}
    )
    assert (plan.client_type, plan.pkce, plan.grant_types) == ("public", "required", ("authorization_code",))
    assert "signs in through the Cognito SDK" in plan.notes[0]
    assert [f.avnology for f in plan.flow_mapping] == [None, None]


def test_legacy_user_password_auth_and_admin_flow() -> None:
    plan = plan_client(
        {"ClientId": "l", "ClientName": "old", "ExplicitAuthFlows": ["USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"]}
    )
    assert plan.warnings == (DIRECT_SIGN_IN_WARNING.format(flow="USER_PASSWORD_AUTH"),)
    assert plan.flow_mapping[1].avnology == "Admin POST /v1/sessions"


def test_malformed_client_fields_are_refused_with_the_field_named() -> None:
    with pytest.raises(CutoverError, match="CallbackURLs"):
        plan_client({"ClientId": "x", "ClientName": "x", "CallbackURLs": "https://one.example"})
    with pytest.raises(CutoverError, match="ClientId"):
        plan_client({"ClientName": "x"})


def test_custom_domain_is_the_cognito_base() -> None:
    pool = {"Id": "us-east-1_X", "Domain": "auth.acme.test", "CustomDomain": "auth.acme.test"}
    assert cognito_base_url(pool, "us-east-1") == "https://auth.acme.test"
    assert (
        cognito_base_url({"Id": "p"}, "us-east-1", {"Domain": "pfx"}) == "https://pfx.auth.us-east-1.amazoncognito.com"
    )
    assert cognito_base_url({"Id": "p"}, "us-east-1") is None
    with pytest.raises(CutoverError, match="domain"):
        cognito_base_url({"Domain": "bad domain/with path"}, "us-east-1")


def test_pool_without_a_hosted_domain_still_maps_to_avnology_and_keeps_the_issuer_jwks() -> None:
    snapshot = golden_snapshot()
    del snapshot["user_pool"]["Domain"]
    del snapshot["domain"]
    kit = build_kit(snapshot, {}, "https://id.acme.test/")
    assert kit.cognito_base_url is None
    assert [u.cognito for u in kit.url_mapping][:5] == [None] * 5
    assert kit.url_mapping[0].avnology == "https://id.acme.test/oauth2/auth"
    jwks = next(e for e in kit.env_changes if e.variable == "OAUTH_JWKS_URL")
    assert jwks.old == ISSUER + "/.well-known/jwks.json"
    assert "no hosted UI domain" in kit.notes[0]
    assert "COGNITO_DOMAIN" not in [e.variable for e in kit.env_changes]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("api-id.avnology.net", "https://api-id.avnology.net"),
        (" https://api.id.avnology.com/ ", "https://api.id.avnology.com"),
        ("http://127.0.0.1:8900", "http://127.0.0.1:8900"),
    ],
)
def test_avnology_domain_is_normalised(given: str, expected: str) -> None:
    assert avnology_base_url(given) == expected


@pytest.mark.parametrize("bad", ["", "https://api-id.avnology.net/v1", "ftp://x.test", "a b.test", "x.test?q=1"])
def test_bad_avnology_domain_is_refused(bad: str) -> None:
    with pytest.raises(CutoverError, match="avnology_api_domain"):
        avnology_base_url(bad)


def test_trigger_edge_cases() -> None:
    plans = plan_triggers(
        {
            "PreTokenGenerationConfig": {"LambdaVersion": "V1_0", "LambdaArn": LAMBDA + "v1"},
            "PostConfirmation": "",
            "KMSKeyID": "arn:aws:kms:eu-west-1:1:key/k",
            "SomethingNew": LAMBDA + "new",
            "InboundFederation": {"LambdaVersion": "V1_0", "LambdaArn": LAMBDA + "fed"},
        }
    )
    assert [(p.trigger, p.avnology_event, p.status) for p in plans] == [
        ("PreTokenGeneration", "token.pre_issue", "mapped"),
        ("InboundFederation", None, "no_equivalent"),
        ("SomethingNew", None, "no_equivalent"),
    ]
    assert plans[0].lambda_version == "V1_0" and not plans[0].flagged
    assert "unknown trigger" in plans[2].action


def test_v3_pre_token_generation_is_flagged_for_machine_tokens() -> None:
    (plan,) = plan_triggers({"PreTokenGenerationConfig": {"LambdaVersion": "V3_0", "LambdaArn": LAMBDA + "v3"}})
    assert plan.status == "mapped_with_caveat" and "machine-to-machine" in plan.action


def test_two_different_pre_token_lambdas_are_refused() -> None:
    with pytest.raises(CutoverError, match="two pre-token-generation Lambdas"):
        plan_triggers(
            {
                "PreTokenGeneration": LAMBDA + "a",
                "PreTokenGenerationConfig": {"LambdaVersion": "V2_0", "LambdaArn": LAMBDA + "b"},
            }
        )


def test_malformed_trigger_is_refused() -> None:
    with pytest.raises(CutoverError, match=r"LambdaConfig\.CustomSMSSender"):
        plan_triggers({"CustomSMSSender": {"LambdaVersion": "V1_0"}})


def test_member_counts_and_unknown_groups() -> None:
    counts = count_members(
        [{"group": "admins", "sub": "a"}, {"group": "admins", "sub": "b"}, {"group": "x", "sub": "c"}]
    )
    assert counts == {"admins": 2, "x": 1}
    kit = build_kit(golden_snapshot(), counts, "api-id.avnology.net")
    assert [(r.group, r.member_count) for r in kit.roles] == [("admins", 2), ("beta-testers", 0), ("x", 1)]
    assert kit.warnings[-1].area == "role" and kit.warnings[-1].subject == "x"
    with pytest.raises(CutoverError, match="group"):
        count_members([{"sub": "a"}])


def test_without_memberships_member_counts_are_unknown() -> None:
    kit = build_kit(golden_snapshot(), None, "api-id.avnology.net")
    assert [r.member_count for r in kit.roles] == [None, None]
    assert not kit.member_counts_known
    assert "Member counts are unknown" in kit.notes[-1]
    assert "| admins | unknown |" in render_markdown(kit)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("user_pool"), "UserPool"),
        (lambda s: s.update(clients={"a": 1}), "clients"),
        (lambda s: s["user_pool"].update(LambdaConfig=["x"]), "LambdaConfig"),
        (lambda s: s.update(region="Mars"), "region"),
    ],
)
def test_bad_snapshot_is_refused_with_the_field_named(mutate: Any, message: str) -> None:
    snapshot = golden_snapshot()
    mutate(snapshot)
    with pytest.raises(CutoverError, match=message):
        build_kit(snapshot, None, "api-id.avnology.net")


def test_markdown_lists_every_plan_item_and_escapes_table_cells() -> None:
    snapshot = golden_snapshot()
    snapshot["groups"].append({"GroupName": "ops|oncall", "Description": "line1\nline2"})
    kit = build_kit(snapshot, {"admins": 2}, "api-id.avnology.net")
    text = render_markdown(kit)
    assert text.startswith("# Cutover kit: Acme customers\n")
    assert f"## Warnings ({len(kit.warnings)})" in text
    for plan in kit.clients:
        assert f"### {plan.name} (Cognito client `{plan.cognito_client_id}`)" in text
        for uri in plan.redirect_uris + plan.logout_urls:
            assert f"- `{uri}`" in text
    for row in kit.url_mapping:
        assert f"`{row.avnology}`" in text
    for trig in kit.triggers:
        assert trig.lambda_arn in text
    assert "| ops\\|oncall | 0 |" in text
    assert "1. Register the client in the Avnology dashboard" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| ops")]
    assert len(table_rows) == 1 and table_rows[0].count(" | ") == 3
