"""Pydantic models at the convert stage's two boundaries: Cognito users in, Auth0 and Avnology records out.

The records are TypedDicts validated through :class:`pydantic.TypeAdapter`, not ``BaseModel`` instances: the
converter builds plain dicts, validates them in pydantic-core (Rust) and serializes the same dicts, so a
million users are validated without allocating a model object each. The input model is lax where boto3's
JSON round trip is (datetimes arrive as ISO strings or ``datetime`` objects) and ignores fields boto3 may add;
the output models are strict and forbid unknown keys, mirroring ``additionalProperties: false`` of the
Auth0 import schema (``schemas/auth0-import.schema.json``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NamedTuple, NotRequired, Required

import msgspec
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    StringConstraints,
    TypeAdapter,
    model_validator,
)
from typing_extensions import TypedDict

# The hand-written JSON Schema of one Auth0 bulk-import user, from the documented rules (tests validate every
# converted record against it; the CLI import backend may too).
AUTH0_IMPORT_SCHEMA_PATH = Path(__file__).parent / "schemas" / "auth0-import.schema.json"

# --- Rules shared by the models, the converter and the JSON schema -------------------------------------------

# Email as Auth0 and Avnology accept it: an ASCII local part of 1 to 64 characters that neither starts nor ends
# with a dot, and a dotted host name of LDH labels; at most 254 in all. Stricter than the schema's "has an @" on
# purpose: a record the target may refuse is a reject here, with its reason. (No look-arounds: pydantic-core's
# regex engine has none, and the same pattern runs there and in Python.)
_EMAIL_ATOM = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
EMAIL_PATTERN = (
    rf"^[{_EMAIL_ATOM}](?:[.{_EMAIL_ATOM}]{{0,62}}[{_EMAIL_ATOM}])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
EMAIL_MAX_LENGTH = 254
EMAIL_LOCAL_MAX_LENGTH = 64
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
# Auth0's username character set (no "@", so a username can never be an email address); 128 is Auth0's
# ceiling, the policy's ``auth0_username_max_length`` (default 15) is the tenant's setting.
AUTH0_USERNAME_PATTERN = r"^[A-Za-z0-9_+\-.!#$^`~']+$"
AUTH0_USERNAME_MAX_LENGTH = 128
AVNOLOGY_USERNAME_PATTERN = r"^[A-Za-z0-9_-]{3,64}$"
# Cognito's sub is a lowercase UUID; it names the batch bucket and is the Auth0 user_id, so it must be one.
SUB_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
METADATA_KEY_PATTERN = r"^[^.$]+$"
BCP47_PATTERN = r"^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*$"
PICTURE_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"
NAME_MAX_LENGTH = 150
NICKNAME_MAX_LENGTH = 350
PICTURE_MAX_LENGTH = 2048
# Auth0: "keep each profile under 10 KB"; measured on the record's serialized bytes.
PROFILE_MAX_BYTES = 10_000
BATCH_MAX_BYTES = 500_000

AUTH0_FORBIDDEN_APP_METADATA_KEYS = frozenset(
    {
        "__tenant",
        "_id",
        "blocked",
        "clientID",
        "created_at",
        "email_verified",
        "email",
        "globalClientID",
        "global_client_id",
        "identities",
        "lastIP",
        "lastLogin",
        "loginsCount",
        "metadata",
        "multifactor_last_modified",
        "multifactor",
        "updated_at",
        "user_id",
    }
)

COGNITO_STATUSES = frozenset(
    {"UNCONFIRMED", "CONFIRMED", "EXTERNAL_PROVIDER", "RESET_REQUIRED", "FORCE_CHANGE_PASSWORD"}
)


class Outcome(StrEnum):
    CONVERTED = "converted"
    SKIPPED = "skipped"
    REJECTED = "rejected"


class Reason(StrEnum):
    """Stable reason codes of ``rejects.csv``; the report and the ledger key on them."""

    UNCONFIRMED = "unconfirmed"
    DISABLED = "disabled"
    FEDERATED = "federated"
    UNSUPPORTED_STATUS = "unsupported_status"
    NO_EMAIL = "no_email"
    INVALID_EMAIL = "invalid_email"
    INVALID_PHONE = "invalid_phone"
    NAME_TOO_LONG = "name_too_long"
    PROFILE_TOO_LARGE = "profile_too_large"
    DUPLICATE_EMAIL = "duplicate_email"
    DUPLICATE_SUB = "duplicate_sub"
    INVALID_RECORD = "invalid_record"


class ConvertWarning(StrEnum):
    """Per-user warnings: the user is converted, but something was dropped or changed (counted in the summary)."""

    PHONE_DROPPED = "phone_dropped"
    NAMES_TRUNCATED = "names_truncated"
    METADATA_KEYS_SANITIZED = "metadata_keys_sanitized"
    EMAIL_VERIFIED_NOT_CARRIED = "email_verified_not_carried"
    LOCALE_DROPPED = "locale_dropped"
    TIMEZONE_DROPPED = "timezone_dropped"
    PICTURE_DROPPED = "picture_dropped"
    IDENTITIES_UNPARSED = "identities_unparsed"


# --- Input: one user as ListUsers returns it ------------------------------------------------------------------

_INPUT = ConfigDict(extra="ignore")


class CognitoAttribute(TypedDict):
    __pydantic_config__ = _INPUT  # type: ignore[misc]
    Name: str
    Value: NotRequired[str]  # botocore's AttributeType makes Value optional


class MfaOption(TypedDict, total=False):
    __pydantic_config__ = _INPUT  # type: ignore[misc]
    DeliveryMedium: str
    AttributeName: str


class CognitoUser(TypedDict):
    __pydantic_config__ = _INPUT  # type: ignore[misc]
    Username: Annotated[str, StringConstraints(min_length=1)]
    Attributes: NotRequired[list[CognitoAttribute]]
    UserCreateDate: datetime
    UserLastModifiedDate: datetime
    Enabled: bool
    UserStatus: str
    MFAOptions: NotRequired[list[MfaOption]]


COGNITO_USER = TypeAdapter(CognitoUser)


# The same input shape for msgspec, the convert stage's fast path for JSON text: it decodes and checks a
# ListUsers user in half the time of pydantic-core. It is strict (RFC 3339 datetimes, JSON booleans), so it
# accepts a subset of what :data:`COGNITO_USER` accepts, with equal values (one exception: more than six
# fractional digits of a second are rounded to the microsecond, not truncated; boto3 never writes more
# than six). Anything it refuses goes to :data:`COGNITO_USER`, which decides and explains the error.
class FastCognitoAttribute(TypedDict):
    Name: str
    Value: NotRequired[str]


class FastMfaOption(TypedDict, total=False):
    DeliveryMedium: str
    AttributeName: str


class FastCognitoUser(TypedDict):
    Username: Annotated[str, msgspec.Meta(min_length=1)]
    Attributes: NotRequired[list[FastCognitoAttribute]]
    UserCreateDate: datetime
    UserLastModifiedDate: datetime
    Enabled: bool
    UserStatus: str
    MFAOptions: NotRequired[list[FastMfaOption]]


# --- Output: shared pieces ----------------------------------------------------------------------------------

_OUTPUT = ConfigDict(extra="forbid", strict=True)

MetadataKey = Annotated[str, StringConstraints(min_length=1, pattern=METADATA_KEY_PATTERN)]
Email = Annotated[str, StringConstraints(max_length=EMAIL_MAX_LENGTH, pattern=EMAIL_PATTERN)]
E164 = Annotated[str, StringConstraints(pattern=E164_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH)]
Sub = Annotated[str, StringConstraints(pattern=SUB_PATTERN)]


class FederatedIdentity(TypedDict, total=False):
    """One entry of Cognito's ``identities`` attribute, normalized to the documented keys and types."""

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    userId: str
    providerName: str
    providerType: str
    issuer: str | None
    primary: bool
    dateCreated: int | str | None


