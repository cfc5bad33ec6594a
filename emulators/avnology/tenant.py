"""One tenant's in-memory state and the rules that change it (uniqueness, memberships, tuples, recovery).

Route modules parse HTTP and call these methods; nothing here awaits, so each operation is atomic on the
event loop (two concurrent creates of the same email cannot both succeed).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emulators.avnology.errors import MEMBER_EXISTS, ORG_NOT_FOUND, ApiError, conflict, not_found
from emulators.avnology.validation import IDENTITY_FIELDS

SOFT_DELETE_DAYS = 30


def now_rfc3339(offset: timedelta | None = None) -> str:
    moment = datetime.now(UTC) + (offset or timedelta())
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def body_fingerprint(body: Any) -> str:
    """Same JSON value -> same fingerprint, whatever the key order or whitespace of the request."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class StoredIdentity:
    fields: dict[str, Any]
    seq: int
    has_password: bool
    version: int = 1

    @property
    def id(self) -> str:
        return str(self.fields["id"])

    @property
    def etag(self) -> str:
        return hashlib.sha256(f"{self.id}:{self.version}".encode()).hexdigest()[:20]

    def public(self) -> dict[str, Any]:
        return {**self.fields, "etag": self.etag}


@dataclass
class IdempotencyRecord:
    fingerprint: str
    status: int
    body: dict[str, Any]
    expires_at: float


@dataclass
class IdempotencyStats:
    requests: int = 0
    creates: int = 0
    replays: int = 0
    conflicts: int = 0


@dataclass
class Counters:
    requests_total: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    identities_created: int = 0
    validate_only_requests: int = 0
    rate_limited: int = 0
    faults_injected: int = 0
    recovery_submissions: int = 0
    idempotency: dict[str, IdempotencyStats] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "identities_created": self.identities_created,
            "validate_only_requests": self.validate_only_requests,
            "rate_limited": self.rate_limited,
            "faults_injected": self.faults_injected,
            "recovery_submissions": self.recovery_submissions,
            "idempotency_keys": {k: vars(v).copy() for k, v in self.idempotency.items()},
        }


