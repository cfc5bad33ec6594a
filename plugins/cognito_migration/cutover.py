"""The cutover kit: everything beyond users, as a plan an operator applies by hand.

Avnology ID documents no API for OAuth clients, hooks or hosted-page settings, so the pipeline invents no
endpoints: it turns the preflight snapshot into an exact, reviewable plan (the seed guide's tables applied to
this pool) — app clients → OAuth 2.1 clients, Cognito URLs → Avnology URLs, Lambda triggers → hook events,
groups → roles. Pure: a snapshot dict in, plan objects out; :mod:`cognito_migration.cutover_kit` does the I/O.

Client secrets never enter a plan: plans are built field by field from named keys, and each app client dict is
passed through :func:`strip_secrets` first, so a snapshot that still holds a ``ClientSecret`` (preflight should
have removed it) only tells the plan that the client is confidential.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from cognito_migration.roles import ROLE_NAMESPACE, ROLE_RELATION, role_tuple

KIT_VERSION = 1
USR_ID_PLACEHOLDER = "<usr_id>"
NEW_CLIENT_ID = "<client id the Avnology dashboard assigns>"
NEW_CLIENT_SECRET = "<the new secret, read from your secret manager>"  # noqa: S105 (placeholder text)
OLD_CLIENT_SECRET = "<the Cognito secret, in your secret manager>"  # noqa: S105 (placeholder text)

ClientType = Literal["public", "confidential", "machine_to_machine"]
TriggerStatus = Literal["mapped", "mapped_with_caveat", "superseded", "no_equivalent"]


class CutoverError(ValueError):
    """The snapshot or a parameter cannot produce a kit; the message names the field."""


# --- secrets -------------------------------------------------------------------------------------------------

_SECRET_KEYS = frozenset({"clientsecret"})


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.replace("_", "").lower() in _SECRET_KEYS


def strip_secrets(value: Any) -> Any:
    """A copy of ``value`` without any ``ClientSecret`` (or ``client_secret``) key, at any depth."""
    if isinstance(value, Mapping):
        return {k: strip_secrets(v) for k, v in value.items() if not _is_secret_key(k)}
    if isinstance(value, list | tuple):
        return [strip_secrets(v) for v in value]
    return value


# --- plan objects --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowMapping:
    """One Cognito flow (OAuth flow or ExplicitAuthFlows entry) and what it becomes."""

    cognito: str
    avnology: str | None
    note: str = ""


@dataclass(frozen=True)
class EnvChange:
    variable: str
    old: str | None
    new: str | None
    note: str = ""


@dataclass(frozen=True)
class ClientPlan:
    name: str
    cognito_client_id: str
    client_type: ClientType
    pkce: Literal["required", "recommended", "not_applicable"]
    redirect_uris: tuple[str, ...]
    logout_urls: tuple[str, ...]
    scopes: tuple[str, ...]
    grant_types: tuple[str, ...]
    flow_mapping: tuple[FlowMapping, ...]
    identity_providers: tuple[str, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    secret_rotation: tuple[str, ...]
    env: tuple[EnvChange, ...]


@dataclass(frozen=True)
class UrlMapping:
    endpoint: str
    cognito: str | None
    avnology: str
    source: Literal["seed", "issuer"]


@dataclass(frozen=True)
class TriggerPlan:
    trigger: str
    lambda_arn: str
    lambda_version: str | None
    avnology_event: str | None
    status: TriggerStatus
    action: str

    @property
    def flagged(self) -> bool:
        return self.status != "mapped"


@dataclass(frozen=True)
class RolePlan:
    group: str
    description: str
    precedence: int | None
    iam_role_arn: str | None
    member_count: int | None
    role_tuple: dict[str, str]
    notes: tuple[str, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class KitWarning:
    area: Literal["client", "trigger", "role"]
    subject: str
    message: str


@dataclass(frozen=True)
class CutoverKit:
    user_pool_id: str
    pool_name: str
    region: str
    avnology_base_url: str
    cognito_base_url: str | None
    clients: tuple[ClientPlan, ...]
    url_mapping: tuple[UrlMapping, ...]
    env_changes: tuple[EnvChange, ...]
    triggers: tuple[TriggerPlan, ...]
    roles: tuple[RolePlan, ...]
    member_counts_known: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def warnings(self) -> tuple[KitWarning, ...]:
        """Everything that needs a person's decision: deprecated client flows, triggers without a plain match."""
        found = [KitWarning("client", c.name, w) for c in self.clients for w in c.warnings]
        found += [KitWarning("trigger", t.trigger, t.action) for t in self.triggers if t.flagged]
        found += [KitWarning("role", r.group, w) for r in self.roles for w in r.warnings]
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples as lists), the form ``kit.json`` holds."""
        data = _plain(asdict(self))
        data["kit_version"] = KIT_VERSION
        data["warnings"] = [_plain(asdict(w)) for w in self.warnings]
        for plan, out in zip(self.triggers, data["triggers"], strict=True):
            out["flagged"] = plan.flagged
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- app clients ---------------------------------------------------------------------------------------------

IMPLICIT_WARNING = (
    "Uses the implicit flow, which OAuth 2.1 removes and the seed deprecates. The plan registers authorization "
    "code + PKCE instead: change the app to exchange the code at the token endpoint rather than read tokens "
    "from the URL fragment."
)
DIRECT_SIGN_IN_WARNING = (
    "Allows {flow}: the app sends the user's password to the API. Its Avnology equivalent, the password grant, "
    "is deprecated (seed): move the app to authorization code + PKCE on the hosted sign-in page. Keep the flow "
    "on this Cognito client only if the password migration hook's Lambda signs users in through it during the "
    "migration window."
)
M2M_WITHOUT_KEY_WARNING = (
    "Allows client_credentials but has no secret; a machine-to-machine client needs one: register it as "
    "confidential and give the service the new secret."
)

_EXPLICIT_FLOWS: dict[str, tuple[str | None, str]] = {
    "ALLOW_REFRESH_TOKEN_AUTH": ("refresh_token", ""),
    "ALLOW_USER_PASSWORD_AUTH": (None, "password grant (deprecated): use authorization code + PKCE"),
    "USER_PASSWORD_AUTH": (None, "password grant (deprecated): use authorization code + PKCE"),
    "ALLOW_ADMIN_USER_PASSWORD_AUTH": (
        "Admin POST /v1/sessions",
        "server-side sign-in with the admin API key (seed: ADMIN_NO_SRP_AUTH)",
    ),
    "ADMIN_NO_SRP_AUTH": ("Admin POST /v1/sessions", "server-side sign-in with the admin API key (seed)"),
    "ALLOW_USER_SRP_AUTH": (
        None,
        "SRP is Cognito's own protocol (Amplify's signIn): the app redirects to the hosted sign-in page instead",
    ),
    "ALLOW_CUSTOM_AUTH": (None, "custom auth challenges have no equivalent: see the Lambda triggers section"),
    "CUSTOM_AUTH_FLOW_ONLY": (None, "custom auth challenges have no equivalent: see the Lambda triggers section"),
    "ALLOW_USER_AUTH": (
        None,
        "choice-based sign-in (passwordless, passkeys) happens on the hosted sign-in page instead",
    ),
    "ALLOW_TOKEN_EXCHANGE_DELEGATION": (None, "token exchange is not documented for Avnology ID: review by hand"),
    "ALLOW_TOKEN_EXCHANGE_IMPERSONATION": (None, "token exchange is not documented for Avnology ID: review by hand"),
}
_PASSWORD_FLOWS = ("ALLOW_USER_PASSWORD_AUTH", "USER_PASSWORD_AUTH")
# Flows by which an app signs users in through the Cognito SDK rather than the hosted UI.
_SDK_SIGN_IN_FLOWS = frozenset(
    {*_PASSWORD_FLOWS, "ALLOW_USER_SRP_AUTH", "ALLOW_CUSTOM_AUTH", "CUSTOM_AUTH_FLOW_ONLY", "ALLOW_USER_AUTH"}
)
COGNITO_ADMIN_SCOPE = "aws.cognito.signin.user.admin"
_OIDC_SCOPES = frozenset({"openid", "profile", "email", "phone", "offline_access"})


def _strings(client: Mapping[str, Any], key: str) -> list[str]:
    value = client.get(key) or []
    if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CutoverError(f"app client {client.get('ClientName')!r}: {key} must be a list of strings")
    return list(dict.fromkeys(value))


def _client_has_secret(client: Mapping[str, Any]) -> bool:
    # Preflight replaces ClientSecret with HasSecret; a raw DescribeUserPoolClient dict still says it by presence.
    return bool(client.get("HasSecret")) or any(_is_secret_key(k) and client[k] for k in client)


def plan_client(raw_client: Mapping[str, Any]) -> ClientPlan:
    """One Cognito app client (a DescribeUserPoolClient dict) → its OAuth 2.1 client plan."""
    has_secret = _client_has_secret(raw_client)
    client = strip_secrets(raw_client)
    name = client.get("ClientName") or client.get("ClientId")
    client_id = client.get("ClientId")
    if not isinstance(name, str) or not isinstance(client_id, str) or not client_id:
        raise CutoverError(f"app client without ClientId/ClientName in the snapshot: keys {sorted(client)}")

    oauth_flows = _strings(client, "AllowedOAuthFlows")
    explicit = _strings(client, "ExplicitAuthFlows")
    warnings: list[str] = []
    notes: list[str] = []
    flows: list[FlowMapping] = []

    interactive = "code" in oauth_flows or "implicit" in oauth_flows
    sdk_sign_in = bool(_SDK_SIGN_IN_FLOWS.intersection(explicit))
    machine = "client_credentials" in oauth_flows and not interactive

    grants: list[str] = []
    for flow in oauth_flows:
        if flow == "code":
            flows.append(FlowMapping("code", "authorization_code"))
            grants.append("authorization_code")
        elif flow == "implicit":
            flows.append(FlowMapping("implicit", "authorization_code", "with PKCE: OAuth 2.1 removes implicit"))
            grants.append("authorization_code")
            warnings.append(IMPLICIT_WARNING)
        elif flow == "client_credentials":
            flows.append(FlowMapping("client_credentials", "client_credentials"))
            grants.append("client_credentials")
        else:
            flows.append(FlowMapping(flow, None, "unknown OAuth flow: review by hand"))
    if not interactive and not machine:
        # An app that signed in through the Cognito SDK (or has no flow at all) moves to the redirect flow.
        grants.append("authorization_code")
        notes.append(
            "No hosted-UI OAuth flow on this client: the app signs in through the Cognito SDK. It must move to "
            "the redirect-based authorization code + PKCE flow on Avnology's hosted sign-in page."
            if sdk_sign_in
            else "No OAuth flow on this client: planned as authorization code + PKCE; drop it if nothing uses it."
        )
    for flow in explicit:
        target, note = _EXPLICIT_FLOWS.get(flow, (None, "unknown auth flow: review by hand"))
        flows.append(FlowMapping(flow, target, note))
        if flow in _PASSWORD_FLOWS:
            warnings.append(DIRECT_SIGN_IN_WARNING.format(flow=flow))
        if flow == "ALLOW_REFRESH_TOKEN_AUTH" and not machine:
            grants.append("refresh_token")
        if flow in ("ALLOW_ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"):
            notes.append("Server-side sign-in (admin flow) becomes the admin sessions API: POST /v1/sessions.")

    if machine:
        client_type: ClientType = "machine_to_machine"
        pkce: Literal["required", "recommended", "not_applicable"] = "not_applicable"
        if not has_secret:
            warnings.append(M2M_WITHOUT_KEY_WARNING)
    elif has_secret:
        client_type, pkce = "confidential", "recommended"
    else:
        client_type, pkce = "public", "required"
        if "client_credentials" in oauth_flows:
            warnings.append(M2M_WITHOUT_KEY_WARNING)

    scopes = _strings(client, "AllowedOAuthScopes")
    kept = [s for s in scopes if s != COGNITO_ADMIN_SCOPE]
    if len(kept) != len(scopes):
        notes.append(
            f"Scope {COGNITO_ADMIN_SCOPE} lets a token call Cognito's own user APIs; it has no Avnology "
            "equivalent and is left out."
        )
    custom = [s for s in kept if s not in _OIDC_SCOPES]
    if custom:
        notes.append(f"Custom scopes ({', '.join(custom)}) are not OIDC standard: define them in Avnology first.")

    providers = _strings(client, "SupportedIdentityProviders")
    external = [p for p in providers if p != "COGNITO"]
    if external:
        notes.append(f"Federated sign-in through {', '.join(external)}: set up the same providers in Avnology.")

    rotation: tuple[str, ...] = ()
    env = [EnvChange("OAUTH_CLIENT_ID", client_id, NEW_CLIENT_ID)]
    if client_type != "public":
        rotation = (
            "Register the client in the Avnology dashboard; it shows the new client secret once.",
            "Store the new secret in your secret manager as a new entry; never in code, tickets, chat or this kit.",
            "Deploy the app reading OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET from the secret manager.",
            f"The Cognito secret is not migrated. Delete Cognito app client {client_id} when the migration "
            "window closes: that revokes it.",
        )
        env.append(EnvChange("OAUTH_CLIENT_SECRET", OLD_CLIENT_SECRET, NEW_CLIENT_SECRET, "never in code"))

    return ClientPlan(
        name=name,
        cognito_client_id=client_id,
        client_type=client_type,
        pkce=pkce,
        redirect_uris=tuple(_strings(client, "CallbackURLs")),
        logout_urls=tuple(_strings(client, "LogoutURLs")),
        scopes=tuple(kept),
        grant_types=tuple(dict.fromkeys(grants)),
        flow_mapping=tuple(flows),
        identity_providers=tuple(providers),
        warnings=tuple(warnings),
        notes=tuple(notes),
        secret_rotation=rotation,
        env=tuple(env),
    )


# --- URLs ----------------------------------------------------------------------------------------------------

# (endpoint, Cognito hosted-domain path, Avnology path): the seed's "Redirect URL mapping" table.
SEED_URL_TABLE = (
    ("authorize", "/oauth2/authorize", "/oauth2/auth"),
    ("token", "/oauth2/token", "/oauth2/token"),
    ("jwks", "/.well-known/jwks.json", "/.well-known/jwks.json"),
    ("userinfo", "/oauth2/userInfo", "/userinfo"),
    ("logout", "/logout", "/oauth2/sessions/logout"),
)
_ENDPOINT_ENV = {
    "authorize": "OAUTH_AUTHORIZE_URL",
    "token": "OAUTH_TOKEN_URL",
    "jwks": "OAUTH_JWKS_URL",
    "userinfo": "OAUTH_USERINFO_URL",
    "logout": "OAUTH_LOGOUT_URL",
}
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")


def avnology_base_url(api_domain: str) -> str:
    """``api-id.avnology.net`` (or a full ``https://`` URL) → ``https://api-id.avnology.net``; refuse anything else."""
    text = (api_domain or "").strip()
    parts = urlsplit(text if "://" in text else "https://" + text)
    if (
        parts.scheme not in ("https", "http")
        or not parts.netloc
        or not _HOST.match(parts.netloc)
        or parts.path.strip("/")
        or parts.query
        or parts.fragment
    ):
        raise CutoverError(
            f"avnology_api_domain {api_domain!r} is not a host name such as api-id.avnology.net (no path or query)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def cognito_base_url(user_pool: Mapping[str, Any], region: str, snapshot_domain: Any = None) -> str | None:
    """The hosted UI base URL: the custom domain if set, else ``https://<prefix>.auth.<region>.amazoncognito.com``.

    ``snapshot_domain`` is the snapshot's own ``domain`` entry (a prefix, a host, or a DescribeUserPoolDomain
    ``DomainDescription``), used when the UserPool dict names no domain.
    """
    domain = user_pool.get("CustomDomain") or user_pool.get("Domain")
    if not domain:
        domain = snapshot_domain.get("Domain") if isinstance(snapshot_domain, Mapping) else snapshot_domain
    if not domain:
        return None
    host = domain.removeprefix("https://").rstrip("/") if isinstance(domain, str) else ""
    if not _HOST.match(host):
        raise CutoverError(f"user pool domain {domain!r} is not a domain prefix or a host name")
    return f"https://{host}" if "." in host else f"https://{host}.auth.{region}.amazoncognito.com"


def cognito_issuer(region: str, user_pool_id: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def plan_urls(cognito_base: str | None, avnology_base: str, issuer: str) -> tuple[UrlMapping, ...]:
    rows = [
        UrlMapping(endpoint, cognito_base + old if cognito_base else None, avnology_base + new, "seed")
        for endpoint, old, new in SEED_URL_TABLE
    ]
    # Token verifiers (aws-jwt-verify, API Gateway authorizers) fetch keys from the issuer, not the hosted domain.
    rows.append(
        UrlMapping(
            "jwks (issuer)", issuer + "/.well-known/jwks.json", avnology_base + "/.well-known/jwks.json", "issuer"
        )
    )
    return tuple(rows)


def plan_env(
    urls: Iterable[UrlMapping], issuer: str, user_pool_id: str, region: str, cognito_base: str | None
) -> tuple[EnvChange, ...]:
    """The variables an app typically holds; names differ per app, the old → new values are what matter."""
    by_endpoint = {u.endpoint: u for u in urls}
    changes = []
    for endpoint, variable in _ENDPOINT_ENV.items():
        row = by_endpoint[endpoint]
        old = row.cognito
        if old is None and endpoint == "jwks":
            old = by_endpoint["jwks (issuer)"].cognito
        changes.append(EnvChange(variable, old, row.avnology))
    avnology_base = by_endpoint["token"].avnology.removesuffix("/oauth2/token")
    changes.append(
        EnvChange("OAUTH_ISSUER", issuer, avnology_base, "assumed: confirm against the iss claim of a tenant token")
    )
    keep_for_hook = "remove after the migration window (the password migration hook's Lambda still needs it)"
    changes.append(EnvChange("COGNITO_USER_POOL_ID", user_pool_id, None, keep_for_hook))
    changes.append(EnvChange("COGNITO_REGION", region, None, keep_for_hook))
    if cognito_base:
        changes.append(EnvChange("COGNITO_DOMAIN", cognito_base, None, "remove at cutover"))
    return tuple(changes)


# --- Lambda triggers -----------------------------------------------------------------------------------------

CUSTOM_AUTH_ACTION = (
    "No equivalent: Cognito's custom authentication challenges (passwordless codes, CAPTCHA, magic links) have "
    "no Avnology hook. Use the hosted sign-in page's own methods, or run the extra check in your app before it "
    "redirects to the authorize URL; remove ALLOW_CUSTOM_AUTH from the app clients."
)
CUSTOM_SENDER_ACTION = (
    "No equivalent: Avnology sends its own {what} from its hosted flows, so the code hand-off to your sender "
    "(encrypted with the pool's KMSKeyID) does not carry over. Configure the tenant's sender in the dashboard, "
    "or send your own messages from webhook events (user.created, user.password_changed); retire the KMS key "
    "with the pool."
)

# LambdaConfig key → (Avnology event, status, what to do); the first six rows are the seed's table.
TRIGGER_TABLE: dict[str, tuple[str | None, TriggerStatus, str]] = {
    "PreSignUp": ("user.pre_create", "mapped", "Register a webhook hook for user.pre_create."),
    "PostConfirmation": (
        "user.created",
        "mapped",
        "Register a webhook hook for user.created. Cognito also fires this trigger after a forgotten-password "
        "reset (PostConfirmation_ConfirmForgotPassword): that case is the user.password_changed event.",
    ),
    "PreAuthentication": ("session.pre_create", "mapped", "Register a webhook hook for session.pre_create."),
    "PostAuthentication": ("session.created", "mapped", "Register a webhook hook for session.created."),
    "PreTokenGeneration": (
        "token.pre_issue",
        "mapped",
        "Register a webhook hook for token.pre_issue and configure a token claim resolver.",
    ),
    "UserMigration": (
        "password migration hook",
        "superseded",
        "Superseded by the password migration hook: stand the hook up before the import (seed cutover plan), "
        "pointed at a small Lambda that verifies the password against this pool, kept read-only for the window. "
        "Retire this trigger with the pool.",
    ),
    "CustomMessage": (
        None,
        "no_equivalent",
        "No equivalent: Avnology writes the messages of its hosted flows itself. Move your wording to the tenant's "
        "message templates in the dashboard, or send your own messages from webhook events (user.created); this "
        "pipeline's reset email has its own template.",
    ),
    "DefineAuthChallenge": (None, "no_equivalent", CUSTOM_AUTH_ACTION),
    "CreateAuthChallenge": (None, "no_equivalent", CUSTOM_AUTH_ACTION),
    "VerifyAuthChallengeResponse": (None, "no_equivalent", CUSTOM_AUTH_ACTION),
    "CustomSMSSender": (None, "no_equivalent", CUSTOM_SENDER_ACTION.format(what="SMS")),
    "CustomEmailSender": (None, "no_equivalent", CUSTOM_SENDER_ACTION.format(what="emails")),
    "InboundFederation": (
        None,
        "no_equivalent",
        "No equivalent: it rewrites federated users' attributes at sign-in. Map the provider's claims in the "
        "Avnology identity provider settings, or fix the profile up from a user.created webhook.",
    ),
}
PRE_TOKEN_VERSION_CAVEAT = {
    "V2_0": "Version V2_0 also customises access tokens and their scopes",
    "V3_0": "Version V3_0 also customises access tokens, including machine-to-machine (client_credentials) ones",
}
# Not triggers: the KMS key only serves the custom senders, whose rows already say to retire it.
_NOT_TRIGGERS = frozenset({"KMSKeyID"})


def _arn_and_version(value: Any, trigger: str) -> tuple[str, str | None]:
    if isinstance(value, str):
        return value, None
    if isinstance(value, Mapping) and isinstance(value.get("LambdaArn"), str):
        return value["LambdaArn"], value.get("LambdaVersion")
    raise CutoverError(f"LambdaConfig.{trigger} is neither an ARN nor a {{LambdaArn, LambdaVersion}} object")


def plan_triggers(lambda_config: Mapping[str, Any]) -> tuple[TriggerPlan, ...]:
    """LambdaConfig → one plan per configured trigger, in the order of :data:`TRIGGER_TABLE`, unknown keys last.

    Cognito writes a pre-token-generation Lambda twice (``PreTokenGeneration`` and ``PreTokenGenerationConfig``
    with its event version); they become one row, and a version above V1_0 is flagged because the seed only
    promises a claim resolver.
    """
    configured = {
        key: _arn_and_version(value, key) for key, value in lambda_config.items() if value and key not in _NOT_TRIGGERS
    }
    token_config = configured.pop("PreTokenGenerationConfig", None)
    if token_config:
        legacy = configured.get("PreTokenGeneration")
        if legacy and legacy[0] != token_config[0]:
            raise CutoverError(
                f"LambdaConfig names two pre-token-generation Lambdas ({legacy[0]} and {token_config[0]}); "
                "Cognito keeps one"
            )
        configured["PreTokenGeneration"] = token_config
    order = list(TRIGGER_TABLE)
    plans = []
    for trigger in sorted(configured, key=lambda k: (order.index(k) if k in order else len(order), k)):
        arn, version = configured[trigger]
        event, status, action = TRIGGER_TABLE.get(
            trigger, (None, "no_equivalent", "No equivalent in the seed's table: an unknown trigger, review by hand.")
        )
        if trigger == "PreTokenGeneration" and version in PRE_TOKEN_VERSION_CAVEAT:
            status = "mapped_with_caveat"
            action = (
                f"{action} {PRE_TOKEN_VERSION_CAVEAT[version]}: the seed documents only a claim resolver, so "
                "check that token.pre_issue can set access-token claims before cutover."
            )
        plans.append(TriggerPlan(trigger, arn, version, event, status, action))
    return tuple(plans)


# --- groups → roles ------------------------------------------------------------------------------------------


def count_members(memberships: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """memberships.jsonl rows (``{"group", "sub"}``) → members per group."""
    counts: Counter[str] = Counter()
    for row in memberships:
        group = row.get("group")
        if not isinstance(group, str) or not group:
            raise CutoverError(f"membership row without a group name: keys {sorted(row)}")
        counts[group] += 1
    return dict(counts)


def plan_roles(
    groups: Iterable[Mapping[str, Any]],
    member_counts: Mapping[str, int] | None,
    namespace: str = ROLE_NAMESPACE,
    relation: str = ROLE_RELATION,
) -> tuple[RolePlan, ...]:
    """Each Cognito group → the role tuple its members get (via :func:`role_tuple`, as the import grants it)."""
    plans = []
    seen = set()
    for group in groups:
        name = group.get("GroupName")
        if not isinstance(name, str) or not name:
            raise CutoverError(f"group without a GroupName in the snapshot: keys {sorted(group)}")
        seen.add(name)
        notes = []
        if group.get("RoleArn"):
            notes.append(
                f"Its IAM role {group['RoleArn']} (handed out through an Identity Pool) has no direct analog: use "
                "service accounts or external federation."
            )
        plans.append(
            RolePlan(
                group=name,
                description=group.get("Description") or "",
                precedence=group.get("Precedence"),
                iam_role_arn=group.get("RoleArn") or None,
                member_count=None if member_counts is None else member_counts.get(name, 0),
                role_tuple=role_tuple(name, USR_ID_PLACEHOLDER, namespace, relation),
                notes=tuple(notes),
            )
        )
    for name in sorted(set(member_counts or {}) - seen):
        plans.append(
            RolePlan(
                group=name,
                description="",
                precedence=None,
                iam_role_arn=None,
                member_count=(member_counts or {})[name],
                role_tuple=role_tuple(name, USR_ID_PLACEHOLDER, namespace, relation),
                notes=(),
                warnings=("Has members in memberships.jsonl but is not in the preflight snapshot: check the pool.",),
            )
        )
    return tuple(plans)


# --- the kit -------------------------------------------------------------------------------------------------


def _pool_region(snapshot: Mapping[str, Any], pool_id: str) -> str:
    region = snapshot.get("region") or pool_id.partition("_")[0]
    if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise CutoverError(f"snapshot region {region!r} is not an AWS Region (and the pool id names none)")
    return region


def build_kit(
    snapshot: Mapping[str, Any],
    member_counts: Mapping[str, int] | None,
    api_domain: str,
    namespace: str = ROLE_NAMESPACE,
    relation: str = ROLE_RELATION,
) -> CutoverKit:
    """The preflight snapshot (+ member counts when the memberships were read) → the whole cutover plan."""
    # preflight writes DescribeUserPool's answer under its own key, UserPool; the wiring notes call it user_pool.
    pool = snapshot.get("UserPool", snapshot.get("user_pool"))
    if not isinstance(pool, Mapping) or not isinstance(pool.get("Id"), str):
        raise CutoverError("snapshot has no UserPool with an Id: was it written by preflight?")
    clients = snapshot.get("clients", [])
    groups = snapshot.get("groups", [])
    lambda_config = pool.get("LambdaConfig") or {}
    for key, value, kind in (
        ("clients", clients, list),
        ("groups", groups, list),
        ("LambdaConfig", lambda_config, Mapping),
    ):
        if not isinstance(value, kind):
            raise CutoverError(f"snapshot {key} must be a {kind.__name__}, got {type(value).__name__}")

    pool_id = pool["Id"]
    region = _pool_region(snapshot, pool_id)
    avnology_base = avnology_base_url(api_domain)
    cognito_base = cognito_base_url(pool, region, snapshot.get("domain"))
    issuer = cognito_issuer(region, pool_id)
    urls = plan_urls(cognito_base, avnology_base, issuer)

    notes = []
    if cognito_base is None:
        notes.append(
            "The pool has no hosted UI domain: its apps sign in through the Cognito SDK and must move to the "
            "redirect-based flow on Avnology's hosted sign-in page."
        )
    if member_counts is None:
        notes.append("Member counts are unknown: the run has not read the group memberships (memberships.jsonl).")

    return CutoverKit(
        user_pool_id=pool_id,
        pool_name=pool.get("Name") or "",
        region=region,
        avnology_base_url=avnology_base,
        cognito_base_url=cognito_base,
        clients=tuple(sorted((plan_client(c) for c in clients), key=lambda p: (p.name, p.cognito_client_id))),
        url_mapping=urls,
        env_changes=plan_env(urls, issuer, pool_id, region, cognito_base),
        triggers=plan_triggers(lambda_config),
        roles=plan_roles(groups, member_counts, namespace, relation),
        member_counts_known=member_counts is not None,
        notes=tuple(notes),
    )
