"""The documented field rules for identities, organizations and permission tuples.

Strict on purpose: the client is written against the docs, and a rule the emulator skipped would let a
client bug through to a real tenant.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from typing import Any

from emulators.avnology.errors import ApiError, invalid

IDENTITY_FIELDS = (
    "email",
    "username",
    "first_name",
    "last_name",
    "display_name",
    "phone",
    "organization_id",
    "locale",
    "timezone",
    "traits",
    "admin_metadata",
)
_OBJECT_FIELDS = frozenset({"traits", "admin_metadata"})
# Set by the server only; sending them is a client bug (e.g. email_verified cannot be set through REST).
READ_ONLY_IDENTITY_FIELDS = frozenset(
    {"id", "state", "email_verified", "create_time", "update_time", "last_login_at", "etag", "purge_time"}
)

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_USERNAME = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
# BCP 47 language tags (RFC 5646 "langtag" plus private use), without the grandfathered irregular tags.
_BCP47 = re.compile(
    r"^(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})"
    r"(?:-[A-Za-z]{4})?"
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?$"
)
_ORG_NAME = re.compile(r"^[a-z0-9-]{2,64}$")
_SUBJECT = re.compile(r"^[A-Za-z0-9_.-]+:[^\s:][^\s]*$")


@functools.cache
def _iana_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_valid_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 254 and bool(_EMAIL.match(value))


def check_identity(identity: Any, *, fields: tuple[str, ...] = IDENTITY_FIELDS, require_email: bool) -> None:
    """Raise 400 AVNOLOGY_AUTH_902 for the first broken rule; ``details.violations`` lists all of them.

    ``fields`` limits the check to the fields being written (a PATCH validates its mask only).
    """
    if not isinstance(identity, dict):
        raise invalid("identity", "not_an_object", "identity must be a JSON object")
    violations: list[dict[str, str]] = []

    def violate(field: str, reason: str, description: str) -> None:
        violations.append({"field": field, "reason": reason, "description": description})

    for name in identity:
        if name in READ_ONLY_IDENTITY_FIELDS:
            violate(name, "read_only_field", f"{name} is set by the server and cannot be written")
        elif name not in IDENTITY_FIELDS:
            violate(name, "unknown_field", f"identity has no field {name!r}")

    for name in fields:
        value = identity.get(name)
        if value is None or (name == "email" and value == ""):
            if name == "email" and require_email:
                violate("email", "required", "email is required")
            continue
        if name in _OBJECT_FIELDS:
            if not isinstance(value, dict):
                violate(name, "not_an_object", f"{name} must be a JSON object")
            continue
        if not isinstance(value, str):
            violate(name, "not_a_string", f"{name} must be a string")
            continue
        rule = _STRING_RULES.get(name)
        if rule is not None and not rule[0](value):
            violate(name, "invalid_format", rule[1])

    if violations:
        first = violations[0]
        raise ApiError(
            400,
            "AVNOLOGY_AUTH_902",
            first["description"],
            {"field": first["field"], "reason": first["reason"], "violations": violations},
        )


_STRING_RULES = {
    "email": (is_valid_email, "email is not a valid email address"),
    "username": (lambda v: bool(_USERNAME.match(v)), "username must be 3-64 characters of [A-Za-z0-9_-]"),
    "phone": (lambda v: bool(_E164.match(v)), "phone must be in E.164 format, e.g. +14155550123"),
    "locale": (lambda v: bool(_BCP47.match(v)), "locale must be a BCP 47 language tag, e.g. en-US"),
    "timezone": (lambda v: v in _iana_zones(), "timezone must be an IANA time zone name, e.g. Europe/Paris"),
    "organization_id": (lambda v: v != "", "organization_id must not be empty"),
}


def check_initial_password(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise invalid("initial_password", "not_a_string", "initial_password must be a string")
    if len(value) < 8:
        raise invalid("initial_password", "too_short", "initial_password must be at least 8 characters")


def check_organization(body: dict[str, Any]) -> None:
    allowed = {"name", "display_name", "slug", "registration_mode"}
    for field in body:
        if field not in allowed:
            raise invalid(field, "unknown_field", f"organization has no field {field!r}")
    name = body.get("name")
    if name is None:
        raise invalid("name", "required", "name is required")
    if not isinstance(name, str) or not _ORG_NAME.match(name):
        raise invalid("name", "invalid_format", "name must be 2-64 characters of lowercase letters, digits, '-'")
    slug = body.get("slug")
    if slug is not None and (not isinstance(slug, str) or not _ORG_NAME.match(slug)):
        raise invalid("slug", "invalid_format", "slug must be 2-64 characters of lowercase letters, digits, '-'")
    for optional in ("display_name", "registration_mode"):
        value = body.get(optional)
        if value is not None and not isinstance(value, str):
            raise invalid(optional, "not_a_string", f"{optional} must be a string")


PERMISSION_FIELDS = ("namespace", "object", "relation", "subject")


def check_permission_tuple(data: dict[str, Any]) -> tuple[str, str, str, str]:
    """A complete tuple; the subject is written ``<namespace>:<id>`` (e.g. ``identities:usr_…``)."""
    for name in data:
        if name not in PERMISSION_FIELDS:
            raise invalid(name, "unknown_field", f"a permission tuple has no field {name!r}")
    values = []
    for name in PERMISSION_FIELDS:
        value = data.get(name)
        if value is None or value == "":
            raise invalid(name, "required", f"{name} is required")
        if not isinstance(value, str):
            raise invalid(name, "not_a_string", f"{name} must be a string")
        values.append(value)
    if not _SUBJECT.match(values[3]):
        raise invalid("subject", "invalid_format", "subject must look like '<namespace>:<id>', e.g. identities:usr_…")
    return values[0], values[1], values[2], values[3]
