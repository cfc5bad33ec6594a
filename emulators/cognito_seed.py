"""A realistic Cognito user pool in moto: the data every stage of the migration is tested and demonstrated on.

The pool carries the records that break naive exports and imports (see cognito-and-auth0-facts.md): every
UserStatus, disabled users, federated ``Google_…`` users, phone-only users, emails that differ only in case, an
invalid email, non-E.164 phones, unicode and over-long names, ``custom:`` attributes, users in several groups,
three kinds of app client, Lambda triggers and a hosted-UI domain. :class:`SeededPool` records what was created so
tests assert against the plan rather than against whatever the code under test read back.

Two ways to fill it:

- :func:`seed_pool` goes through the real boto3 API (2–3 calls a user; 2,000 users took 17 s on two busy
  cores), for the demo and tests. Federated users need one step the API cannot do: moto never creates
  ``EXTERNAL_PROVIDER`` users, so when the moto backend lives in this process (``MotoServer``/``mock_aws``) their
  status is set on its in-process backend; against a remote moto they stay ``CONFIRMED`` and
  :attr:`SeededPool.federated_status` says so.
- :func:`seed_pool_fast` writes users straight into moto's in-process backend (30,000 users in a few seconds),
  for benchmarks (with :mod:`emulators.moto_fastpath`, so that moto's CPU does not limit a benchmark).

CLI::

    python -m emulators.cognito_seed --endpoint-url http://127.0.0.1:5055 --users 2000
    python -m emulators.cognito_seed --serve --fast --fastpath --users 30000   # own moto; prints one JSON line
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import secrets
import string
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

ACCOUNT_REGION_DEFAULT = "us-east-1"
LAMBDA_TRIGGERS = ("PreSignUp", "PostConfirmation", "PreTokenGeneration", "UserMigration", "CustomMessage")
GROUPS: dict[str, tuple[str, int, float]] = {
    # name: (description, precedence, share of users)
    "admins": ("Full administrative access", 1, 0.01),
    "support": ("Customer support staff", 5, 0.02),
    "editors": ("Can publish content", 10, 0.06),
    "beta-testers": ("Early access to new features", 20, 0.08),
    "viewers": ("Read-only access", 50, 0.30),
}
CUSTOM_ATTRIBUTES = (
    {"Name": "tier", "AttributeDataType": "String", "Mutable": True, "StringAttributeConstraints": {"MaxLength": "20"}},
    {"Name": "legacy_id", "AttributeDataType": "Number", "Mutable": False},
    {"Name": "signup.source", "AttributeDataType": "String", "Mutable": True},
)
FIRST = (
    "Ana",
    "Ben",
    "Chloé",
    "Dmitri",
    "Emeka",
    "Fatima",
    "Giulia",
    "Hiro",
    "Ingrid",
    "José",
    "Kwame",
    "Léa",
    "Mateo",
    "Noor",
    "Olga",
    "Priya",
    "Quentin",
    "Rosa",
    "Søren",
    "Tariq",
    "Uma",
    "Văn",
    "Wei",
    "Yusuf",
    "Zoë",
)
LAST = (
    "Silva",
    "Smith",
    "Müller",
    "Ivanov",
    "Okafor",
    "Haddad",
    "Rossi",
    "Tanaka",
    "Berg",
    "García",
    "Mensah",
    "Dubois",
    "López",
    "Khan",
    "Petrova",
    "Sharma",
    "Martin",
    "Díaz",
    "Ørsted",
    "Aziz",
    "Nair",
    "Nguyễn",
    "Zhang",
)
UNICODE_NAMES = (
    ("李", "小龍"),
    ("Ахмед", "Соколов"),
    ("محمد", "الحسن"),
    ("Zoë", "Ørsted-Ñúñez"),
    ("光", "山田"),
    ("Αλέξανδρος", "Παπαδόπουλος"),
    ("Łukasz", "Żółkiewski"),
    ("अनन्या", "शर्मा"),
)
BAD_PHONES = ("555-0134", "(020) 7946 0958", "0049 30 1234567", "+1 (415) 555-0100", "07700 900123")
INVALID_EMAIL = "jane.doe@@example..com"
EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net")
NAME_MAX_COGNITO = 2048


@dataclass(frozen=True)
class UserSpec:
    """One user to create: everything about it is decided up front from the seed, before any API call."""

    username: str
    status: str  # CONFIRMED, FORCE_CHANGE_PASSWORD, UNCONFIRMED, RESET_REQUIRED or EXTERNAL_PROVIDER
    attributes: tuple[tuple[str, str], ...]
    enabled: bool = True
    groups: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()

    def attribute_list(self) -> list[dict[str, str]]:
        return [{"Name": n, "Value": v} for n, v in self.attributes]


@dataclass
class SeededPool:
    """What was created, with the expected count of every category (tests assert against these)."""

    user_pool_id: str
    pool_name: str
    region: str
    domain: str
    clients: dict[str, str]  # client name -> client id
    groups: list[str]
    users: dict[str, str] = field(default_factory=dict)  # username -> sub
    by_status: dict[str, int] = field(default_factory=dict)
    disabled: int = 0
    federated: int = 0
    federated_status: str = "EXTERNAL_PROVIDER"
    phone_only: int = 0
    case_duplicate_emails: int = 0  # users whose email equals another user's up to case
    invalid_emails: int = 0
    unverified_emails: int = 0  # users with an email but email_verified absent or "false"
    non_e164_phones: int = 0
    unicode_names: int = 0
    long_names: int = 0
    custom_attributes: int = 0  # users with at least one custom: attribute
    memberships: int = 0  # (group, user) pairs
    multi_group_users: int = 0
    group_members: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.users)

    @property
    def subs(self) -> set[str]:
        return set(self.users.values())

    def summary(self) -> dict[str, Any]:
        """Counts only (no usernames, no subs): safe to print."""
        out = asdict(self)
        del out["users"]
        out["total"] = self.total
        return out


# --- Planning (pure) -------------------------------------------------------------------------------------------


def _share(n: int, fraction: float) -> int:
    return max(1, round(n * fraction))


def plan_users(users: int, *, seed: int = 42) -> list[UserSpec]:
    """Decide every user of the pool from ``seed``: the same seed gives the same mix, names and groups."""
    if users < 20:
        raise ValueError(f"a realistic pool needs at least 20 users to hold every category, got {users}")
    rng = random.Random(seed)
    n = users
    slots = list(range(n))
    rng.shuffle(slots)
    take = iter(slots)

    def pick(count: int) -> set[int]:
        return {next(take) for _ in range(count)}

    federated = pick(_share(n, 0.04))
    phone_only = pick(_share(n, 0.03))
    unconfirmed = pick(_share(n, 0.05))
    force_change = pick(_share(n, 0.08))
    reset_required = pick(_share(n, 0.02))
    special = federated | phone_only | unconfirmed | force_change | reset_required
    confirmed = [i for i in range(n) if i not in special]
    rng.shuffle(confirmed)
    cut = iter(confirmed)
    disabled = {next(cut) for _ in range(_share(n, 0.03))}
    dup_pairs = [(next(cut), next(cut)) for _ in range(_share(n, 0.005))]
    invalid_email = {next(cut)}
    unverified = {next(cut) for _ in range(_share(n, 0.02))}
    bad_phone = {next(cut) for _ in range(_share(n, 0.02))}
    long_name = {next(cut) for _ in range(_share(n, 0.005))}
    # A few duplicate partners are not CONFIRMED, so the keeper policy (CONFIRMED first) has a real choice.
    dup_second = {b for _, b in dup_pairs}
    for b in list(dup_second)[: max(1, len(dup_second) // 2)]:
        unconfirmed.add(b)
    unicode_name = set(rng.sample(range(n), _share(n, 0.10))) - long_name

    emails: dict[int, str] = {}
    specs: list[UserSpec] = []
    multi = set(rng.sample(sorted(confirmed), _share(n, 0.06)))
    for i in range(n):
        tags: set[str] = set()
        if i in long_name:
            given, family = "Bartholomew", "Featherstonehaugh-" + "Montmorency-" * 16
            tags.add("long_name")
        elif i in unicode_name:
            given, family = rng.choice(UNICODE_NAMES)
            tags.add("unicode_name")
        else:
            given, family = rng.choice(FIRST), rng.choice(LAST)
            if any(ord(ch) > 127 for ch in given + family):
                tags.add("unicode_name")
        ascii_handle = re.sub(r"[^a-z0-9]+", "", f"{given}.{family}".lower()) or "user"
        attrs: dict[str, str] = {"given_name": given, "family_name": family, "name": f"{given} {family}"}

        if i in federated:
            status, username = "EXTERNAL_PROVIDER", f"Google_{rng.randrange(10**20, 10**21)}"
            tags.add("federated")
        elif i in phone_only:
            status, username = "CONFIRMED", f"{ascii_handle[:20]}{i}"
            tags.add("phone_only")
        elif i in unconfirmed:
            status, username = "UNCONFIRMED", f"{ascii_handle[:20]}{i}"
        elif i in force_change:
            status, username = "FORCE_CHANGE_PASSWORD", f"{ascii_handle[:20]}{i}"
        elif i in reset_required:
            status, username = "RESET_REQUIRED", f"{ascii_handle[:20]}{i}"
        else:
            status, username = "CONFIRMED", f"{ascii_handle[:20]}{i}"

        if i in phone_only:
            attrs["phone_number"] = f"+1555{rng.randrange(10**6, 10**7)}"
            attrs["phone_number_verified"] = "true"
        else:
            email = f"{ascii_handle[:30]}{i}@{rng.choice(EMAIL_DOMAINS)}"
            emails[i] = email
            attrs["email"] = email
            if status != "UNCONFIRMED" and i not in unverified:
                attrs["email_verified"] = "true"
            elif i in unverified:
                attrs["email_verified"] = "false"
            if i in unverified or status == "UNCONFIRMED":
                tags.add("unverified_email")
            if i in bad_phone:
                attrs["phone_number"] = rng.choice(BAD_PHONES)
                tags.add("non_e164_phone")
            elif rng.random() < 0.3:
                attrs["phone_number"] = f"+44{rng.randrange(7 * 10**9, 8 * 10**9)}"
        if i in invalid_email:
            attrs["email"] = INVALID_EMAIL
            emails[i] = INVALID_EMAIL
            tags.add("invalid_email")
        if status == "EXTERNAL_PROVIDER":
            attrs["identities"] = json.dumps(
                [
                    {
                        "userId": username.removeprefix("Google_"),
                        "providerName": "Google",
                        "providerType": "Google",
                        "issuer": None,
                        "primary": True,
                        "dateCreated": 1_600_000_000_000 + rng.randrange(10**11),
                    }
                ],
                separators=(",", ":"),
            )
        if rng.random() < 0.7:
            attrs["custom:tier"] = rng.choice(("free", "pro", "enterprise"))
        if rng.random() < 0.3:
            attrs["custom:legacy_id"] = str(rng.randrange(10**5, 10**7))
        if rng.random() < 0.1:
            attrs["custom:signup.source"] = rng.choice(("web", "ios", "android", "partner:acme"))
        if any(k.startswith("custom:") for k in attrs):
            tags.add("custom_attributes")

        groups = [g for g, (_, _, share) in GROUPS.items() if rng.random() < share]
        if i in multi:
            while len(groups) < 2:
                extra = rng.choice(list(GROUPS))
                if extra not in groups:
                    groups.append(extra)
        specs.append(
            UserSpec(
                username=username,
                status=status,
                attributes=tuple(attrs.items()),
                enabled=i not in disabled,
                groups=tuple(sorted(groups)),
                tags=frozenset(tags),
            )
        )

    # Case duplicates: the second user of each pair reuses the first one's email with a different case.
    for a, b in dup_pairs:
        twin = emails[a].swapcase() if emails[a].swapcase() != emails[a] else emails[a].upper()
        spec = specs[b]
        attrs = dict(spec.attributes)
        attrs["email"] = twin
        specs[b] = UserSpec(
            spec.username, spec.status, tuple(attrs.items()), spec.enabled, spec.groups, spec.tags | {"case_duplicate"}
        )
        specs[a] = UserSpec(
            specs[a].username,
            specs[a].status,
            specs[a].attributes,
            specs[a].enabled,
            specs[a].groups,
            specs[a].tags | {"case_duplicate"},
        )
    return specs


def _expected(pool: SeededPool, specs: Sequence[UserSpec], federated_status: str) -> None:
    status = Counter(federated_status if s.status == "EXTERNAL_PROVIDER" else s.status for s in specs)
    tags = Counter(t for s in specs for t in s.tags)
    members = Counter(g for s in specs for g in s.groups)
    pool.by_status = dict(status)
    pool.disabled = sum(1 for s in specs if not s.enabled)
    pool.federated = tags["federated"]
    pool.federated_status = federated_status
    pool.phone_only = tags["phone_only"]
    pool.case_duplicate_emails = tags["case_duplicate"]
    pool.invalid_emails = tags["invalid_email"]
    pool.unverified_emails = tags["unverified_email"]
    pool.non_e164_phones = tags["non_e164_phone"]
    pool.unicode_names = tags["unicode_name"]
    pool.long_names = tags["long_name"]
    pool.custom_attributes = tags["custom_attributes"]
    pool.memberships = sum(members.values())
    pool.multi_group_users = sum(1 for s in specs if len(s.groups) > 1)
    pool.group_members = {g: members.get(g, 0) for g in GROUPS}


# --- The pool itself (API) -------------------------------------------------------------------------------------


def _password() -> str:
    """A throwaway password meeting the pool policy; never stored or printed."""
    body = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
    return f"Aa1!{body}"


def create_pool(client: Any, *, pool_name: str = "demo-pool", seed: int = 42) -> SeededPool:
    """The pool, its schema, triggers, MFA setting, domain, groups, identity provider and three app clients."""
    region = client.meta.region_name
    account = "123456789012"
    lambda_config = {t: f"arn:aws:lambda:{region}:{account}:function:{pool_name}-{t.lower()}" for t in LAMBDA_TRIGGERS}
    pool = client.create_user_pool(
        PoolName=pool_name,
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 10,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": True,
                "TemporaryPasswordValidityDays": 7,
            }
        },
        LambdaConfig=lambda_config,
        AutoVerifiedAttributes=["email"],
        AliasAttributes=["email", "preferred_username"],
        Schema=[
            {"Name": "email", "AttributeDataType": "String", "Required": True, "Mutable": True},
            {"Name": "name", "AttributeDataType": "String", "Mutable": True},
            {"Name": "phone_number", "AttributeDataType": "String", "Mutable": True},
            *CUSTOM_ATTRIBUTES,
        ],
        UserPoolTags={"project": "cognito-to-avnology-demo"},
    )["UserPool"]
    pool_id = pool["Id"]
    client.set_user_pool_mfa_config(
        UserPoolId=pool_id, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration="OPTIONAL"
    )
    domain = f"{re.sub(r'[^a-z0-9-]', '-', pool_name.lower())}-{random.Random(seed).randrange(10**6, 10**7)}"
    client.create_user_pool_domain(Domain=domain, UserPoolId=pool_id)
    client.create_identity_provider(
        UserPoolId=pool_id,
        ProviderName="Google",
        ProviderType="Google",
        ProviderDetails={
            "client_id": "demo-google-client",
            "client_secret": "demo-google-secret",
            "authorize_scopes": "openid email profile",
        },
        AttributeMapping={"email": "email", "name": "name"},
    )
    for group, (description, precedence, _) in GROUPS.items():
        client.create_group(GroupName=group, UserPoolId=pool_id, Description=description, Precedence=precedence)

    common = {
        "UserPoolId": pool_id,
        "SupportedIdentityProviders": ["COGNITO", "Google"],
        "LogoutURLs": ["https://app.example.com/signed-out"],
    }
    spa = client.create_user_pool_client(
        ClientName="web-spa",
        GenerateSecret=False,
        AllowedOAuthFlows=["code"],
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthScopes=["openid", "email", "profile"],
        CallbackURLs=["https://app.example.com/callback", "http://localhost:3000/callback"],
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        **common,
    )["UserPoolClient"]
    backend = client.create_user_pool_client(
        ClientName="backend-confidential",
        GenerateSecret=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthScopes=["openid", "email", "profile", "phone"],
        CallbackURLs=["https://api.example.com/oauth/callback"],
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        **common,
    )["UserPoolClient"]
    legacy = client.create_user_pool_client(
        ClientName="legacy-implicit",
        GenerateSecret=False,
        AllowedOAuthFlows=["implicit"],
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthScopes=["openid", "email"],
        CallbackURLs=["https://legacy.example.com/#/callback"],
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        **common,
    )["UserPoolClient"]
    return SeededPool(
        user_pool_id=pool_id,
        pool_name=pool_name,
        region=region,
        domain=domain,
        clients={c["ClientName"]: c["ClientId"] for c in (spa, backend, legacy)},
        groups=list(GROUPS),
    )


def _sub_of(user: dict[str, Any]) -> str:
    return next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")


def _create_via_api(client: Any, pool: SeededPool, spec: UserSpec) -> str:
    pool_id = pool.user_pool_id
    if spec.status == "UNCONFIRMED":
        sub = client.sign_up(
            ClientId=pool.clients["web-spa"],
            Username=spec.username,
            Password=_password(),
            UserAttributes=spec.attribute_list(),
        )["UserSub"]
    else:
        user = client.admin_create_user(
            UserPoolId=pool_id, Username=spec.username, UserAttributes=spec.attribute_list(), MessageAction="SUPPRESS"
        )["User"]
        sub = _sub_of(user)
        if spec.status in ("CONFIRMED", "RESET_REQUIRED", "EXTERNAL_PROVIDER"):
            client.admin_set_user_password(
                UserPoolId=pool_id, Username=spec.username, Password=_password(), Permanent=True
            )
        if spec.status == "RESET_REQUIRED":
            client.admin_reset_user_password(UserPoolId=pool_id, Username=spec.username)
    if not spec.enabled:
        client.admin_disable_user(UserPoolId=pool_id, Username=spec.username)
    for group in spec.groups:
        client.admin_add_user_to_group(UserPoolId=pool_id, Username=spec.username, GroupName=group)
    return str(sub)


def in_process_pool(user_pool_id: str) -> Any | None:
    """moto's in-process pool object when the moto serving ``client`` runs in this process, else None."""
    from moto.cognitoidp.models import cognitoidp_backends

    for account in list(cognitoidp_backends):
        for region in list(cognitoidp_backends[account].keys()):
            pool = cognitoidp_backends[account][region].user_pools.get(user_pool_id)
            if pool is not None:
                return pool
    return None


