"""``/v1/organizations`` and their members. Only the documented operations: no list or lookup by name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from emulators.avnology.errors import invalid
from emulators.avnology.gate import admit, json_response, read_json_object, reject_unknown
from emulators.avnology.validation import check_organization

router = APIRouter()

_MEMBER_PATH = "/v1/organizations/{org_id}/members/{user_id}"
_MEMBER_FIELDS = frozenset({"role"})
DEFAULT_ROLE = "member"


@router.post("/v1/organizations")
async def create_organization(request: Request) -> Response:
    tenant = await admit(request, "admin:orgs:write")
    body = await read_json_object(request)
    check_organization(body)
    return json_response(201, tenant.create_organization(body))


@router.api_route(_MEMBER_PATH, methods=["PUT", "POST"])
async def add_member(org_id: str, user_id: str, request: Request) -> Response:
    tenant = await admit(request, "admin:orgs:write")
    body = await read_json_object(request, optional=True)
    reject_unknown(body, _MEMBER_FIELDS, "a membership")
    role = _role(body.get("role", DEFAULT_ROLE))
    return json_response(201, tenant.add_member(org_id, user_id, role))


@router.patch(_MEMBER_PATH)
async def change_member_role(org_id: str, user_id: str, request: Request) -> Response:
    tenant = await admit(request, "admin:orgs:write")
    body = await read_json_object(request)
    reject_unknown(body, _MEMBER_FIELDS, "a membership")
    if "role" not in body:
        raise invalid("role", "required", "role is required")
    role = _role(body["role"])
    member = tenant.find_member(org_id, user_id)
    member["role"] = role
    return json_response(200, member)


@router.delete(_MEMBER_PATH)
async def remove_member(org_id: str, user_id: str, request: Request) -> Response:
    tenant = await admit(request, "admin:orgs:write")
    tenant.remove_member(org_id, user_id)
    return Response(status_code=204)


def _role(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise invalid("role", "invalid_format", "role must be a non-empty string of at most 64 characters")
    return value
