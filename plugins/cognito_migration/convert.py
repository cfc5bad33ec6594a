"""Convert one Cognito user into an Auth0 bulk-import record and an Avnology identity body, or say why not.

Pure code: no I/O, no Airflow. :func:`convert_user` maps one user and validates both outputs with the
models in :mod:`cognito_migration.models`; :func:`plan_keepers` picks, among users sharing an email in any
letter case, the one to keep. The streaming, batching and file writing live in :mod:`cognito_migration.batches`.
docs/mapping.md is the field-by-field table of what this module does.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cognito_migration.models import (
    AUTH0_USER,
    AUTH0_USERNAME_MAX_LENGTH,
    AUTH0_USERNAME_PATTERN,
    AVNOLOGY_USERNAME_PATTERN,
    BATCH_MAX_BYTES,
    BCP47_PATTERN,
    COGNITO_STATUSES,
    COGNITO_USER,
    E164_PATTERN,
    EMAIL_LOCAL_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    IDENTITY_LINE,
    NAME_MAX_LENGTH,
    NICKNAME_MAX_LENGTH,
    PICTURE_MAX_LENGTH,
    PICTURE_PATTERN,
    PROFILE_MAX_BYTES,
    SUB_PATTERN,
    Converted,
    ConvertResult,
    ConvertWarning,
    Excluded,
    FastCognitoUser,
    Outcome,
    Reason,
)

__all__ = [
    "ConvertPolicy",
    "KeeperCandidate",
    "PoolContext",
    "choose_sub_version",
    "convert_user",
    "keeper_rank",
    "organization_slug",
    "plan_keepers",
    "sanitize_metadata_key",
]


class ConvertPolicy(BaseModel):
    """What to do with each kind of user the target cannot take as is. Every field has a default and is a
    plain string or int, so the DAG's trigger form can set it; :meth:`from_params` ignores other form keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unconfirmed: Literal["skip", "reject", "import"] = "skip"
    disabled: Literal["import_blocked", "skip"] = "import_blocked"
    federated: Literal["import", "skip"] = "import"
    invalid_phone: Literal["drop", "reject"] = "drop"
    long_names: Literal["truncate", "reject"] = "truncate"
    duplicate_email: Literal["confirmed_then_recent", "reject_all"] = "confirmed_then_recent"
    batch_max_users: int = Field(default=1000, ge=1, le=10_000)
    batch_max_bytes: int = Field(default=BATCH_MAX_BYTES, ge=PROFILE_MAX_BYTES + 16, le=BATCH_MAX_BYTES)
    auth0_username_max_length: int = Field(default=15, ge=1, le=AUTH0_USERNAME_MAX_LENGTH)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | BaseModel) -> ConvertPolicy:
        """Build from a DAG run's params (a mapping or the form model), which hold many unrelated keys.
        The form's names are accepted too: ``<field>_policy`` and ``batch_size``. Bad values raise
        ValidationError naming the field."""
        values = params.model_dump() if isinstance(params, BaseModel) else dict(params)
        picked: dict[str, Any] = {}
        for name in cls.model_fields:
            for key in (name, f"{name}_policy", *(("batch_size",) if name == "batch_max_users" else ())):
                if key in values:
                    picked[name] = values[key]
        return cls.model_validate(picked)


_CUSTOM_PREFIX = "custom:"
_CUSTOM_PREFIX_LEN = len(_CUSTOM_PREFIX)
_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")


def organization_slug(pool_name: str, fallback: str = "cognito-pool") -> str:
    """An Avnology organization name (2–64 of lowercase letters, digits, hyphens) from a pool name."""
    slug = _SLUG_UNSAFE.sub("-", pool_name.lower()).strip("-")[:64].strip("-")
    if len(slug) >= 2:
        return slug
    return organization_slug(fallback) if fallback != pool_name else "cognito-pool"


def sanitize_metadata_key(name: str) -> str:
    """Auth0 metadata key names cannot contain ``.`` or ``$`` (nor be empty)."""
    return name.replace(".", "_").replace("$", "_") or "_"


