"""Avnology-style errors: one exception type, one JSON body shape.

Handlers raise :class:`ApiError`; one exception handler renders it as
``{"error": {"code", "message", "request_id", "details"}}``, the shape the project's contract assumes, so the
client's error parsing is exercised against exactly that.
"""

from __future__ import annotations

from typing import Any

UNAUTHENTICATED = "AVNOLOGY_AUTH_005"
FORBIDDEN = "AVNOLOGY_AUTH_100"
NOT_FOUND = "AVNOLOGY_AUTH_901"
VALIDATION = "AVNOLOGY_AUTH_902"
CONFLICT = "AVNOLOGY_AUTH_903"
RATE_LIMITED = "AVNOLOGY_AUTH_021"
ORG_NOT_FOUND = "AVNOLOGY_AUTH_300"
MEMBER_EXISTS = "AVNOLOGY_AUTH_301"
# The docs list no code for server errors; this one is the emulator's own and marks an injected fault.
INJECTED_FAULT = "EMULATOR_INJECTED_FAULT"


class ApiError(Exception):
    """An error response: HTTP status, Avnology code, a message safe to show, and structured details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
            "details": self.details,
        }
        if "retry_after" in self.details:
            error["retry_after"] = self.details["retry_after"]
        return {"error": error}


def invalid(field: str, reason: str, message: str, **extra: Any) -> ApiError:
    """400 AVNOLOGY_AUTH_902 naming the offending field."""
    return ApiError(400, VALIDATION, message, {"field": field, "reason": reason, **extra})


def conflict(message: str, **details: Any) -> ApiError:
    return ApiError(409, CONFLICT, message, details)


def not_found(message: str, **details: Any) -> ApiError:
    return ApiError(404, NOT_FOUND, message, details)
