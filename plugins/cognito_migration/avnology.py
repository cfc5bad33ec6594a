"""Avnology ID: the one module that knows its REST API, and the contract this project assumes for its gaps.

Written against the documented API (docs-id.avnology.net, summarised in ``docs/avnology-id-api.md``), not
against the local emulator. Where the docs are silent, the assumption lives here and nowhere else, so a tenant
that behaves differently changes this file only:

- **Idempotency.** Every real create carries ``Idempotency-Key`` = UUIDv5(:data:`IDEMPOTENCY_NAMESPACE`,
  ``"{user_pool_id}:{sub}"``): stable across task retries and whole re-runs, so retrying a create after a
  timeout or a 5xx cannot make a second identity. ``validate_only`` requests never carry it (a dry run must not
  bind the key to a body that the real create will not send).
- **Provenance.** The identity's ``admin_metadata.cognito`` holds ``user_pool_id`` and ``sub`` (there is no
  REST ``external_id``). A ``409`` on the email is resolved by one lookup ``filter=email = "…"``: the identity
  is *ours* (adopted) when its provenance names the same pool and sub, otherwise it is a conflict.
- **Errors.** ``{"error": {"code", "message", "request_id", "details"}}``, parsed defensively (a flat body or
  a non-JSON body still gives a typed exception, with the raw body kept).
- **Rate limits.** A ``429``'s ``Retry-After`` (seconds or an HTTP date) is waited out before that request is
  retried; the client's own token bucket (``rate_limit_rps``) keeps 429s rare in the first place.
- **Roles.** Tuples from :func:`cognito_migration.roles.role_tuple`; ``409`` on a grant means already granted.

The API key is a secret: it goes only into the ``Authorization`` header (never a URL), and never into a log
line, an exception or a ``repr`` (any echo of it in a response body is redacted before it is kept).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cached_property
from typing import Any
from urllib.parse import quote

import httpx
from airflow.sdk import BaseHook

from cognito_migration import config
from cognito_migration.ratelimit import RateLimiter
from cognito_migration.roles import ROLE_NAMESPACE, ROLE_RELATION, role_tuple

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api-id.avnology.net"

# Fixed forever: changing it would give every user a new key and defeat replay protection across re-runs.
# (uuid5(NAMESPACE_URL, "https://api-id.avnology.net/cognito-migration/idempotency"), written out.)
IDEMPOTENCY_NAMESPACE = uuid.UUID("8e287d25-3c94-5577-8b7b-b1ce075f9ede")

# Documented error codes (each prefixed AVNOLOGY_AUTH_).
UNAUTHENTICATED = "AVNOLOGY_AUTH_005"
FORBIDDEN = "AVNOLOGY_AUTH_100"
NOT_FOUND = "AVNOLOGY_AUTH_901"
VALIDATION = "AVNOLOGY_AUTH_902"
CONFLICT = "AVNOLOGY_AUTH_903"
RATE_LIMITED = "AVNOLOGY_AUTH_021"
ORG_NOT_FOUND = "AVNOLOGY_AUTH_300"
MEMBER_EXISTS = "AVNOLOGY_AUTH_301"

_RAW_BODY_LIMIT = 2000
_REDACTED = "[redacted]"


def idempotency_key(user_pool_id: str, sub: str) -> str:
    """The ``Idempotency-Key`` of one Cognito user's create: the same on every retry and every re-run."""
    if not user_pool_id or not sub:
        raise ValueError("an idempotency key needs both the user pool id and the sub")
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{user_pool_id}:{sub}"))


def cognito_provenance(identity: Mapping[str, Any]) -> Mapping[str, Any]:
    """``admin_metadata.cognito`` of an identity, or ``{}`` when it has none (not created by this pipeline)."""
    meta = identity.get("admin_metadata")
    cognito = meta.get("cognito") if isinstance(meta, Mapping) else None
    return cognito if isinstance(cognito, Mapping) else {}


def is_ours(identity: Mapping[str, Any], user_pool_id: str, sub: str) -> bool:
    """Whether an existing identity is this Cognito user's, by the provenance we write on create."""
    cognito = cognito_provenance(identity)
    return cognito.get("sub") == sub and cognito.get("user_pool_id") == user_pool_id