class OutputMfaOption(TypedDict, total=False):
    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    DeliveryMedium: str
    AttributeName: str


class RenamedAttribute(TypedDict):
    """A Cognito attribute whose name had ``.`` or ``$``: which metadata key now holds its value."""

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    attribute: str
    key: MetadataKey


class _CognitoProvenance(TypedDict, total=False):
    """Fields both targets keep about the Cognito user (admin-only metadata)."""

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    user_pool_id: Required[str]
    sub: Required[Sub]
    username: Required[str]
    status: Required[str]
    enabled: Required[bool]
    federated: Required[bool]
    phone_number_verified: bool
    federated_identities: list[FederatedIdentity]
    federated_identities_raw: str
    mfa_options: list[OutputMfaOption]
    other_attributes: dict[MetadataKey, str]
    renamed_attributes: list[RenamedAttribute]
    dropped_attributes: list[str]


# --- Output: the Auth0 bulk-import record ---------------------------------------------------------------------


class Auth0CognitoMetadata(_CognitoProvenance, total=False):
    """``app_metadata.cognito``. Key names avoid Auth0's forbidden app_metadata names at every depth
    (``created_at`` → ``user_create_date``, ``identities`` → ``federated_identities``)."""

    user_create_date: Required[datetime]
    user_last_modified_date: Required[datetime]
    groups: Required[list[str]]
    truncated_fields: list[str]