def seed_pool(
    client: Any, users: int = 2000, *, seed: int = 42, pool_name: str = "demo-pool", workers: int = 4
) -> SeededPool:
    """Create the pool and its users through the real cognito-idp API (``client`` is a boto3 client)."""
    specs = plan_users(users, seed=seed)
    pool = create_pool(client, pool_name=pool_name, seed=seed)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool_exec:
        subs = list(pool_exec.map(lambda s: _create_via_api(client, pool, s), specs))
    pool.users = {s.username: sub for s, sub in zip(specs, subs, strict=True)}

    backend_pool = in_process_pool(pool.user_pool_id)
    federated_status = "EXTERNAL_PROVIDER" if backend_pool is not None else "CONFIRMED"
    if backend_pool is not None:
        for spec in specs:
            if spec.status == "EXTERNAL_PROVIDER":
                backend_pool.users[spec.username].status = "EXTERNAL_PROVIDER"
    _expected(pool, specs, federated_status)
    return pool


def seed_pool_fast(client: Any, users: int = 30000, *, seed: int = 42, pool_name: str = "bench-pool") -> SeededPool:
    """Like :func:`seed_pool`, but users are written into moto's in-process backend (benchmarks only)."""
    from moto.cognitoidp.models import CognitoIdpUser, UserStatus

    specs = plan_users(users, seed=seed)
    pool = create_pool(client, pool_name=pool_name, seed=seed)
    backend_pool = in_process_pool(pool.user_pool_id)
    if backend_pool is None:
        raise RuntimeError(
            "seed_pool_fast writes moto's in-process backend, but the moto behind this client runs in another "
            "process. Start moto in this process (emulators.moto_cognito.MotoServer) or use seed_pool()."
        )
    groups = backend_pool.groups
    for spec in specs:
        # moto compares statuses by identity with its enum members; EXTERNAL_PROVIDER has none, so it stays a str.
        status = UserStatus[spec.status] if spec.status in UserStatus.__members__ else spec.status
        user = CognitoIdpUser(pool.user_pool_id, spec.username, None, status, spec.attribute_list())
        user.enabled = spec.enabled
        backend_pool.users[user.username] = user
        for name in spec.groups:
            groups[name].users.add(user)
            user.groups.add(groups[name])
        pool.users[spec.username] = user.id
    _expected(pool, specs, "EXTERNAL_PROVIDER")
    return pool