# --- errors -------------------------------------------------------------------------------------------------


class AvnologyError(Exception):
    """An Avnology API call failed. Carries what a person needs to chase it with the vendor.

    ``status`` is None when no HTTP answer arrived (transport error or timeout). ``raw_body`` is the response
    as received (truncated, key redacted), for bodies that do not follow the documented shape.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        raw_body: str = "",
        method: str = "",
        path: str = "",
        attempts: int = 1,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.details: dict[str, Any] = dict(details or {})
        self.raw_body = raw_body
        self.method = method
        self.path = path
        self.attempts = attempts
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.method} {self.path}".strip() or "Avnology API"
        what = " ".join(str(p) for p in (self.status, self.code) if p) or "no response"
        text = f"{where} → {what}: {self.message}"
        extras = []
        if self.details:
            extras.append(f"details={self.details}")
        if self.request_id:
            extras.append(f"request_id={self.request_id}")
        if self.attempts > 1:
            extras.append(f"after {self.attempts} attempts")
        return text + (f" ({', '.join(extras)})" if extras else "")

    @property
    def field(self) -> str | None:
        value = self.details.get("field")
        return value if isinstance(value, str) else None

    @property
    def reason(self) -> str | None:
        value = self.details.get("reason")
        return value if isinstance(value, str) else None

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed (the task should fail and retry, not give up on the user)."""
        return False


class AvnologyValidationError(AvnologyError):
    """400 (AVNOLOGY_AUTH_902): the request broke a documented rule; ``field`` names it when the API does."""


class AvnologyAuthError(AvnologyError):
    """401 (AVNOLOGY_AUTH_005) or 403 (AVNOLOGY_AUTH_100): the key is wrong, revoked or lacks a scope."""


class AvnologyNotFound(AvnologyError):
    """404: AVNOLOGY_AUTH_901 (identity) or AVNOLOGY_AUTH_300 (organization)."""


class AvnologyConflict(AvnologyError):
    """409 (AVNOLOGY_AUTH_903 / _301): duplicate email or name, existing tuple, stale ETag, reused key."""


