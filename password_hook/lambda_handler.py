"""The hook as an AWS Lambda function behind API Gateway (HTTP API, payload 2.0) or a function URL.

Handler: ``password_hook.lambda_handler.handler``. The hook is built once per execution environment, from the
environment variables, so its replay cache and rate limits last as long as that environment (README.md says
what that means for replays across concurrent environments).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from password_hook.core import HookRequest, PasswordHook, error_response
from password_hook.settings import HookSettings

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]

_hook: PasswordHook | None = None


def make_handler(settings: HookSettings | None = None, *, hook: PasswordHook | None = None) -> LambdaHandler:
    """A handler around one hook; ``settings=None`` reads the environment."""
    bound = hook or PasswordHook(settings or HookSettings.from_env())

    def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        return _handle(bound, event)

    return handle


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point: the hook is built on the first (cold) invocation and reused after."""
    global _hook
    if _hook is None:
        _hook = PasswordHook(HookSettings.from_env())
    return _handle(_hook, event)


def _handle(hook: PasswordHook, event: dict[str, Any]) -> dict[str, Any]:
    http = event.get("requestContext", {}).get("http", {})
    method = http.get("method") or event.get("httpMethod") or ""
    if method.upper() != "POST":
        result = error_response(405, "method_not_allowed", "the password hook accepts POST only")
        return _response(result.status_code, result.json_bytes(), {**result.headers, "Allow": "POST"})
    try:
        body = _body(event)
    except ValueError:
        result = error_response(400, "invalid_body", "the event body is not valid base64", field="body")
    else:
        headers = {str(k): str(v) for k, v in (event.get("headers") or {}).items()}
        source_ip = http.get("sourceIp") or event.get("requestContext", {}).get("identity", {}).get("sourceIp")
        result = hook.handle(HookRequest(body, headers, source_ip))
    return _response(result.status_code, result.json_bytes(), result.headers)


def _body(event: dict[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error as exc:
            raise ValueError("body is not base64") from exc
    return raw.encode("utf-8")


def _response(status: int, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **headers},
        "body": body.decode(),
        "isBase64Encoded": False,
    }