class Auth0AppMetadata(TypedDict):
    """``app_metadata``: one key, so no forbidden top-level name can appear.

    ``cognito`` is typed for readers and the JSON schema but not re-validated at run time (``SkipValidation``):
    it holds only values copied from the validated input, under literal key names or names sanitized by
    :func:`~cognito_migration.convert.sanitize_metadata_key`. Skipping it saves a twentieth of the stage's time;
    the tests validate it with :data:`AUTH0_COGNITO_METADATA` and the JSON schema.
    """

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    cognito: SkipValidation[Auth0CognitoMetadata]


class Auth0UserMetadata(TypedDict, total=False):
    """Standard attributes with no Auth0 top-level field, by their Cognito names; custom attributes nested."""

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    address: str
    birthdate: str
    gender: str
    locale: str
    middle_name: str
    preferred_username: str
    profile: str
    updated_at: str
    website: str
    zoneinfo: str
    custom: dict[MetadataKey, str]


class Auth0User(TypedDict, total=False):
    """One user of an Auth0 bulk-import file, as this converter writes it (a subset of the import schema)."""

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    email: Required[Email]
    email_verified: Required[bool]
    user_id: Required[Sub]
    username: Annotated[
        str, StringConstraints(min_length=1, max_length=AUTH0_USERNAME_MAX_LENGTH, pattern=AUTH0_USERNAME_PATTERN)
    ]
    given_name: Name
    family_name: Name
    name: Name
    nickname: Annotated[str, StringConstraints(min_length=1, max_length=NICKNAME_MAX_LENGTH)]
    picture: Annotated[str, StringConstraints(max_length=PICTURE_MAX_LENGTH, pattern=PICTURE_PATTERN)]
    phone_number: E164
    phone_verified: bool
    blocked: Required[bool]
    app_metadata: Required[Auth0AppMetadata]
    user_metadata: Auth0UserMetadata


AUTH0_USER = TypeAdapter(Auth0User)
AUTH0_COGNITO_METADATA = TypeAdapter(Auth0CognitoMetadata)

# --- Output: the Avnology identity body and the identities line -----------------------------------------------


class AvnologyCognitoRecord(_CognitoProvenance, total=False):
    """``admin_metadata.cognito``: our contract's provenance record (docs/avnology-id-api.md, part 2)."""

    created_at: Required[datetime]
    last_modified_at: Required[datetime]
    email_verified: Required[bool]


class AvnologyAdminMetadata(TypedDict):
    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    cognito: AvnologyCognitoRecord


class AvnologyTraits(TypedDict, total=False):
    """Standard attributes not mapped to a top-level identity field, by the same names; ``custom:<n>`` nested."""

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    address: str
    birthdate: str
    gender: str
    middle_name: str
    nickname: str
    picture: str
    preferred_username: str
    profile: str
    updated_at: str
    website: str
    custom: dict[MetadataKey, str]


class AvnologyIdentity(TypedDict, total=False):
    """The ``identity`` object of ``POST /v1/identities``. The converter never sets ``organization_id``:
    the loader does, once the organization exists.

    Runtime validation enforces Avnology's documented field rules. ``traits`` and ``admin_metadata`` are
    typed for readers and the JSON schema but not re-validated (``SkipValidation``): the converter fills them
    with the very values it has just validated in the Auth0 record (user_metadata, app_metadata.cognito), and
    validating them twice cost a tenth of the stage's time. Tests validate them with :data:`AVNOLOGY_TRAITS`
    and :data:`AVNOLOGY_ADMIN_METADATA`.
    """

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    email: Required[Email]
    username: Annotated[str, StringConstraints(pattern=AVNOLOGY_USERNAME_PATTERN)]
    first_name: Annotated[str, StringConstraints(min_length=1)]
    last_name: Annotated[str, StringConstraints(min_length=1)]
    display_name: Annotated[str, StringConstraints(min_length=1)]
    phone: E164
    organization_id: str
    locale: Annotated[str, StringConstraints(pattern=BCP47_PATTERN)]
    timezone: str
    traits: Required[SkipValidation[AvnologyTraits]]
    admin_metadata: Required[SkipValidation[AvnologyAdminMetadata]]