class AvnologyRateLimited(AvnologyError):
    """429 after the client's own waiting gave up; ``retry_after`` is the server's last advice in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)

    @property
    def retryable(self) -> bool:
        return True


class AvnologyServerError(AvnologyError):
    """5xx that persisted through the retries."""

    @property
    def retryable(self) -> bool:
        return True


class AvnologyTransportError(AvnologyError):
    """No HTTP answer: connection refused or reset, DNS, TLS, or a timeout, through all the retries."""

    @property
    def retryable(self) -> bool:
        return True


def error_from_response(
    response: httpx.Response, *, redact: Callable[[str], str] = lambda s: s, attempts: int = 1
) -> AvnologyError:
    """A typed exception from an error response, whatever its body looks like.

    Accepts the documented ``{"error": {...}}`` envelope, a flat ``{"code", "message", ...}`` body, and
    non-JSON bodies (a proxy's HTML 502); the request id falls back to the ``X-Request-Id`` header.
    """
    raw = redact(response.text[:_RAW_BODY_LIMIT]) if response.content else ""
    payload: Any = None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    body: Mapping[str, Any] = {}
    if isinstance(payload, Mapping):
        inner = payload.get("error")
        body = inner if isinstance(inner, Mapping) else payload
    code = body.get("code") if isinstance(body.get("code"), str) else None
    message = body.get("message") if isinstance(body.get("message"), str) else None
    if message is None and isinstance(payload, Mapping) and isinstance(payload.get("error"), str):
        message = payload["error"]  # {"error": "text"}
    details = body.get("details") if isinstance(body.get("details"), Mapping) else {}
    request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
    request_id = request_id or response.headers.get("x-request-id")
    status = response.status_code
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "details": details,
        "raw_body": raw,
        "method": response.request.method if response.request else "",
        "path": response.request.url.path if response.request else "",
        "attempts": attempts,
    }
    text = redact(message or response.reason_phrase or "error")
    if status == 429:
        retry_after = _retry_after_seconds(response, body)
        return AvnologyRateLimited(text, retry_after=retry_after, **kwargs)
    cls: type[AvnologyError]
    if status in (401, 403):
        cls = AvnologyAuthError
    elif status == 404:
        cls = AvnologyNotFound
    elif status == 409:
        cls = AvnologyConflict
    elif 400 <= status < 500:
        cls = AvnologyValidationError
    elif status >= 500:
        cls = AvnologyServerError
    else:
        cls = AvnologyError
    return cls(text, **kwargs)


def _retry_after_seconds(response: httpx.Response, body: Mapping[str, Any] | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; else the body's ``retry_after``."""
    header = response.headers.get("retry-after")
    if header:
        header = header.strip()
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
    for source in (body or {}, (body or {}).get("details") or {}):
        value = source.get("retry_after") if isinstance(source, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return max(0.0, float(value))
    return None


class RetryScope(Enum):
    """Which failures a request may be retried on, by what a repeat could do."""

    # Repeating cannot duplicate anything: reads, creates with an Idempotency-Key, grants (409 = done).
    SAFE = "safe"
    # No idempotency: retry only when the request certainly was not processed (429, or it never connected).
    UNPROCESSED = "unprocessed"
    # Not even on 429: the public recovery submit, whose per-email cooldown also answers 429 (a repeat
    # after the wait would send a second code); the caller decides.
    CONNECT_ONLY = "connect_only"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8  # per request, for 5xx / transport errors / timeouts
    max_rate_limited: int = 30  # 429s honoured per request before giving up
    backoff_base_s: float = 0.25
    backoff_max_s: float = 10.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is not waited out inside one task

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff: spreads retries of many workers that failed together."""
        return random.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1))))


_RETRY_STATUSES = frozenset({502, 503, 504})
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


# --- the client -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateOutcome:
    """What one create (or validate_only create) of a Cognito user came to, after resolving a 409.

    ``kind`` is ``created`` (or would be, for validate_only), ``adopted`` (an identity of ours already
    exists: counted as already present), ``conflict`` or ``invalid`` (the target refuses this user, with a
    reason code), or ``failed`` (nothing decided: retryable, or an unexpected answer).
    """

    kind: str
    reason: str = ""
    avnology_id: str | None = None
    request_id: str | None = None
    detail: str = ""
    retryable: bool = False


_REASON_SAFE = re.compile(r"[^a-z0-9_]+")


def _reason_code(prefix: str, name: str | None) -> str:
    cleaned = _REASON_SAFE.sub("_", (name or "").lower()).strip("_")[:40]
    return f"{prefix}_{cleaned}" if cleaned else prefix


class AvnologyClient:
    """A thread-safe client for one tenant: bounded concurrency, client-side rate limit, safe retries.

    ``max_concurrency`` bounds the requests in flight (a semaphore plus the connection pool), whatever number
    of threads call in; ``rate_limit_rps`` paces them. Build it from an Airflow connection with
    :class:`AvnologyHook`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_concurrency: int = 8,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | None = None,
        retry: RetryPolicy | None = None,
        label: str = "",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip() or any(c.isspace() for c in api_key):
            raise ValueError(f"Avnology client {label or base_url}: the API key is empty or contains whitespace")
        base_url = base_url.rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base_url):
            raise ValueError(
                f"Avnology base URL must start with https:// (or http:// for a local emulator), got {base_url!r}"
            )
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if not (isinstance(max_concurrency, int) and 1 <= max_concurrency <= 256):
            raise ValueError("max_concurrency must be an integer from 1 to 256")
        self.base_url = base_url
        self.label = label or base_url
        self.timeout = float(timeout)
        self.max_concurrency = max_concurrency
        self.retry = retry or RetryPolicy()
        if rate_limit_rps is not None and rate_limit_rps < 0:
            raise ValueError("rate_limit_rps must be positive (or 0/None for no client-side limit)")
        # Keeps the client under the tenant's quota, so that a 429 stays the exception (a burst the server saw).
        self.rate_limiter = (
            RateLimiter(rate_limit_rps, rate_limit_burst or max(1, math.ceil(rate_limit_rps / 20)))
            if rate_limit_rps
            else None
        )
        self._api_key = api_key
        self._in_flight = threading.BoundedSemaphore(max_concurrency)
        self._http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            headers={"Accept": "application/json", "User-Agent": "cognito-migration/0.1"},
            transport=transport,
        )

    def __repr__(self) -> str:
        return (
            f"AvnologyClient(label={self.label!r}, base_url={self.base_url!r}, api_key=<hidden>, "
            f"max_concurrency={self.max_concurrency}, rate_limit_rps={self.rate_limiter.rate_per_s if self.rate_limiter else None})"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AvnologyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def redact(self, text: str) -> str:
        """Remove the key from text that came back from the network or an exception."""
        return text.replace(self._api_key, _REDACTED) if self._api_key in text else text

    # -- transport --------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        scope: RetryScope = RetryScope.SAFE,
        ok: Sequence[int] = (200, 201, 204),
    ) -> httpx.Response:
        """One API call with pacing, bounded concurrency and retries; raises a typed :class:`AvnologyError`."""
        all_headers = {"Authorization": f"Bearer {self._api_key}", **(headers or {})}
        attempts = 0
        rate_limited = 0
        while True:
            attempts += 1
            if self.rate_limiter is not None:
                self.rate_limiter.acquire()
            try:
                with self._in_flight:
                    response = self._http.request(method, path, json=json, params=params, headers=all_headers)
            except httpx.TransportError as exc:
                can_retry = scope is RetryScope.SAFE or isinstance(exc, _CONNECT_ERRORS)
                if can_retry and attempts < self.retry.max_attempts:
                    self._sleep_before_retry(
                        method, path, f"{type(exc).__name__}", self.retry.backoff(attempts), attempts
                    )
                    continue
                raise AvnologyTransportError(
                    f"no answer from {self.label}: {type(exc).__name__}: {self.redact(str(exc)) or 'timed out'}",
                    method=method,
                    path=path,
                    attempts=attempts,
                ) from None
            if response.status_code in ok:
                return response
            status = response.status_code
            if status == 429 and scope is not RetryScope.CONNECT_ONLY:
                wait = _retry_after_seconds(response)
                wait = self.retry.backoff(attempts) if wait is None else wait
                rate_limited += 1
                if wait <= self.retry.max_retry_after_s and rate_limited <= self.retry.max_rate_limited:
                    # Only the refused request waits: pausing every worker for a whole-second Retry-After
                    # would cost a paced client a second of its quota for a burst the server saw briefly.
                    log.info("%s %s: 429 rate limited; retrying after Retry-After %.2f s", method, path, wait)
                    time.sleep(wait + random.uniform(0.0, 0.1))
                    attempts -= 1  # honoured waits do not use up the error budget
                    continue
            elif status in _RETRY_STATUSES and scope is RetryScope.SAFE and attempts < self.retry.max_attempts:
                self._sleep_before_retry(method, path, f"HTTP {status}", self.retry.backoff(attempts), attempts)
                continue
            raise error_from_response(response, redact=self.redact, attempts=attempts + rate_limited)

    def _sleep_before_retry(self, method: str, path: str, why: str, wait: float, attempt: int) -> None:
        log.warning("%s %s: %s; retry %d/%d in %.2f s", method, path, why, attempt, self.retry.max_attempts - 1, wait)
        time.sleep(wait)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise AvnologyError(
                "the API answered with a body that is not a JSON object",
                status=response.status_code,
                request_id=response.headers.get("x-request-id"),
                raw_body=self.redact(response.text[:_RAW_BODY_LIMIT]),
                method=response.request.method,
                path=response.request.url.path,
            )
        return data

    # -- documented endpoints ---------------------------------------------------------------------------

    def check_auth(self, *, write: bool = False) -> dict[str, Any]:
        """Prove the key works (preflight): list one identity; with ``write``, also a ``validate_only`` create.

        The validate_only create needs ``admin:users:write`` and creates nothing, so a read-only key fails here
        instead of at the first production write. Any answer past authorisation (201, 400, 409) proves it.
        """
        self.request("GET", "/v1/identities", params={"page_size": 1})
        if write:
            probe = {"identity": {"email": "preflight-probe@example.com"}, "validate_only": True}
            with contextlib.suppress(AvnologyValidationError, AvnologyConflict):
                self.request("POST", "/v1/identities", json=probe)
        return {"base_url": self.base_url, "read": True, "write": write}

    def create_identity(
        self,
        identity: Mapping[str, Any],
        *,
        idempotency_key: str | None,
        validate_only: bool = False,
        initial_password: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/identities``. A real create must carry its idempotency key; a validate_only one never does."""
        body: dict[str, Any] = {"identity": dict(identity)}
        if initial_password is not None:
            body["initial_password"] = initial_password
        headers: dict[str, str] = {}
        if validate_only:
            body["validate_only"] = True
        else:
            if not idempotency_key:
                raise ValueError("a real create must carry an Idempotency-Key (see idempotency_key())")
            headers["Idempotency-Key"] = idempotency_key
        response = self.request("POST", "/v1/identities", json=body, headers=headers, ok=(200, 201))
        return self._json(response)

    def list_identities(
        self,
        *,
        filter: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        order_by: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"page_size": max(1, min(page_size, 100))}
        if filter:
            params["filter"] = filter
        if page_token:
            params["page_token"] = page_token
        if order_by:
            params["order_by"] = order_by
        return self._json(self.request("GET", "/v1/identities", params=params))

    def iter_identities(self, *, filter: str | None = None, page_size: int = 100) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = self.list_identities(filter=filter, page_size=page_size, page_token=token)
            yield from page.get("identities") or []
            token = page.get("next_page_token") or None
            if not token:
                return

    def find_identity_by_email(self, email_address: str) -> dict[str, Any] | None:
        """The identity with this email (emails are unique per tenant), or None. Only used to resolve a 409."""
        escaped = email_address.replace("\\", "\\\\").replace('"', '\\"')
        page = self.list_identities(filter=f'email = "{escaped}"', page_size=2)
        for identity in page.get("identities") or []:
            if isinstance(identity, dict) and str(identity.get("email", "")).casefold() == email_address.casefold():
                return identity
        return None

    def get_identity(self, identity_id: str) -> dict[str, Any]:
        """``GET /v1/identities/{id}``; the identity's ``etag`` comes from the body or the ``ETag`` header."""
        response = self.request("GET", f"/v1/identities/{quote(identity_id, safe='')}")
        identity = self._json(response)
        header = response.headers.get("etag")
        if header and not identity.get("etag"):
            identity["etag"] = _bare_etag(header)
        return identity

    def patch_identity(
        self,
        identity_id: str,
        identity: Mapping[str, Any],
        update_mask: Sequence[str] | str,
        etag: str | None = None,
    ) -> dict[str, Any]:
        """``PATCH /v1/identities/{id}``: only the fields in ``update_mask`` change; ``etag`` guards the write
        (a stale one raises :class:`AvnologyConflict`)."""
        mask = update_mask if isinstance(update_mask, str) else ",".join(update_mask)
        if not mask:
            raise ValueError("update_mask is required: name the fields to change")
        headers = {"If-Match": f'W/"{_bare_etag(etag)}"'} if etag else {}
        response = self.request(
            "PATCH",
            f"/v1/identities/{quote(identity_id, safe='')}",
            json={"identity": dict(identity), "update_mask": mask},
            headers=headers,
        )
        return self._json(response)

    def delete_identity(self, identity_id: str) -> None:
        """``DELETE /v1/identities/{id}``, the documented default: a soft delete (state ``scheduled_deletion``,
        purged after 30 days, its email stays taken). Idempotent, so retried like a read."""
        self.request("DELETE", f"/v1/identities/{quote(identity_id, safe='')}", ok=(200, 204))

    def create_organization(
        self, name: str, *, display_name: str | None = None, slug: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/organizations``. Not idempotent (no documented key or lookup): retried only when the
        request surely was not processed. A duplicate name raises :class:`AvnologyConflict`."""
        body: dict[str, Any] = {"name": name}
        if display_name:
            body["display_name"] = display_name
        if slug:
            body["slug"] = slug
        return self._json(self.request("POST", "/v1/organizations", json=body, scope=RetryScope.UNPROCESSED))

    def grant_permission(self, relation_tuple: Mapping[str, str]) -> bool:
        """``POST /v1/permissions``: True when granted now, False when the tuple already existed (409)."""
        try:
            self.request("POST", "/v1/permissions", json=dict(relation_tuple))
        except AvnologyConflict:
            return False
        return True

    def grant_roles(
        self, usr_id: str, groups: Sequence[str], *, namespace: str = ROLE_NAMESPACE, relation: str = ROLE_RELATION
    ) -> int:
        """Grant the role tuple of each Cognito group to identity ``usr_id``; returns how many were new."""
        return sum(self.grant_permission(role_tuple(group, usr_id, namespace, relation)) for group in groups)

    def start_recovery(self, email_address: str) -> dict[str, Any]:
        """The public recovery flow: create a flow, submit the email with ``method: code``; Avnology emails a code.

        The submit is not retried on 429 (the flow's per-email throttle): the caller gets
        :class:`AvnologyRateLimited` with ``retry_after`` and decides, so nobody gets two codes by accident.
        """
        flow = self._json(self.request("GET", "/v1/flows/recovery"))
        flow_id = flow.get("id")
        if not isinstance(flow_id, str) or not flow_id:
            raise AvnologyError("the recovery flow answer has no id", method="GET", path="/v1/flows/recovery")
        body: dict[str, Any] = {"method": "code", "email": email_address}
        if isinstance(flow.get("csrf_token"), str):
            body["csrf_token"] = flow["csrf_token"]
        response = self.request(
            "POST",
            f"/v1/flows/recovery/{quote(flow_id, safe='')}:submit",
            json=body,
            scope=RetryScope.CONNECT_ONLY,
        )
        return self._json(response)

    # -- our contract for the gaps ------------------------------------------------------------------------

    def create_or_adopt(
        self,
        identity: Mapping[str, Any],
        *,
        user_pool_id: str,
        sub: str,
        validate_only: bool = False,
    ) -> CreateOutcome:
        """Create one Cognito user's identity (or validate it), resolving a 409 as the contract says.

        Raises only :class:`AvnologyAuthError` (nothing else can succeed with this key); every per-user
        answer becomes a :class:`CreateOutcome`.
        """
        key = None if validate_only else idempotency_key(user_pool_id, sub)
        try:
            created = self.create_identity(identity, idempotency_key=key, validate_only=validate_only)
        except AvnologyAuthError:
            raise
        except AvnologyConflict as exc:
            return self._resolve_conflict(exc, identity, user_pool_id=user_pool_id, sub=sub)
        except AvnologyValidationError as exc:
            return CreateOutcome("invalid", _reason_code("invalid", exc.field), None, exc.request_id, str(exc))
        except AvnologyNotFound as exc:
            reason = (
                "organization_not_found" if exc.code == ORG_NOT_FOUND or exc.field == "organization_id" else "not_found"
            )
            return CreateOutcome("failed", reason, None, exc.request_id, str(exc))
        except AvnologyError as exc:
            return CreateOutcome("failed", _failure_reason(exc), None, exc.request_id, str(exc), exc.retryable)
        return CreateOutcome("created", "", created.get("id") if not validate_only else None)

    def _resolve_conflict(
        self, exc: AvnologyConflict, identity: Mapping[str, Any], *, user_pool_id: str, sub: str
    ) -> CreateOutcome:
        if exc.field == "username":
            return CreateOutcome("conflict", "username_taken", None, exc.request_id, str(exc))
        if exc.field != "email" and exc.reason != "idempotency_key_reused":
            return CreateOutcome(
                "conflict", _reason_code("conflict", exc.reason or exc.field), None, exc.request_id, str(exc)
            )
        found = self.find_own_identity(identity, user_pool_id=user_pool_id, sub=sub)
        if found.kind != "failed" or found.reason != "not_found":
            return found
        if exc.reason == "idempotency_key_reused":
            # Our key created an identity within the key's lifetime, under another email (changed in Cognito).
            return CreateOutcome("failed", "idempotency_key_reused", None, exc.request_id, str(exc))
        # 409 on the email, yet no identity has it: deleted in between. Trying again later will settle it.
        return CreateOutcome("failed", "conflict_unresolved", None, exc.request_id, str(exc), retryable=True)

    def find_own_identity(self, identity: Mapping[str, Any], *, user_pool_id: str, sub: str) -> CreateOutcome:
        """Look the user's email up: ``adopted`` when the identity there is ours (by its provenance),
        ``conflict``/``email_taken`` when it is someone else's, ``failed``/``not_found`` when there is none."""
        email_address = identity.get("email")
        if not isinstance(email_address, str) or not email_address:
            return CreateOutcome("failed", "no_email", None, None, "the identity has no email to look up")
        try:
            existing = self.find_identity_by_email(email_address)
        except AvnologyAuthError:
            raise
        except AvnologyError as exc:
            return CreateOutcome("failed", "lookup_failed", None, exc.request_id, str(exc), exc.retryable)
        if existing is None:
            return CreateOutcome("failed", "not_found", None, None, "no identity has this email")
        if is_ours(existing, user_pool_id, sub):
            return CreateOutcome("adopted", "adopted_existing", str(existing.get("id")))
        return CreateOutcome(
            "conflict", "email_taken", None, None, f"email held by {existing.get('id')} of another origin"
        )


def _failure_reason(exc: AvnologyError) -> str:
    if isinstance(exc, AvnologyRateLimited):
        return "rate_limited"
    if isinstance(exc, AvnologyTransportError):
        return "transport_error"
    if isinstance(exc, AvnologyServerError):
        return "server_error"
    return _reason_code("http", str(exc.status) if exc.status else "unexpected")


def _bare_etag(value: str | None) -> str:
    text = (value or "").strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


# --- the Airflow hook -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionSettings:
    """What an ``avnology`` connection holds besides the key (its password)."""

    base_url: str
    timeout: float = 30.0
    max_concurrency: int = 8
    rate_limit_rps: float | None = None
    rate_limit_burst: int | None = None
    role_namespace: str = ROLE_NAMESPACE
    role_relation: str = ROLE_RELATION
    organization_id: str | None = None

    KNOWN_EXTRA = (
        "timeout",
        "max_concurrency",
        "rate_limit_rps",
        "rate_limit_burst",
        "role_namespace",
        "role_relation",
        "organization_id",
    )

    @classmethod
    def from_connection(cls, conn_id: str, host: str | None, extra: Mapping[str, Any]) -> ConnectionSettings:
        """Parse and check a connection: a bad value names the connection and the field."""

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"Airflow connection {conn_id!r}: extra {name!r} {why}")

        host = (host or "").strip()
        if not host:
            base_url = DEFAULT_BASE_URL
        elif "://" in host:
            base_url = host
        else:
            base_url = f"https://{host}"
        unknown = sorted(set(extra) - set(cls.KNOWN_EXTRA))
        if unknown:
            raise bad(unknown[0], f"is not a setting of an Avnology connection (known: {', '.join(cls.KNOWN_EXTRA)})")

        def number(name: str, default: float | None, *, integer: bool = False, zero_is_none: bool = False) -> Any:
            value = extra.get(name, default)
            if value is None:
                return None
            try:
                parsed = int(value) if integer else float(value)
            except (TypeError, ValueError):
                raise bad(name, f"must be a number, got {value!r}") from None
            if zero_is_none and parsed == 0:
                return None
            if not math.isfinite(parsed) or parsed <= 0:
                raise bad(name, f"must be positive, got {value!r}")
            return parsed

        def text(name: str, default: str | None) -> Any:
            value = extra.get(name, default)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise bad(name, "must be a non-empty string")
            return value

        return cls(
            base_url=base_url,
            timeout=number("timeout", 30.0),
            max_concurrency=number("max_concurrency", 8, integer=True),
            rate_limit_rps=number("rate_limit_rps", None, zero_is_none=True),
            rate_limit_burst=number("rate_limit_burst", None, integer=True),
            role_namespace=text("role_namespace", ROLE_NAMESPACE),
            role_relation=text("role_relation", ROLE_RELATION),
            organization_id=text("organization_id", None),
        )


class AvnologyHook(BaseHook):
    """An Avnology ID tenant, from an Airflow connection.

    - host: ``api-id.avnology.net`` (``https://`` is assumed) or a full base URL (``http://127.0.0.1:8900``)
    - password: the API key (``ak_live_…``/``ak_test_…``)
    - extra: ``timeout`` (s), ``max_concurrency``, ``rate_limit_rps`` (per task: keep the pool's slots ×
      this under the tenant's limit), ``rate_limit_burst``, ``role_namespace``/``role_relation`` (group →
      role tuples), ``organization_id`` (pin an existing organization instead of creating one)
    """

    conn_name_attr = "avnology_conn_id"
    default_conn_name = config.AVNOLOGY_PRODUCTION_CONN_ID
    conn_type = "avnology"
    hook_name = "Avnology ID"

    def __init__(self, avnology_conn_id: str = default_conn_name, *, retry: RetryPolicy | None = None) -> None:
        super().__init__()
        self.avnology_conn_id = avnology_conn_id
        self._retry = retry

    def __repr__(self) -> str:
        return f"AvnologyHook(avnology_conn_id={self.avnology_conn_id!r})"

    @cached_property
    def _connection(self) -> tuple[ConnectionSettings, str]:
        conn = self.get_connection(self.avnology_conn_id)
        extra = conn.extra_dejson or {}
        settings = ConnectionSettings.from_connection(self.avnology_conn_id, conn.host, extra)
        key = conn.password or ""
        if not key.strip():
            raise ValueError(
                f"Airflow connection {self.avnology_conn_id!r} has no password: put the Avnology API key there"
            )
        return settings, key

    @property
    def settings(self) -> ConnectionSettings:
        return self._connection[0]

    @cached_property
    def client(self) -> AvnologyClient:
        settings, key = self._connection
        return AvnologyClient(
            settings.base_url,
            key,
            timeout=settings.timeout,
            max_concurrency=settings.max_concurrency,
            rate_limit_rps=settings.rate_limit_rps,
            rate_limit_burst=settings.rate_limit_burst,
            retry=self._retry,
            label=self.avnology_conn_id,
        )

    def api_key_for_subprocess(self) -> str:
        """The key itself, for the one caller that must hand it on: the ``avnology`` CLI's environment."""
        return self._connection[1]

    def get_conn(self) -> AvnologyClient:
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.client.check_auth()
        except (AvnologyError, ValueError) as exc:
            return False, str(exc)
        return True, f"authenticated to {self.settings.base_url}"

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()


_REQUIRED_SCOPES = "admin:users:read, admin:users:write, admin:orgs:write, admin:permissions:write"


def preflight_check(conn_id: str) -> str:
    """Prove an Avnology connection works before any user is read: the key authenticates and may write.

    Returns a one-line description for the preflight summary; raises ``ValueError`` with advice otherwise.
    """
    hook = AvnologyHook(conn_id)
    try:
        hook.client.check_auth(write=True)
    except AvnologyAuthError as exc:
        what = "refused the API key" if exc.status == 401 else "accepted the API key but it lacks a scope"
        raise ValueError(
            f"Avnology connection {conn_id!r} ({hook.settings.base_url}) {what}: {exc}. Put an admin key "
            f"(ak_live_…/ak_test_…) of a service account with {_REQUIRED_SCOPES} in the connection's password."
        ) from None
    except AvnologyError as exc:
        raise ValueError(f"Avnology connection {conn_id!r} ({hook.settings.base_url}) does not work: {exc}") from None
    finally:
        hook.close()
    return f"{conn_id}: authenticated to {hook.settings.base_url}"