def _needs_sanitizing(name: str) -> bool:
    return not name or "." in name or "$" in name


def _assign_keys(names: Iterable[str], taken: set[str], fixed: Mapping[str, str]) -> dict[str, str]:
    """Metadata key per attribute name. A name that is already a legal key keeps it; others are sanitized,
    and a clash gets ``_2``, ``_3``… Callers pass names in a fixed order so every run assigns the same keys."""
    keys: dict[str, str] = {}
    for name in names:
        key = fixed.get(name) or (sanitize_metadata_key(name) if _needs_sanitizing(name) else name)
        if key in taken:
            base, suffix = key, 2
            while f"{base}_{suffix}" in taken:
                suffix += 1
            key = f"{base}_{suffix}"
        taken.add(key)
        keys[name] = key
    return keys


def _metadata_dict(
    values: Mapping[str, str], declared: Mapping[str, str], prefix: str, renamed: list[dict[str, str]]
) -> dict[str, str]:
    """Values keyed by legal metadata key names, in a fixed order (declared names, then legal names, then the
    rest, each by name) so attribute order never changes the output. Renamings are appended to ``renamed`` as
    ``{attribute, key}``."""
    # Declared names first (their keys are fixed pool-wide), then legal names, so those keep their own name.
    order = sorted(values, key=lambda name: (name not in declared, _needs_sanitizing(name), name))
    out: dict[str, str] = {}
    for name, key in _assign_keys(order, set(), declared).items():
        out[key] = values[name]
        if key != name:
            renamed.append({"attribute": prefix + name, "key": key})
    return out


@dataclass(frozen=True)
class PoolContext:
    """The user pool being converted.

    ``custom_attribute_names`` are the pool schema's custom attributes (DescribeUserPool ``SchemaAttributes``,
    with or without the ``custom:`` prefix). Their metadata keys are assigned once for the whole pool, so a
    clash after sanitizing (``a.b`` and ``a_b``) resolves the same way for every user. Custom attributes a
    user has that the schema does not declare are still carried, with keys assigned per user.
    """

    user_pool_id: str
    pool_name: str
    organization_name: str
    custom_attribute_names: Collection[str] = ()
    custom_keys: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.user_pool_id:
            raise ValueError("PoolContext needs a user_pool_id")
        names = sorted({n.removeprefix(_CUSTOM_PREFIX) for n in self.custom_attribute_names})
        clean = [n for n in names if not _needs_sanitizing(n)]
        dirty = [n for n in names if _needs_sanitizing(n)]
        object.__setattr__(self, "custom_keys", _assign_keys(clean + dirty, set(), {}))

    @classmethod
    def from_describe_user_pool(cls, user_pool: Mapping[str, Any], organization_name: str | None = None) -> PoolContext:
        """From DescribeUserPool's ``UserPool``; the organization defaults to the slugified pool name."""
        pool_id, name = user_pool.get("Id"), user_pool.get("Name")
        if not isinstance(pool_id, str) or not isinstance(name, str):
            raise ValueError("DescribeUserPool response lacks UserPool.Id or UserPool.Name")
        customs = [
            attr["Name"]
            for attr in user_pool.get("SchemaAttributes") or ()
            if isinstance(attr.get("Name"), str) and attr["Name"].startswith(_CUSTOM_PREFIX)
        ]
        return cls(
            user_pool_id=pool_id,
            pool_name=name,
            organization_name=organization_name or organization_slug(name, fallback=pool_id),
            custom_attribute_names=tuple(customs),
        )


# --- Field rules ---------------------------------------------------------------------------------------------