# --- Small changes for the reconciliation demo -----------------------------------------------------------------


def add_user(
    client: Any,
    user_pool_id: str,
    username: str,
    email: str,
    *,
    name: str = "New User",
    confirmed: bool = True,
    groups: Iterable[str] = (),
) -> str:
    """A user who signed up after cutover. Returns the sub."""
    attrs = [
        {"Name": "email", "Value": email},
        {"Name": "email_verified", "Value": "true"},
        {"Name": "name", "Value": name},
    ]
    user = client.admin_create_user(
        UserPoolId=user_pool_id, Username=username, UserAttributes=attrs, MessageAction="SUPPRESS"
    )["User"]
    if confirmed:
        client.admin_set_user_password(UserPoolId=user_pool_id, Username=username, Password=_password(), Permanent=True)
    for group in groups:
        client.admin_add_user_to_group(UserPoolId=user_pool_id, Username=username, GroupName=group)
    return _sub_of(user)


def modify_user(client: Any, user_pool_id: str, username: str, **attributes: str) -> None:
    """Change attributes (e.g. ``name=...``, ``custom_tier=...`` for ``custom:tier``); bumps UserLastModifiedDate."""
    if not attributes:
        raise ValueError("modify_user needs at least one attribute to change")
    attrs = [{"Name": k.replace("custom_", "custom:", 1), "Value": v} for k, v in attributes.items()]
    client.admin_update_user_attributes(UserPoolId=user_pool_id, Username=username, UserAttributes=attrs)


