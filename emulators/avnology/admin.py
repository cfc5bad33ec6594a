"""The emulator's own admin API under ``/_emulator/``: read state, reset, configure faults.

Not part of Avnology's API and never faulted or throttled, so a test can always inspect and clean up.
It has no auth: the emulator listens on loopback only.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from emulators.avnology.errors import invalid, not_found
from emulators.avnology.faults import FaultConfig
from emulators.avnology.gate import json_response, read_json_object, runtime_of

router = APIRouter(prefix="/_emulator")


@router.get("/state")
async def state(request: Request) -> Response:
    rt = runtime_of(request)
    name = request.query_params.get("tenant")
    if not name:
        raise invalid("tenant", "required", f"give ?tenant=<name>; tenants: {', '.join(rt.tenants)}")
    if name not in rt.tenants:
        raise not_found(f"no tenant {name!r}; tenants: {', '.join(rt.tenants)}", resource="tenant")
    return json_response(200, rt.tenant_snapshot(name))


@router.post("/reset")
async def reset(request: Request) -> Response:
    rt = runtime_of(request)
    rt.reset()
    return json_response(200, {"reset": True, "tenants": list(rt.tenants)})


@router.post("/faults")
async def faults(request: Request) -> Response:
    rt = runtime_of(request)
    config = FaultConfig.from_json(await read_json_object(request, optional=True))
    rt.configure_faults(config)
    return json_response(
        200,
        {"faults": config.as_dict(), "rate_limit": rt.key_limiter.describe()},
    )