class IdentityLine(TypedDict):
    """One line of ``identities/batch-NNNN.jsonl``: what the loader and the email stage need about one user."""

    __pydantic_config__ = _OUTPUT  # type: ignore[misc]
    sub: Sub
    username: str
    email: Email
    status: str
    enabled: bool
    federated: bool
    email_verified: bool
    reset_email: bool
    groups: SkipValidation[list[str]]  # the list validated in the Auth0 record's app_metadata.cognito.groups
    first_name: str | None
    display_name: str | None
    identity: AvnologyIdentity


IDENTITY_LINE = TypeAdapter(IdentityLine)
AVNOLOGY_TRAITS = TypeAdapter(AvnologyTraits)
AVNOLOGY_ADMIN_METADATA = TypeAdapter(AvnologyAdminMetadata)

# --- Results of converting one user ----------------------------------------------------------------------------


class Converted(NamedTuple):
    """A user that goes into a batch (unless it loses the duplicate-email de-dup). Holds the validated
    records and their exact serialized bytes, so batching measures what it writes. A NamedTuple because a
    million are built per run and a frozen dataclass costs several times more to construct."""

    sub: str
    username: str
    email: str
    email_key: str
    status: str
    last_modified_us: int
    auth0: dict[str, Any]
    auth0_json: bytes
    line: dict[str, Any]
    line_json: bytes
    warnings: tuple[str, ...]

    @property
    def outcome(self) -> Outcome:
        return Outcome.CONVERTED


class Excluded(NamedTuple):
    """A user left out, by policy (skipped) or because it cannot be imported (rejected), with the reason."""

    sub: str
    username: str
    email: str
    status: str
    outcome: Outcome
    reason: Reason
    detail: str
    last_modified_us: int = 0


ConvertResult = Converted | Excluded

# --- Run summary -------------------------------------------------------------------------------------------------


class ConservationError(RuntimeError):
    """The counts do not add up: some user would be lost or counted twice. A run with this error must fail."""


class BatchInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    auth0_file: str
    identities_file: str
    users: int = Field(ge=1)
    bytes: int = Field(ge=2, le=BATCH_MAX_BYTES)


class ConvertSummary(BaseModel):
    """``convert_summary.json``. Validating it checks the conservation invariant: every user seen is
    converted (in exactly one batch), skipped or rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    user_pool_id: str
    organization_name: str
    policy: dict[str, Any]
    seen: int = Field(ge=0)
    unique_subs: int = Field(ge=0)
    converted: int = Field(ge=0)
    skipped: int = Field(ge=0)
    rejected: int = Field(ge=0)
    by_reason: dict[str, int]
    by_status: dict[str, dict[str, int]]  # status → {converted, skipped, rejected}
    warnings: dict[str, int]
    memberships_without_user: int = Field(ge=0)
    batches: list[BatchInfo]

    @model_validator(mode="after")
    def _conserved(self) -> ConvertSummary:
        accounted = self.converted + self.skipped + self.rejected
        if accounted != self.seen:
            raise ConservationError(
                f"seen {self.seen} users but converted {self.converted} + skipped {self.skipped} "
                f"+ rejected {self.rejected} = {accounted}"
            )
        if sum(self.by_reason.values()) != self.skipped + self.rejected:
            raise ConservationError(
                f"reasons count {sum(self.by_reason.values())} users, skipped + rejected is "
                f"{self.skipped + self.rejected}"
            )
        in_batches = sum(batch.users for batch in self.batches)
        if in_batches != self.converted:
            raise ConservationError(f"batches hold {in_batches} users, converted is {self.converted}")
        by_status_total = sum(sum(row.values()) for row in self.by_status.values())
        if by_status_total != self.seen:
            raise ConservationError(f"status table counts {by_status_total} users, seen is {self.seen}")
        return self