def disable_user(client: Any, user_pool_id: str, username: str) -> None:
    client.admin_disable_user(UserPoolId=user_pool_id, Username=username)


def delete_user(client: Any, user_pool_id: str, username: str) -> None:
    client.admin_delete_user(UserPoolId=user_pool_id, Username=username)


# --- CLI -------------------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    import boto3

    from emulators.moto_cognito import TEST_CREDENTIALS, MotoServer

    if args.fastpath:
        from emulators.moto_fastpath import install_list_users_fastpath

        install_list_users_fastpath()
    with MotoServer(port=args.port, region=args.region) as moto:
        client = boto3.client("cognito-idp", region_name=args.region, endpoint_url=moto.url, **TEST_CREDENTIALS)
        seeder = seed_pool_fast if args.fast else seed_pool
        pool = seeder(client, args.users, seed=args.seed, pool_name=args.pool_name)
        line: dict[str, Any] = {"endpoint_url": moto.url, **pool.summary()}
        if args.subs_file:
            with open(args.subs_file, "w", encoding="utf-8") as fh:
                fh.write("\n".join(sorted(pool.subs)))
        print(json.dumps(line), flush=True)
        # Serve until our parent closes stdin (or we are interrupted).
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint-url", help="a running moto server to seed through the API")
    target.add_argument(
        "--serve", action="store_true", help="start moto in this process, seed it, serve until stdin closes"
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pool-name", default="demo-pool")
    parser.add_argument("--region", default=ACCOUNT_REGION_DEFAULT)
    parser.add_argument("--port", type=int, default=0, help="with --serve: port for moto (0 picks a free one)")
    parser.add_argument("--fast", action="store_true", help="with --serve: write moto's backend directly")
    parser.add_argument(
        "--fastpath", action="store_true", help="with --serve: cheap ListUsers in moto (emulators.moto_fastpath)"
    )
    parser.add_argument("--subs-file", help="with --serve: write every seeded sub to this file, one a line")
    args = parser.parse_args(argv)
    if args.serve:
        return _serve(args)
    if args.fast or args.fastpath:
        parser.error("--fast and --fastpath need --serve (they change moto's in-process backend)")

    import boto3

    from emulators.moto_cognito import TEST_CREDENTIALS

    client = boto3.client("cognito-idp", region_name=args.region, endpoint_url=args.endpoint_url, **TEST_CREDENTIALS)
    try:
        pool = seed_pool(client, args.users, seed=args.seed, pool_name=args.pool_name)
    except Exception as exc:
        print(f"error: seeding {args.endpoint_url} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(pool.summary(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
