"""``/v1/identities``: create (with validate_only and Idempotency-Key), list, get, patch, delete."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from emulators.avnology.errors import conflict, invalid
from emulators.avnology.gate import admit, json_response, read_json_object, reject_unknown, weak_etag
from emulators.avnology.query import (
    decode_page_token,
    encode_page_token,
    parse_filter,
    parse_order_by,
    parse_page_size,
    query_fingerprint,
)
from emulators.avnology.tenant import StoredIdentity, Tenant, body_fingerprint
from emulators.avnology.validation import IDENTITY_FIELDS, check_identity, check_initial_password

router = APIRouter()

_CREATE_FIELDS = frozenset({"identity", "initial_password", "validate_only"})
_PATCH_FIELDS = frozenset({"identity", "update_mask"})
_LIST_PARAMS = frozenset({"page_size", "page_token", "filter", "order_by"})
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ETAG = re.compile(r'^(?:W/)?"([^"]*)"$')


@router.post("/v1/identities")
async def create_identity(request: Request) -> Response:
    tenant = await admit(request, "admin:users:write")
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise invalid("Idempotency-Key", "invalid_format", "Idempotency-Key must be 1-255 visible ASCII characters")
    body = await read_json_object(request)
    reject_unknown(body, _CREATE_FIELDS, "the create request")
    validate_only = body.get("validate_only", False)
    if not isinstance(validate_only, bool):
        raise invalid("validate_only", "not_a_boolean", "validate_only must be true or false")

    # A dry run creates nothing, so there is nothing for an Idempotency-Key to de-duplicate.
    key = None if validate_only else idempotency_key
    fingerprint = body_fingerprint(body)
    if key is not None:
        stats = tenant.idempotency_stats(key)
        stats.requests += 1
        previous = tenant.idempotent_result(key)
        if previous is not None:
            if previous.fingerprint != fingerprint:
                stats.conflicts += 1
                raise conflict(
                    "this Idempotency-Key was already used with a different request body",
                    reason="idempotency_key_reused",
                )
            stats.replays += 1
            headers = {"ETag": weak_etag(previous.body["etag"]), "Idempotent-Replayed": "true"}
            return json_response(previous.status, previous.body, headers)

    identity = body.get("identity")
    if identity is None:
        raise invalid("identity", "required", "identity is required")
    check_identity(identity, require_email=True)
    check_initial_password(body.get("initial_password"))
    if validate_only:
        tenant.counters.validate_only_requests += 1
    created = tenant.create_identity(
        identity, has_password=body.get("initial_password") is not None, commit=not validate_only
    )
    if key is not None:
        # Only a successful create binds the key; a refused request can be corrected and retried.
        tenant.remember_idempotent_result(key, fingerprint, 201, created)
        tenant.idempotency_stats(key).creates += 1
    return json_response(201, created, {"ETag": weak_etag(created["etag"])})


@router.get("/v1/identities")
async def list_identities(request: Request) -> Response:
    tenant = await admit(request, "admin:users:read")
    params = request.query_params
    reject_unknown(params.keys(), _LIST_PARAMS, "the list request")
    clauses = parse_filter(params.get("filter"))
    order = parse_order_by(params.get("order_by"))
    size = parse_page_size(params.get("page_size"))
    fingerprint = query_fingerprint("identities", clauses, order.text)
    cursor = decode_page_token(params.get("page_token"), fingerprint)
    if cursor is not None and not _is_cursor(cursor):
        raise invalid("page_token", "invalid_page_token", "page_token is not a token this API issued")

    matched = [s for s in _candidates(tenant, clauses) if _matches(s, clauses)]
    total = len(matched)

    def sort_key(stored: StoredIdentity) -> tuple[int, str, int]:
        value = stored.fields.get(order.field)
        if isinstance(value, str) and order.field == "email":
            value = value.casefold()
        return (0, "", stored.seq) if value is None else (1, str(value), stored.seq)

    matched.sort(key=sort_key, reverse=order.descending)
    if cursor is not None:
        after = tuple(cursor)
        if order.descending:
            matched = [s for s in matched if sort_key(s) < after]
        else:
            matched = [s for s in matched if sort_key(s) > after]
    page = matched[:size]
    next_token = encode_page_token(fingerprint, list(sort_key(page[-1]))) if len(matched) > size else ""
    return json_response(
        200,
        {"identities": [s.public() for s in page], "next_page_token": next_token, "total_size": total},
    )


def _candidates(tenant: Tenant, clauses: list[tuple[str, str]]) -> list[StoredIdentity]:
    # Email is unique per tenant, so an email clause is an index lookup (the client's 409 resolution path).
    for field, value in clauses:
        if field == "email":
            found = tenant.identity_id_by_email(value)
            return [tenant.identities[found]] if found else []
    return list(tenant.identities.values())


def _matches(stored: StoredIdentity, clauses: list[tuple[str, str]]) -> bool:
    for field, value in clauses:
        actual = stored.fields.get(field)
        if field == "email":
            if not isinstance(actual, str) or actual.casefold() != value.casefold():
                return False
        elif actual != value:
            return False
    return True


def _is_cursor(cursor: list[Any]) -> bool:
    return len(cursor) == 3 and type(cursor[0]) is int and isinstance(cursor[1], str) and type(cursor[2]) is int


@router.get("/v1/identities/{identity_id}")
async def get_identity(identity_id: str, request: Request) -> Response:
    tenant = await admit(request, "admin:users:read")
    stored = tenant.find_identity(identity_id)
    return json_response(200, stored.public(), {"ETag": weak_etag(stored.etag)})


@router.patch("/v1/identities/{identity_id}")
async def update_identity(identity_id: str, request: Request) -> Response:
    tenant = await admit(request, "admin:users:write")
    body = await read_json_object(request)
    reject_unknown(body, _PATCH_FIELDS, "the update request")
    paths = _parse_update_mask(body.get("update_mask"))
    identity = body.get("identity")
    if identity is None:
        raise invalid("identity", "required", "identity is required (it holds the new values)")
    check_identity(identity, fields=paths, require_email="email" in paths)
    stored = tenant.find_identity(identity_id)
    _check_if_match(request.headers.get("if-match"), stored)
    updated = tenant.update_identity(stored, {path: identity.get(path) for path in paths})
    return json_response(200, updated, {"ETag": weak_etag(updated["etag"])})


def _parse_update_mask(mask: Any) -> tuple[str, ...]:
    """Top-level field names, comma-separated; fields outside the mask are left alone (AIP-134)."""
    if mask is None or mask == "":
        raise invalid("update_mask", "required", "update_mask is required: the comma-separated fields to change")
    if not isinstance(mask, str):
        raise invalid("update_mask", "not_a_string", "update_mask must be a comma-separated string")
    paths = tuple(part.strip() for part in mask.split(","))
    for path in paths:
        if path not in IDENTITY_FIELDS:
            raise invalid("update_mask", "unknown_path", f"update_mask names {path!r}, which is not an updatable field")
    return paths


def _check_if_match(header: str | None, stored: StoredIdentity) -> None:
    if header is None:
        return
    tags = []
    for part in header.split(","):
        part = part.strip()
        if part == "*":
            return
        match = _ETAG.match(part)
        if match is None:
            raise invalid("If-Match", "invalid_format", 'If-Match must look like W/"<etag>"')
        tags.append(match.group(1))
    if stored.etag not in tags:
        raise conflict(
            "the identity changed since it was read (If-Match does not match its ETag); read it again",
            reason="etag_mismatch",
        )


@router.delete("/v1/identities/{identity_id}")
async def delete_identity(identity_id: str, request: Request) -> Response:
    tenant = await admit(request, "admin:users:write")
    reject_unknown(request.query_params.keys(), {"force"}, "the delete request")
    force_text = request.query_params.get("force", "false").lower()
    if force_text not in ("true", "false"):
        raise invalid("force", "not_a_boolean", "force must be true or false")
    stored = tenant.find_identity(identity_id)
    if force_text == "true":
        tenant.hard_delete_identity(stored)
    else:
        tenant.soft_delete_identity(stored)
    return Response(status_code=204)