# Used with fullmatch: in Python's re a final "$" also matches before a trailing newline, in pydantic-core's
# regex it does not. fullmatch gives the Rust semantics, so "a@b.com\n" is an invalid email here, not a record
# the output validation refuses later (and a sub with a newline never reaches the tab-separated spool index).
_SUB_RE = re.compile(SUB_PATTERN)
_UUID_ANY_CASE_RE = re.compile(SUB_PATTERN, re.IGNORECASE)
_EMAIL_RE = re.compile(EMAIL_PATTERN)
_E164_RE = re.compile(E164_PATTERN)
_AUTH0_USERNAME_RE = re.compile(AUTH0_USERNAME_PATTERN)
_AVNOLOGY_USERNAME_RE = re.compile(AVNOLOGY_USERNAME_PATTERN)
_BCP47_RE = re.compile(BCP47_PATTERN)
_PICTURE_RE = re.compile(PICTURE_PATTERN)
_TIMEZONES = frozenset(zoneinfo.available_timezones())

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

# Standard attributes with no top-level field: Auth0 user_metadata and Avnology traits, by the same names.
_METADATA_STANDARD = ("address", "birthdate", "gender", "middle_name", "preferred_username", "profile")
_METADATA_STANDARD_TAIL = ("updated_at", "website")
_NAME_FIELDS = (("given_name", NAME_MAX_LENGTH), ("family_name", NAME_MAX_LENGTH), ("name", NAME_MAX_LENGTH))
# Attributes mapped explicitly; anything else is a custom attribute or goes to other_attributes.
_MAPPED = frozenset(
    {
        "sub",
        "email",
        "email_verified",
        "phone_number",
        "phone_number_verified",
        "given_name",
        "family_name",
        "name",
        "nickname",
        "picture",
        "locale",
        "zoneinfo",
        "identities",
        *_METADATA_STANDARD,
        *_METADATA_STANDARD_TAIL,
    }
)
_METADATA_STANDARD_ALL = frozenset(_METADATA_STANDARD + _METADATA_STANDARD_TAIL)
_IDENTITIES_RAW_MAX = 2048
_AUTH0_NAME_LIMITS = (*_NAME_FIELDS, ("nickname", NICKNAME_MAX_LENGTH))
# Cognito writes "true"/"false"; anything else (absent, garbage) counts as not verified.
_TRUE = frozenset({"true", "True", "TRUE"})


def _email_problem(email: str) -> str:
    """Why an email failed the check in :func:`convert_user` (only called on failure)."""
    if len(email) > EMAIL_MAX_LENGTH:
        return f"email has {len(email)} characters, at most {EMAIL_MAX_LENGTH} are allowed"
    local = email.rpartition("@")[0]
    if len(local) > EMAIL_LOCAL_MAX_LENGTH:
        return f"email local part has {len(local)} characters, at most {EMAIL_LOCAL_MAX_LENGTH} are allowed"
    return "email is not a valid address (ASCII local part @ dotted host name)"


def _utc(value: datetime) -> datetime:
    """The instant in UTC; a naive datetime is taken as UTC. The datetime itself goes into the records:
    pydantic-core writes it as ISO-8601 faster than strftime would."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if not value.utcoffset():  # already UTC (the common case): skip building a new datetime
        return value
    return value.astimezone(UTC)


def _epoch_us(value: datetime) -> int:
    return (value - _EPOCH) // _ONE_US


def _parse_identities(text: str) -> list[dict[str, Any]] | None:
    """Cognito's ``identities`` JSON string, keeping the documented keys with their documented types."""
    try:
        items = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None
    out: list[dict[str, Any]] = []
    for item in items:
        entry: dict[str, Any] = {}
        for key in ("userId", "providerName", "providerType"):
            value = item.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                entry[key] = str(value)
        issuer = item.get("issuer")
        if issuer is None or isinstance(issuer, str):
            entry["issuer"] = issuer
        if isinstance(item.get("primary"), bool):
            entry["primary"] = item["primary"]
        created = item.get("dateCreated")
        if created is None or (isinstance(created, int | str) and not isinstance(created, bool)):
            entry["dateCreated"] = created
        out.append(entry)
    return out


