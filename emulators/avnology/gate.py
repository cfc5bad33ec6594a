"""What every API request goes through before its handler: latency, auth, rate limit, scope, faults.

The order mirrors a real gateway: an unauthenticated caller learns nothing (401 before anything else), a
throttled caller is refused before its scopes are looked at, and injected faults happen last, just before
the handler, so a faulted request has changed nothing.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulators.avnology.errors import FORBIDDEN, RATE_LIMITED, UNAUTHENTICATED, VALIDATION, ApiError, invalid
from emulators.avnology.ratelimit import RateLimiter
from emulators.avnology.runtime import EmulatorRuntime
from emulators.avnology.tenant import Tenant

# Query parameter names that would carry a credential; the docs say a key must never appear in a URL.
_CREDENTIAL_PARAMS = frozenset({"api_key", "apikey", "access_token", "key", "token"})


def runtime_of(request: Request) -> EmulatorRuntime:
    return request.app.state.emulator  # type: ignore[no-any-return]


async def admit(request: Request, scope: str) -> Tenant:
    """Authenticate an admin API call and return its tenant, or raise the error the caller gets."""
    rt = runtime_of(request)
    await rt.faults.delay()
    _refuse_key_in_url(request, rt)
    key = _bearer_key(request)
    found = rt.settings.lookup(key) if key else None
    if key is None or found is None:
        rt.unauthenticated_requests += 1
        raise ApiError(401, UNAUTHENTICATED, "missing or unknown API key; send it as 'Authorization: Bearer <api_key>'")
    tenant_name, scopes = found
    tenant = rt.tenants[tenant_name]
    request.state.tenant = tenant
    _take_token(request, rt.key_limiter, key, tenant)
    if scope not in scopes:
        raise ApiError(403, FORBIDDEN, f"the API key lacks the scope {scope}", {"required_scope": scope})
    await _fault_stage(rt, tenant)
    return tenant


async def admit_public(request: Request) -> Tenant:
    """Admit a call to a public endpoint (the recovery flow): no key needed, throttled per client address.

    A bearer key, when sent, picks the tenant (so one emulator serves both tenants' public flows); without
    one the request goes to ``settings.public_tenant``. An unknown key is still a 401: it is a
    misconfigured client, not an anonymous one.
    """
    rt = runtime_of(request)
    await rt.faults.delay()
    _refuse_key_in_url(request, rt)
    key = _bearer_key(request)
    if key is None:
        tenant = rt.tenants[rt.settings.public_tenant]
    else:
        found = rt.settings.lookup(key)
        if found is None:
            rt.unauthenticated_requests += 1
            raise ApiError(401, UNAUTHENTICATED, "unknown API key")
        tenant = rt.tenants[found[0]]
    request.state.tenant = tenant
    client = request.client.host if request.client else "unknown"
    _take_token(request, rt.public_limiter, f"{tenant.name}:{client}", tenant)
    await _fault_stage(rt, tenant)
    return tenant


def _bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value


def _refuse_key_in_url(request: Request, rt: EmulatorRuntime) -> None:
    for name, value in request.query_params.multi_items():
        if name.lower() in _CREDENTIAL_PARAMS or rt.settings.is_known_key(value):
            rt.unauthenticated_requests += 1
            raise ApiError(
                401,
                UNAUTHENTICATED,
                "API keys are never accepted in the URL; send 'Authorization: Bearer <api_key>' instead",
                {"reason": "credential_in_url"},
            )


def _take_token(request: Request, limiter: RateLimiter, bucket: str, tenant: Tenant) -> None:
    decision = limiter.check(bucket)
    if decision is None:
        return
    if not decision.allowed:
        tenant.counters.rate_limited += 1
        raise ApiError(
            429,
            RATE_LIMITED,
            f"rate limit exceeded; retry after {decision.retry_after} s",
            {"retry_after": decision.retry_after},
            headers=decision.headers(),
        )
    request.state.extra_headers = decision.headers()


async def _fault_stage(rt: EmulatorRuntime, tenant: Tenant) -> None:
    try:
        await rt.faults.maybe_fail()
    except ApiError:
        tenant.counters.faults_injected += 1
        raise


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; malformed JSON is the documented 400 AVNOLOGY_AUTH_902."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise invalid("body", "required", "a JSON object request body is required")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            VALIDATION,
            "the request body must be sent with Content-Type: application/json",
            {"field": "Content-Type", "reason": "unsupported_media_type"},
        )
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        raise invalid("body", "malformed_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("body", "not_an_object", "the request body must be a JSON object")
    return data


def reject_unknown(data: dict[str, Any] | Any, allowed: frozenset[str] | set[str], what: str) -> None:
    for name in data:
        if name not in allowed:
            raise invalid(name, "unknown_field", f"{what} has no field {name!r}")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def weak_etag(tag: str) -> str:
    return f'W/"{tag}"'


class RequestEnvelope:
    """Pure ASGI middleware: gives every request an id, adds rate-limit headers, and counts API requests.

    Pure ASGI (not BaseHTTPMiddleware) because it sits on every request of a 250 req/s import.
    """

    def __init__(self, app: ASGIApp, runtime: EmulatorRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id = "req_" + os.urandom(8).hex()
        state["request_id"] = request_id
        statuses: list[int] = []

        async def send_with_envelope(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                for name, value in (state.get("extra_headers") or {}).items():
                    headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_envelope)
        finally:
            if statuses and scope["path"].startswith("/v1/"):
                self._count(scope, state, statuses[0])

    def _count(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        tenant = state.get("tenant")
        if tenant is None:
            return
        route = scope.get("route")
        label = f"{scope['method']} {getattr(route, 'path', scope['path'])}"
        counters = tenant.counters
        counters.requests_total += 1
        counters.by_route[label] += 1
        counters.by_status[str(status)] += 1
