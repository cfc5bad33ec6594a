"""``/v1/permissions``: Keto-style relation tuples (grant, revoke, list, check).

``check`` matches stored tuples exactly; subject sets and rewrites (e.g. role inheritance) are not modelled.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from emulators.avnology.errors import invalid
from emulators.avnology.gate import admit, json_response, read_json_object, reject_unknown
from emulators.avnology.query import decode_page_token, encode_page_token, parse_page_size, query_fingerprint
from emulators.avnology.tenant import public_tuple
from emulators.avnology.validation import PERMISSION_FIELDS, check_permission_tuple

router = APIRouter()

_LIST_PARAMS = frozenset({*PERMISSION_FIELDS, "page_size", "page_token"})


@router.post("/v1/permissions")
async def grant_permission(request: Request) -> Response:
    tenant = await admit(request, "admin:permissions:write")
    body = await read_json_object(request)
    return json_response(201, tenant.grant(check_permission_tuple(body)))


@router.delete("/v1/permissions")
async def revoke_permission(request: Request) -> Response:
    """The tuple comes in the query string (the usual form for DELETE), or else in a JSON body."""
    tenant = await admit(request, "admin:permissions:write")
    params = request.query_params
    if any(name in params for name in PERMISSION_FIELDS):
        reject_unknown(params.keys(), set(PERMISSION_FIELDS), "the revoke request")
        data: dict[str, Any] = dict(params)
    else:
        data = await read_json_object(request)
    tenant.revoke(check_permission_tuple(data))
    return Response(status_code=204)


@router.get("/v1/permissions")
async def list_permissions(request: Request) -> Response:
    tenant = await admit(request, "admin:permissions:read")
    params = request.query_params
    reject_unknown(params.keys(), _LIST_PARAMS, "the list request")
    wanted = {name: params[name] for name in PERMISSION_FIELDS if params.get(name)}
    size = parse_page_size(params.get("page_size"))
    fingerprint = query_fingerprint("permissions", wanted)
    cursor = decode_page_token(params.get("page_token"), fingerprint)
    if cursor is not None and not (len(cursor) == 1 and type(cursor[0]) is int):
        raise invalid("page_token", "invalid_page_token", "page_token is not a token this API issued")
    after = cursor[0] if cursor else 0

    matched = [
        record for record in tenant.permissions.values() if all(record[name] == value for name, value in wanted.items())
    ]
    total = len(matched)
    remaining = [record for record in matched if record["_seq"] > after]
    page = remaining[:size]
    next_token = encode_page_token(fingerprint, [page[-1]["_seq"]]) if len(remaining) > size else ""
    return json_response(
        200,
        {"permissions": [public_tuple(r) for r in page], "next_page_token": next_token, "total_size": total},
    )


@router.post("/v1/permissions:check")
async def check_permission(request: Request) -> Response:
    tenant = await admit(request, "admin:permissions:read")
    body = await read_json_object(request)
    return json_response(200, {"allowed": check_permission_tuple(body) in tenant.permissions})
