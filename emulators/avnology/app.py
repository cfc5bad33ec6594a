"""The Avnology ID emulator as an ASGI app: ``create_app(settings)``.

Section 3 of avnology-id-api.md is the specification; README.md in this folder says what is not modelled.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from emulators.avnology import admin, identities, organizations, permissions, recovery
from emulators.avnology.errors import NOT_FOUND, VALIDATION, ApiError
from emulators.avnology.gate import RequestEnvelope, json_response
from emulators.avnology.runtime import EmulatorRuntime
from emulators.avnology.settings import EmulatorSettings


def create_app(settings: EmulatorSettings) -> FastAPI:
    """A fresh emulator with empty tenants; every app has its own state, so tests never share any."""
    runtime = EmulatorRuntime(settings)
    app = FastAPI(title="Avnology ID emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = runtime
    for module in (identities, organizations, permissions, recovery, admin):
        app.include_router(module.router)
    app.add_middleware(RequestEnvelope, runtime=runtime)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = NOT_FOUND if exc.status_code == 404 else VALIDATION
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return _error_response(request, ApiError(exc.status_code, code, message, headers=dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request, ApiError(400, VALIDATION, "the request is not valid", {"reason": "invalid"}))

    return app


def _error_response(request: Request, exc: ApiError) -> Response:
    request_id = getattr(request.state, "request_id", "")
    return json_response(exc.status, exc.body(request_id), exc.headers or None)
