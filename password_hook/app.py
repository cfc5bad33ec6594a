"""The hook as an ASGI app (FastAPI): ``uvicorn --factory password_hook.app:app_from_env`` or ``python -m password_hook``.

The route reads the raw body itself: the signature covers its exact bytes, and a pydantic body model would
echo the password back in a 422.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from password_hook.core import HookRequest, HookResponse, PasswordHook, error_response
from password_hook.settings import HookSettings

HOOK_PATH = "/password-migration"


def create_app(settings: HookSettings, *, hook: PasswordHook | None = None) -> FastAPI:
    """An app around one :class:`PasswordHook` (its replay cache and rate limits live as long as the process)."""
    hook = hook or PasswordHook(settings)
    app = FastAPI(title="Password migration hook", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hook = hook

    @app.post(HOOK_PATH)
    async def password_migration(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                # Stop reading: an oversized body is refused without buffering all of it.
                return _json(error_response(413, "body_too_large", f"the body exceeds {settings.max_body_bytes} bytes"))
        peer = request.client.host if request.client else None
        result = await run_in_threadpool(hook.handle, HookRequest(bytes(body), dict(request.headers), peer))
        return _json(result)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness only: it does not call Cognito, so probes never spend the quota slice."""
        return {"status": "ok"}

    return app


def app_from_env() -> FastAPI:
    """The factory for ``uvicorn --factory``; settings come from the environment."""
    return create_app(HookSettings.from_env())


def _json(result: HookResponse) -> Response:
    return Response(
        result.json_bytes(), status_code=result.status_code, headers=result.headers, media_type="application/json"
    )
