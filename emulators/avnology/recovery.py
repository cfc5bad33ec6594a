"""The public recovery (password reset) flow: create a flow, submit an email, a 6-digit code is "sent".

The answer to a submit is the same whether or not the email belongs to an identity, and so are the
throttles, so a caller cannot probe which emails exist. The code is not emailed: it is recorded in the
tenant's state (``recovery_codes_sent``) for tests to read through ``/_emulator/state``.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from emulators.avnology.errors import FORBIDDEN, RATE_LIMITED, ApiError, invalid, not_found
from emulators.avnology.gate import admit_public, json_response, read_json_object, reject_unknown, runtime_of
from emulators.avnology.validation import is_valid_email

router = APIRouter()

_SUBMIT_FIELDS = frozenset({"method", "email", "csrf_token"})
SENT_MESSAGE = "If an account exists for this email address, a recovery code has been sent to it."


@router.get("/v1/flows/recovery")
async def create_recovery_flow(request: Request) -> Response:
    tenant = await admit_public(request)
    return json_response(200, tenant.start_recovery_flow())


@router.post("/v1/flows/recovery/{flow_id}:submit")
async def submit_recovery_flow(flow_id: str, request: Request) -> Response:
    tenant = await admit_public(request)
    body = await read_json_object(request)
    reject_unknown(body, _SUBMIT_FIELDS, "a recovery submission")
    flow = tenant.recovery_flows.get(flow_id)
    if flow is None:
        raise not_found(f"recovery flow {flow_id!r} not found", resource="recovery_flow")
    csrf = body.get("csrf_token")
    if not isinstance(csrf, str) or not secrets.compare_digest(csrf, flow["csrf_token"]):
        raise ApiError(403, FORBIDDEN, "csrf_token is missing or does not match the flow", {"reason": "csrf"})
    if body.get("method") != "code":
        raise invalid("method", "unsupported_method", 'method must be "code"')
    email = body.get("email")
    if not is_valid_email(email):
        raise invalid("email", "invalid_format", "email is not a valid email address")
    assert isinstance(email, str)

    wait = runtime_of(request).recovery_cooldown.retry_after(f"{tenant.name}:{email.casefold()}")
    if wait:
        tenant.counters.rate_limited += 1
        raise ApiError(
            429,
            RATE_LIMITED,
            f"too many recovery requests for this address; retry after {wait} s",
            {"retry_after": wait},
            headers={"Retry-After": str(wait)},
        )
    tenant.send_recovery_code(flow_id, email)
    flow["state"] = "sent_email"
    return json_response(200, {"id": flow_id, "state": "sent_email", "method": "code", "message": SENT_MESSAGE})