def _validation_detail(exc: ValidationError, prefix: str = "") -> str:
    """Where and what, never the offending value: rejects.csv must not echo arbitrary input."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "record"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{prefix}{where}: {first['msg']}{more}"


def _salvage(raw: object) -> tuple[str, str, str, str]:
    """Best-effort sub, username, email and status of a record that failed validation, for rejects.csv."""
    if isinstance(raw, str | bytes | bytearray):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return "", "", "", ""
    if not isinstance(raw, Mapping):
        return "", "", "", ""
    attrs: dict[str, str] = {}
    attributes = raw.get("Attributes")
    if isinstance(attributes, list):
        for attr in attributes:
            if isinstance(attr, Mapping) and isinstance(attr.get("Name"), str) and isinstance(attr.get("Value"), str):
                attrs[attr["Name"]] = attr["Value"]

    def text(value: object) -> str:
        return value if isinstance(value, str) else ""

    return text(attrs.get("sub")), text(raw.get("Username")), text(attrs.get("email")), text(raw.get("UserStatus"))


# The adapters' core validators, called directly: TypeAdapter's Python wrapper costs a few percent per user.
_parse_json = COGNITO_USER.validator.validate_json
_parse_json_fast = msgspec.json.Decoder(FastCognitoUser).decode
_parse_python = COGNITO_USER.validator.validate_python
_validate_auth0 = AUTH0_USER.validator.validate_python
_validate_line = IDENTITY_LINE.validator.validate_python
# msgspec writes the same bytes as pydantic-core's to_json for these plain dicts (compact, UTF-8, datetimes as
# ISO-8601 with "Z") in about half the time; the records are validated by pydantic before they are written.
_encode = msgspec.json.Encoder().encode


def convert_user(
    raw: Mapping[str, Any] | str | bytes,
    memberships: Mapping[str, Iterable[str]],
    pool: PoolContext,
    policy: ConvertPolicy,
) -> ConvertResult:
    """Map one ListUsers user (a dict, or its JSON text) to both target records; ``memberships`` maps a
    sub to its group names (a user absent from it belongs to no group).

    Never raises on bad input: a user that cannot be imported comes back as :class:`Excluded` with a reason.
    Checks run in a fixed order and the first that applies decides: the record's shape, then the status and
    enabled policies, then email, phone and names, then validation of the two outputs and the profile size.
    """
    try:
        if isinstance(raw, str | bytes | bytearray):
            try:
                user = _parse_json_fast(raw)
            except msgspec.MsgspecError:  # unusual input: pydantic decides what it accepts, and says why not
                user = _parse_json(raw)
        else:
            user = _parse_python(raw)
    except ValidationError as exc:
        return Excluded(*_salvage(raw), Outcome.REJECTED, Reason.INVALID_RECORD, _validation_detail(exc))
    attrs: dict[str, str] = {a["Name"]: a.get("Value", "") for a in user.get("Attributes", ())}
    username: str = user["Username"]
    status: str = user["UserStatus"]
    enabled: bool = user["Enabled"]
    sub = attrs.get("sub", "")
    email = attrs.get("email", "")

    def excluded(outcome: Outcome, reason: Reason, detail: str, modified_us: int = 0) -> Excluded:
        return Excluded(sub, username, email, status, outcome, reason, detail, modified_us)

    if not _SUB_RE.fullmatch(sub):
        return excluded(Outcome.REJECTED, Reason.INVALID_RECORD, "the sub attribute is missing or not a UUID")
    try:
        created_at = _utc(user["UserCreateDate"])
        modified_at = _utc(user["UserLastModifiedDate"])
        modified_us = _epoch_us(modified_at)
    except (OverflowError, ValueError):
        return excluded(Outcome.REJECTED, Reason.INVALID_RECORD, "a date is outside the representable range")

    federated = status == "EXTERNAL_PROVIDER"
    if status not in COGNITO_STATUSES:
        return excluded(
            Outcome.REJECTED, Reason.UNSUPPORTED_STATUS, f"UserStatus {status[:40]!r} is not importable", modified_us
        )
    if status == "UNCONFIRMED" and policy.unconfirmed != "import":
        outcome = Outcome.SKIPPED if policy.unconfirmed == "skip" else Outcome.REJECTED
        return excluded(outcome, Reason.UNCONFIRMED, f"policy unconfirmed={policy.unconfirmed}", modified_us)
    if federated and policy.federated == "skip":
        return excluded(Outcome.SKIPPED, Reason.FEDERATED, "policy federated=skip", modified_us)
    if not enabled and policy.disabled == "skip":
        return excluded(Outcome.SKIPPED, Reason.DISABLED, "policy disabled=skip", modified_us)
    if not email:
        detail = "no email attribute" + (" (phone-only user)" if attrs.get("phone_number") else "")
        return excluded(Outcome.REJECTED, Reason.NO_EMAIL, detail, modified_us)
    if len(email) > EMAIL_MAX_LENGTH or email.rfind("@") > EMAIL_LOCAL_MAX_LENGTH or not _EMAIL_RE.fullmatch(email):
        return excluded(Outcome.REJECTED, Reason.INVALID_EMAIL, _email_problem(email), modified_us)

    warnings: list[str] = []
    auth0_dropped: list[str] = []
    avnology_dropped: list[str] = []
    email_verified = attrs.get("email_verified") in _TRUE
    if email_verified:
        warnings.append(ConvertWarning.EMAIL_VERIFIED_NOT_CARRIED)

    phone = attrs.get("phone_number") or None
    if phone is not None and not _E164_RE.fullmatch(phone):
        if policy.invalid_phone == "reject":
            return excluded(Outcome.REJECTED, Reason.INVALID_PHONE, "phone_number is not E.164", modified_us)
        warnings.append(ConvertWarning.PHONE_DROPPED)
        auth0_dropped.append("phone_number")
        avnology_dropped.append("phone_number")
        phone = None

    # Names: Auth0 caps them (150, nickname 350); Avnology documents no limit and keeps the full value.
    auth0_names: dict[str, str] = {}
    truncated: list[str] = []
    for attr, limit in _AUTH0_NAME_LIMITS:
        value = attrs.get(attr)
        if not value:
            continue
        if len(value) > limit:
            if policy.long_names == "reject":
                detail = f"{attr} has {len(value)} characters, Auth0 allows {limit}"
                return excluded(Outcome.REJECTED, Reason.NAME_TOO_LONG, detail, modified_us)
            value = value[:limit]
            truncated.append(attr)
        auth0_names[attr] = value
    if truncated:
        warnings.append(ConvertWarning.NAMES_TRUNCATED)

    looks_like_id = username == sub or "@" in username or _UUID_ANY_CASE_RE.fullmatch(username) is not None
    user_metadata: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    # Most users have none of these: test with one set intersection, then fill in the fixed order.
    has_metadata_standard = not _METADATA_STANDARD_ALL.isdisjoint(attrs)
    if has_metadata_standard:
        for attr in _METADATA_STANDARD:
            value = attrs.get(attr)
            if value:
                user_metadata[attr] = traits[attr] = value
    locale = attrs.get("locale") or None
    if locale is not None:
        locale = locale.replace("_", "-")
        if _BCP47_RE.fullmatch(locale):
            user_metadata["locale"] = locale
        else:
            warnings.append(ConvertWarning.LOCALE_DROPPED)
            auth0_dropped.append("locale")
            avnology_dropped.append("locale")
            locale = None
    timezone = attrs.get("zoneinfo") or None
    if timezone is not None:
        if timezone in _TIMEZONES:
            user_metadata["zoneinfo"] = timezone
        else:
            warnings.append(ConvertWarning.TIMEZONE_DROPPED)
            auth0_dropped.append("zoneinfo")
            avnology_dropped.append("zoneinfo")
            timezone = None
    if has_metadata_standard:
        for attr in _METADATA_STANDARD_TAIL:
            value = attrs.get(attr)
            if value:
                user_metadata[attr] = traits[attr] = value
    if attrs.get("nickname"):
        traits["nickname"] = attrs["nickname"]
    picture = attrs.get("picture") or None
    if picture is not None:
        traits["picture"] = picture
        if len(picture) > PICTURE_MAX_LENGTH or not _PICTURE_RE.fullmatch(picture):
            warnings.append(ConvertWarning.PICTURE_DROPPED)
            auth0_dropped.append("picture")
            picture = None

    # Custom and unknown attributes: metadata key names without "." or "$", the renaming recorded.
    custom_values: dict[str, str] = {}
    other_values: dict[str, str] = {}
    custom_renames = False
    for name in attrs.keys() - _MAPPED:
        value = attrs[name]
        if not value:
            continue
        if name.startswith(_CUSTOM_PREFIX):
            name = name[_CUSTOM_PREFIX_LEN:]
            custom_values[name] = value
            custom_renames = custom_renames or not name or "." in name or "$" in name
        else:
            other_values[name] = value
    renamed: list[dict[str, str]] = []
    if custom_values:
        # Legal names keep their key (a declared legal name's key is itself, see PoolContext): sort and go.
        custom = (
            _metadata_dict(custom_values, pool.custom_keys, _CUSTOM_PREFIX, renamed)
            if custom_renames
            else dict(sorted(custom_values.items()))
        )
        user_metadata["custom"] = traits["custom"] = custom
    other = _metadata_dict(other_values, {}, "", renamed) if other_values else {}
    if renamed:
        warnings.append(ConvertWarning.METADATA_KEYS_SANITIZED)

    provenance: dict[str, Any] = {
        "user_pool_id": pool.user_pool_id,
        "sub": sub,
        "username": username,
        "status": status,
        "enabled": enabled,
        "federated": federated,
    }
    if "phone_number_verified" in attrs:
        provenance["phone_number_verified"] = attrs["phone_number_verified"] in _TRUE
    identities_text = attrs.get("identities")
    if identities_text:
        identities = _parse_identities(identities_text)
        if identities is None:
            warnings.append(ConvertWarning.IDENTITIES_UNPARSED)
            provenance["federated_identities_raw"] = identities_text[:_IDENTITIES_RAW_MAX]
        else:
            provenance["federated_identities"] = identities
    mfa_options = user.get("MFAOptions")
    if mfa_options:
        provenance["mfa_options"] = mfa_options
    if other:
        provenance["other_attributes"] = other
    if renamed:
        provenance["renamed_attributes"] = renamed

    group_names = sorted(set(memberships.get(sub, ())))
    auth0_cognito: dict[str, Any] = {
        **provenance,
        "user_create_date": created_at,
        "user_last_modified_date": modified_at,
        "groups": group_names,
    }
    if truncated:
        auth0_cognito["truncated_fields"] = truncated
    if auth0_dropped:
        auth0_cognito["dropped_attributes"] = auth0_dropped
    avnology_cognito: dict[str, Any] = {
        **provenance,
        "created_at": created_at,
        "last_modified_at": modified_at,
        "email_verified": email_verified,
    }
    if avnology_dropped:
        avnology_cognito["dropped_attributes"] = avnology_dropped

    auth0: dict[str, Any] = {"email": email, "email_verified": email_verified, "user_id": sub}
    if (
        not looks_like_id
        and len(username) <= policy.auth0_username_max_length
        and _AUTH0_USERNAME_RE.fullmatch(username)
    ):
        auth0["username"] = username
    auth0.update(auth0_names)
    if picture is not None:
        auth0["picture"] = picture
    if phone is not None:
        auth0["phone_number"] = phone
        auth0["phone_verified"] = attrs.get("phone_number_verified") in _TRUE
    auth0["blocked"] = not enabled
    auth0["app_metadata"] = {"cognito": auth0_cognito}
    if user_metadata:
        auth0["user_metadata"] = user_metadata

    given_name = attrs.get("given_name") or None
    display_name = attrs.get("name") or None
    identity: dict[str, Any] = {"email": email}
    if not looks_like_id and _AVNOLOGY_USERNAME_RE.fullmatch(username):
        identity["username"] = username
    if given_name:
        identity["first_name"] = given_name
    if attrs.get("family_name"):
        identity["last_name"] = attrs["family_name"]
    if display_name:
        identity["display_name"] = display_name
    if phone is not None:
        identity["phone"] = phone
    if locale is not None:
        identity["locale"] = locale
    if timezone is not None:
        identity["timezone"] = timezone
    identity["traits"] = traits
    identity["admin_metadata"] = {"cognito": avnology_cognito}
    line: dict[str, Any] = {
        "sub": sub,
        "username": username,
        "email": email,
        "status": status,
        "enabled": enabled,
        "federated": federated,
        "email_verified": email_verified,
        "reset_email": enabled and not federated,
        "groups": group_names,
        "first_name": given_name,
        "display_name": display_name,
        "identity": identity,
    }

    try:
        _validate_auth0(auth0)
    except ValidationError as exc:
        detail = _validation_detail(exc, "Auth0 record: ")
        return excluded(Outcome.REJECTED, Reason.INVALID_RECORD, detail, modified_us)
    try:
        _validate_line(line)
    except ValidationError as exc:
        detail = _validation_detail(exc, "identity line: ")
        return excluded(Outcome.REJECTED, Reason.INVALID_RECORD, detail, modified_us)
    try:
        auth0_json = _encode(auth0)
        line_json = _encode(line)
    except UnicodeEncodeError:  # a lone surrogate in a field validation lets through (plain str)
        detail = "a value is not valid Unicode text (lone surrogate)"
        return excluded(Outcome.REJECTED, Reason.INVALID_RECORD, detail, modified_us)
    if len(auth0_json) > PROFILE_MAX_BYTES:
        detail = f"the Auth0 record is {len(auth0_json)} bytes, Auth0 allows {PROFILE_MAX_BYTES} per profile"
        return excluded(Outcome.REJECTED, Reason.PROFILE_TOO_LARGE, detail, modified_us)

    return Converted(
        sub,
        username,
        email,
        email.lower(),
        status,
        modified_us,
        auth0,
        auth0_json,
        line,
        line_json,
        tuple(warnings),
    )


# --- De-duplication ------------------------------------------------------------------------------------------


class KeeperCandidate(NamedTuple):
    """The compact facts de-dup needs about one converted user: a million of these fit in memory."""

    email_key: str
    rank: int
    sub: str


_CONFIRMED_BIT = 1 << 62


def keeper_rank(status: str, last_modified_us: int) -> int:
    """Higher wins the duplicate-email de-dup: CONFIRMED first, then the most recently modified
    (UserLastModifiedDate). Ties go to the lowest sub (see :func:`plan_keepers`)."""
    return (_CONFIRMED_BIT if status == "CONFIRMED" else 0) + last_modified_us


def plan_keepers(candidates: Iterable[KeeperCandidate], rule: str = "confirmed_then_recent") -> dict[str, str | None]:
    """For each case-folded email, the sub of the user to keep, or None when nobody is kept.

    ``confirmed_then_recent``: the highest :func:`keeper_rank`, then the lowest sub. ``reject_all``: an email
    shared by several users keeps none of them. Independent of the order of ``candidates``, so batches do not
    depend on the extraction order.
    """
    if rule not in ("confirmed_then_recent", "reject_all"):
        raise ValueError(f"unknown duplicate_email policy {rule!r}")
    best: dict[str, tuple[int, str, int]] = {}
    for email_key, rank, sub in candidates:
        current = best.get(email_key)
        if current is None:
            best[email_key] = (rank, sub, 1)
        elif rank > current[0] or (rank == current[0] and sub < current[1]):
            best[email_key] = (rank, sub, current[2] + 1)
        else:
            best[email_key] = (current[0], current[1], current[2] + 1)
    if rule == "reject_all":
        return {email_key: (sub if count == 1 else None) for email_key, (_, sub, count) in best.items()}
    return {email_key: sub for email_key, (_, sub, _) in best.items()}


def choose_sub_version(versions: Sequence[tuple[int, bytes]]) -> int:
    """Index of the version to keep when one sub was fed more than once: the most recently modified, and
    among equals the greatest serialized form, so the choice does not depend on input order."""
    return max(range(len(versions)), key=lambda i: versions[i])