class Tenant:
    def __init__(self, name: str, idempotency_ttl_seconds: float) -> None:
        self.name = name
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        self.identities: dict[str, StoredIdentity] = {}
        self._by_email: dict[str, str] = {}
        self._by_username: dict[str, str] = {}
        self.organizations: dict[str, dict[str, Any]] = {}
        self._org_handles: dict[str, str] = {}  # name and slug -> org id; they share one namespace
        self.memberships: dict[tuple[str, str], dict[str, Any]] = {}
        self.permissions: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.recovery_flows: dict[str, dict[str, Any]] = {}
        self.recovery_codes_sent: list[dict[str, Any]] = []
        self._idempotency: dict[str, IdempotencyRecord] = {}
        self.counters = Counters()
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # identities -------------------------------------------------------------------------------------------

    def find_identity(self, identity_id: str) -> StoredIdentity:
        stored = self.identities.get(identity_id)
        if stored is None:
            raise not_found(f"identity {identity_id!r} not found", resource="identity", id=identity_id)
        return stored

    def identity_id_by_email(self, email: str) -> str | None:
        return self._by_email.get(email.casefold())

    def _check_unique(self, values: dict[str, Any], exclude_id: str | None) -> None:
        email = values.get("email")
        if email is not None:
            holder = self._by_email.get(email.casefold())
            if holder is not None and holder != exclude_id:
                raise conflict("an identity with this email already exists", field="email")
        username = values.get("username")
        if username is not None:
            holder = self._by_username.get(username.casefold())
            if holder is not None and holder != exclude_id:
                raise conflict("an identity with this username already exists", field="username")
        org_id = values.get("organization_id")
        if org_id is not None and org_id not in self.organizations:
            raise ApiError(404, ORG_NOT_FOUND, f"organization {org_id!r} not found", {"field": "organization_id"})

    def create_identity(self, values: dict[str, Any], *, has_password: bool, commit: bool) -> dict[str, Any]:
        """The new identity; with ``commit=False`` (validate_only) the same answer, but nothing is stored."""
        self._check_unique(values, exclude_id=None)
        stamp = now_rfc3339()
        fields: dict[str, Any] = {"id": f"usr_{uuid.uuid4()}"}
        for name in IDENTITY_FIELDS:
            fields[name] = values.get(name)
        fields["traits"] = fields["traits"] or {}
        fields["admin_metadata"] = fields["admin_metadata"] or {}
        fields.update(
            state="active",
            email_verified=False,
            create_time=stamp,
            update_time=stamp,
            last_login_at=None,
            purge_time=None,
        )
        stored = StoredIdentity(fields=fields, seq=self._next_seq(), has_password=has_password)
        if commit:
            self.identities[stored.id] = stored
            self._index(stored)
            self.counters.identities_created += 1
        return stored.public()

    def _index(self, stored: StoredIdentity) -> None:
        self._by_email[stored.fields["email"].casefold()] = stored.id
        if stored.fields.get("username"):
            self._by_username[stored.fields["username"].casefold()] = stored.id

    def _unindex(self, stored: StoredIdentity) -> None:
        self._by_email.pop(stored.fields["email"].casefold(), None)
        if stored.fields.get("username"):
            self._by_username.pop(stored.fields["username"].casefold(), None)

    def update_identity(self, stored: StoredIdentity, changes: dict[str, Any]) -> dict[str, Any]:
        self._check_unique(changes, exclude_id=stored.id)
        self._unindex(stored)
        for name, value in changes.items():
            stored.fields[name] = value if value is not None or name not in ("traits", "admin_metadata") else {}
        stored.fields["update_time"] = now_rfc3339()
        stored.version += 1
        self._index(stored)
        return stored.public()

    def soft_delete_identity(self, stored: StoredIdentity) -> None:
        if stored.fields["state"] == "scheduled_deletion":
            return
        stored.fields["state"] = "scheduled_deletion"
        stored.fields["purge_time"] = now_rfc3339(timedelta(days=SOFT_DELETE_DAYS))
        stored.fields["update_time"] = now_rfc3339()
        stored.version += 1

    def hard_delete_identity(self, stored: StoredIdentity) -> None:
        self._unindex(stored)
        del self.identities[stored.id]

    # idempotency ------------------------------------------------------------------------------------------

    def idempotency_stats(self, key: str) -> IdempotencyStats:
        stats = self.counters.idempotency.get(key)
        if stats is None:
            stats = self.counters.idempotency[key] = IdempotencyStats()
        return stats

    def idempotent_result(self, key: str) -> IdempotencyRecord | None:
        record = self._idempotency.get(key)
        if record is not None and record.expires_at <= time.monotonic():
            del self._idempotency[key]
            return None
        return record

    def remember_idempotent_result(self, key: str, fingerprint: str, status: int, body: dict[str, Any]) -> None:
        expires = time.monotonic() + self.idempotency_ttl_seconds
        self._idempotency[key] = IdempotencyRecord(fingerprint, status, body, expires)

    # organizations ----------------------------------------------------------------------------------------

    def create_organization(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["name"]
        slug = body.get("slug") or name
        for field_name, handle in (("name", name), ("slug", slug)):
            holder = self._org_handles.get(handle)
            if holder is not None:
                raise conflict(f"an organization with this {field_name} already exists", field=field_name)
        stamp = now_rfc3339()
        org = {
            "id": f"org_{uuid.uuid4()}",
            "name": name,
            "display_name": body.get("display_name") or name,
            "slug": slug,
            "registration_mode": body.get("registration_mode"),
            "create_time": stamp,
            "update_time": stamp,
        }
        self.organizations[org["id"]] = org
        self._org_handles[name] = org["id"]
        self._org_handles[slug] = org["id"]
        return org

    def _require_org(self, org_id: str) -> None:
        if org_id not in self.organizations:
            raise ApiError(404, ORG_NOT_FOUND, f"organization {org_id!r} not found", {"id": org_id})

    def add_member(self, org_id: str, user_id: str, role: str) -> dict[str, Any]:
        self._require_org(org_id)
        self.find_identity(user_id)
        if (org_id, user_id) in self.memberships:
            raise ApiError(409, MEMBER_EXISTS, "the identity is already a member of this organization")
        member = {
            "organization_id": org_id,
            "user_id": user_id,
            "role": role,
            "create_time": now_rfc3339(),
        }
        self.memberships[(org_id, user_id)] = member
        return member

    def find_member(self, org_id: str, user_id: str) -> dict[str, Any]:
        self._require_org(org_id)
        member = self.memberships.get((org_id, user_id))
        if member is None:
            raise not_found("the identity is not a member of this organization", resource="membership")
        return member

    def remove_member(self, org_id: str, user_id: str) -> None:
        self.find_member(org_id, user_id)
        del self.memberships[(org_id, user_id)]

    # permissions ------------------------------------------------------------------------------------------

    def grant(self, key: tuple[str, str, str, str]) -> dict[str, Any]:
        if key in self.permissions:
            raise conflict("this permission tuple already exists", reason="tuple_exists")
        namespace, obj, relation, subject = key
        record = {
            "namespace": namespace,
            "object": obj,
            "relation": relation,
            "subject": subject,
            "create_time": now_rfc3339(),
            "_seq": self._next_seq(),
        }
        self.permissions[key] = record
        return public_tuple(record)

    def revoke(self, key: tuple[str, str, str, str]) -> None:
        if self.permissions.pop(key, None) is None:
            raise not_found("this permission tuple does not exist", resource="permission")

    # recovery ---------------------------------------------------------------------------------------------

    def start_recovery_flow(self) -> dict[str, Any]:
        flow_id = str(uuid.uuid4())
        flow: dict[str, Any] = {
            "id": flow_id,
            "type": "api",
            "state": "choose_method",
            "methods": ["code"],
            "csrf_token": secrets.token_urlsafe(32),
            "issued_at": now_rfc3339(),
        }
        self.recovery_flows[flow_id] = flow
        return flow

    def send_recovery_code(self, flow_id: str, email: str) -> None:
        """Record the 6-digit code an active identity with this email would receive; others get nothing."""
        self.counters.recovery_submissions += 1
        identity_id = self.identity_id_by_email(email)
        stored = self.identities.get(identity_id) if identity_id else None
        if stored is None or stored.fields["state"] != "active":
            return
        self.recovery_codes_sent.append(
            {
                "email": stored.fields["email"],
                "identity_id": stored.id,
                "flow_id": flow_id,
                "code": f"{secrets.randbelow(10**6):06d}",
                "sent_time": now_rfc3339(),
            }
        )

    # admin view -------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        identities = []
        for stored in self.identities.values():
            identities.append({**stored.public(), "has_password": stored.has_password})
        return {
            "tenant": self.name,
            "identities": identities,
            "organizations": list(self.organizations.values()),
            "memberships": list(self.memberships.values()),
            "permissions": [public_tuple(p) for p in self.permissions.values()],
            "recovery_flows": len(self.recovery_flows),
            "recovery_codes_sent": list(self.recovery_codes_sent),
            "counters": self.counters.as_dict(),
        }


def public_tuple(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}
