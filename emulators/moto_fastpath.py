"""Benchmark aid: make moto's ListUsers cheap enough that the modelled quota, not moto's CPU, limits a benchmark.

At 30,000 users one ListUsers page costs moto ~50 ms of CPU: it scans the whole pool to apply the filter, then
runs its generic response serializer over 60 users. A single moto process could then serve barely 20 pages/s,
below the 30 RPS quota the benchmark models, so it would measure moto. Two patches, both answering exactly what
moto answers (tests/test_moto_fastpath.py compares them page by page):

- ``sub ^= "…"`` / ``sub = "…"`` filters are answered from a per-pool index by first hex digit (other filters
  fall through to moto's scan). The index is rebuilt when the pool gains or loses users; a sub never changes.
- The ListUsers response is written with ``json.dumps`` in the output shape moto's serializer produces (same
  members, timestamps truncated to milliseconds the same way) instead of the generic serializer.

Only for moto running in this process (``MotoServer``, or ``python -m emulators.cognito_seed --serve``).
"""

from __future__ import annotations

import calendar
import json
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

_LOCK = threading.Lock()
# id(pool) -> (fingerprint of its user set, users by first sub digit, filtered lists by (op, value))
_INDEX: dict[int, tuple[tuple[int, str | None, int], dict[str, list[Any]], dict[tuple[str, str], list[Any]]]] = {}
_FILTER = re.compile(r"([\w:]+)\s*(=|\^=)\s*\"(.*)\"")
_LIST_USERS_MEMBERS = (
    "Username",
    "Attributes",
    "UserCreateDate",
    "UserLastModifiedDate",
    "Enabled",
    "UserStatus",
    "MFAOptions",
)


def _filtered(user_pool: Any, op: str, value: str) -> list[Any]:
    users = user_pool.users
    last = next(reversed(users), None)
    fingerprint = (len(users), last, id(users[last]) if last is not None else 0)
    with _LOCK:
        cached = _INDEX.get(id(user_pool))
        if cached is None or cached[0] != fingerprint:
            buckets: dict[str, list[Any]] = {}
            for user in users.values():
                buckets.setdefault(user.attribute_lookup.get("sub", "")[:1], []).append(user)
            cached = (fingerprint, buckets, {})
            _INDEX[id(user_pool)] = cached
        _, buckets, results = cached
        hit = results.get((op, value))
        if hit is None:
            candidates = buckets.get(value[:1], [])
            if op == "=":
                hit = [u for u in candidates if u.attribute_lookup.get("sub") == value]
            else:
                hit = [u for u in candidates if u.attribute_lookup.get("sub", "").startswith(value)]
            results[(op, value)] = hit
        return hit


def _timestamp(value: datetime) -> int | float:
    """moto's serializer's rule: seconds since the epoch, truncated to milliseconds."""
    base = calendar.timegm(value.timetuple())
    return base + (value.microsecond // 1000) / 1000.0 if value.microsecond else base


def _user_json(user: Any, attributes_to_get: list[str] | None) -> dict[str, Any]:
    raw = user.to_json(extended=True, attributes_to_get=attributes_to_get)
    out = {k: raw[k] for k in _LIST_USERS_MEMBERS if k in raw}
    out["UserStatus"] = getattr(out["UserStatus"], "value", out["UserStatus"])
    out["UserCreateDate"] = _timestamp(out["UserCreateDate"])
    out["UserLastModifiedDate"] = _timestamp(out["UserLastModifiedDate"])
    return out


def install_list_users_fastpath() -> Callable[[], None]:
    """Patch moto's ListUsers (backend filter and response) in this process; returns a function that undoes it."""
    from moto.cognitoidp.models import CognitoIdpBackend
    from moto.cognitoidp.responses import CognitoIdpResponse
    from moto.cognitoidp.utils import PAGINATION_MODEL
    from moto.utilities.paginator import paginate

    backend_before, response_before = CognitoIdpBackend.list_users, CognitoIdpResponse.list_users
    if getattr(backend_before, "_fastpath", False):
        return lambda: None
    scan = backend_before.__wrapped__  # type: ignore[attr-defined]

    def list_users(self: Any, user_pool_id: str, filt: str) -> list[Any]:
        match = _FILTER.match(filt or "")
        if not match or match.group(1) != "sub" or not match.group(3):
            return scan(self, user_pool_id, filt)
        _, op, value = match.groups()
        return _filtered(self.describe_user_pool(user_pool_id), op, value)

    def list_users_response(self: Any) -> str:
        users, token = self.backend.list_users(
            self._get_param("UserPoolId"),
            self._get_param("Filter"),
            limit=self._get_param("Limit"),
            pagination_token=self._get_param("PaginationToken"),
        )
        attributes_to_get = self._get_param("AttributesToGet")
        body: dict[str, Any] = {"Users": [_user_json(u, attributes_to_get) for u in users]}
        if token:
            body["PaginationToken"] = str(token)
        return json.dumps(body)

    patched = paginate(pagination_model=PAGINATION_MODEL)(list_users)
    patched._fastpath = True  # type: ignore[attr-defined]
    CognitoIdpBackend.list_users = patched  # type: ignore[method-assign]
    CognitoIdpResponse.list_users = list_users_response  # type: ignore[method-assign,assignment]

    def uninstall() -> None:
        CognitoIdpBackend.list_users = backend_before  # type: ignore[method-assign]
        CognitoIdpResponse.list_users = response_before  # type: ignore[method-assign]
        with _LOCK:
            _INDEX.clear()

    return uninstall
