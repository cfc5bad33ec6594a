"""The password migration hook's logic, shared by the ASGI app and the Lambda handler.

One request goes through these checks, cheapest first, and stops at the first that fails:

1. size (413), then the signature: ``X-Avnology-Signature`` must be the hex HMAC-SHA256 of
   ``"{X-Avnology-Timestamp}.{raw body}"`` under one of the ``whsec_`` secrets, compared in constant time (401);
2. freshness: the timestamp (unix seconds) may be at most ``max_age_s`` old (5 min) and ``future_skew_s``
   ahead (401);
3. replay: a signature already seen inside its freshness window is refused (401). The cache is in memory,
   per process, and bounded; an entry lives until its timestamp is ``max_age_s`` old, so at most
   ``max_age_s + future_skew_s`` (6 min by default). When it is full of live entries the hook answers 503
   rather than forget one;
4. the body: ``{"identifier": str, "password": str}`` (400);
5. abuse limits: a token bucket per source and per identifier (429 with ``Retry-After``);
6. the credential check: ``AdminInitiateAuth`` with ``ADMIN_USER_PASSWORD_AUTH`` on the configured app client,
   paced by the hook's own slice of the Cognito quota (another token bucket). Waiting longer than
   ``cognito_wait_s`` for the slice, an unreachable Cognito, or throttling after botocore's retries gives 503.

How Cognito's answers map to the contract (README.md has the reasoning):

- ``AuthenticationResult`` -> ``password_match``; the tokens are discarded unread.
- ``NotAuthorizedException`` (wrong password, disabled user, Cognito's own lockout), ``UserNotFoundException``,
  ``PasswordResetRequiredException``, ``UserNotConfirmedException``, ``UserLambdaValidationException``
  (a pre-authentication trigger said no) and ``MFAMethodNotFoundException`` -> ``password_mismatch``.
- Challenges: ``NEW_PASSWORD_REQUIRED`` (a temporary password) -> mismatch; MFA challenges (the password was
  right, a second factor would follow) -> mismatch unless ``accept_mfa_challenge``; any other challenge -> mismatch.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import hmac
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from cognito_migration.ratelimit import RateLimiter
from password_hook import redaction
from password_hook.settings import SOURCE_LIMIT_CALLER, HookSettings, RateSpec, Secret

logger = logging.getLogger("password_hook")

MATCH = "password_match"
MISMATCH = "password_mismatch"
SIGNATURE_HEADER = "x-avnology-signature"
TIMESTAMP_HEADER = "x-avnology-timestamp"
MAX_IDENTIFIER_CHARS = 320  # an email address at its longest
MAX_PASSWORD_CHARS = 256  # Cognito's own maximum

MISMATCH_ERRORS = {
    "NotAuthorizedException": "not_authorized",
    "UserNotFoundException": "user_not_found",
    "PasswordResetRequiredException": "password_reset_required",
    "UserNotConfirmedException": "user_not_confirmed",
    "UserLambdaValidationException": "denied_by_trigger",
    "MFAMethodNotFoundException": "mfa_method_not_found",
}
UNAVAILABLE_ERRORS = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "InternalErrorException",
        "UnexpectedLambdaException",
        "InvalidLambdaResponseException",
    }
)
MFA_CHALLENGES = frozenset({"SMS_MFA", "SOFTWARE_TOKEN_MFA", "EMAIL_OTP", "SELECT_MFA_TYPE", "MFA_SETUP"})
_HEX_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")
_UNIX_SECONDS = re.compile(r"^\d{1,12}$")


# -- requests and responses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookRequest:
    """What both entry points hand to the hook: the raw body (the signature covers its exact bytes)."""

    body: bytes = field(repr=False)
    headers: Mapping[str, str]
    peer_ip: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})


@dataclass(frozen=True)
class HookResponse:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json_bytes(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def _answer(status: str) -> HookResponse:
    return HookResponse(200, {"status": status})


def error_response(
    status_code: int, code: str, message: str, *, retry_after: float | None = None, **details: str
) -> HookResponse:
    headers = {"Retry-After": str(max(1, round(retry_after + 0.5)))} if retry_after is not None else {}
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return HookResponse(status_code, {"error": body}, headers)


# -- signatures ---------------------------------------------------------------------------------------------


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"{timestamp}.{body}"``, keyed with the whole ``whsec_…`` string."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_matches(secrets: tuple[Secret, ...], timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time comparison against every configured secret (several while a secret is being rotated)."""
    candidate = signature.strip().lower().encode()
    matched = False
    for secret in secrets:  # no early exit: the time taken does not say which secret matched
        expected = compute_signature(secret.reveal(), timestamp, body).encode()
        matched |= hmac.compare_digest(expected, candidate)
    return matched


def secret_hash(username: str, client_id: str, client_secret: str) -> str:
    """Cognito's SECRET_HASH: base64 of HMAC-SHA256(client secret, username + client id)."""
    digest = hmac.new(client_secret.encode(), (username + client_id).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class ReplayCacheFull(RuntimeError):
    pass


class ReplayCache:
    """Signatures seen recently; an entry is dropped only once its timestamp is too old to be accepted anyway."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def remember(self, key: str, expires_at: float, now: float) -> bool:
        """True the first time ``key`` is seen; False for a replay. Raises ReplayCacheFull rather than forget."""
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, old = heapq.heappop(self._heap)
                self._expiry.pop(old, None)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self.max_entries:
                raise ReplayCacheFull(f"replay cache holds {len(self._expiry)} live signatures")
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True


# -- rate limits --------------------------------------------------------------------------------------------


class KeyedLimiter:
    """A token bucket per key (a source address, an identifier), bounded: the least recently used key goes first.

    Not one ``RateLimiter`` per key: a limiter here must say *when* to retry (``Retry-After``), and 100,000 keys
    are cheaper as tuples than as objects with a lock each.

    Evicting a key forgets its debt, so ``max_keys`` must exceed the keys active within one refill period; the
    per-source limit still caps whoever cycles through more identifiers than that.
    """

    def __init__(self, spec: RateSpec, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec, self.max_keys, self._clock = spec, max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """0.0 when allowed; otherwise the seconds until this key may try again."""
        rate, burst = self.spec.rate, self.spec.burst
        with self._lock:
            now = self._clock()
            tokens, updated = self._buckets.pop(key, (float(burst), now))
            tokens = min(burst, tokens + (now - updated) * rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return 0.0 if allowed else (1 - tokens) / rate


# -- the credential check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    matched: bool
    reason: str


class CognitoUnavailable(RuntimeError):
    """Cognito could not answer now (down, throttling after retries, or the hook's quota slice is spent)."""

    def __init__(self, reason: str, *, retry_after: float = 1.0, request_id: str | None = None) -> None:
        super().__init__(f"Cognito unavailable: {reason}" + (f" (request id {request_id})" if request_id else ""))
        self.reason, self.retry_after, self.request_id = reason, retry_after, request_id


class CognitoMisconfigured(RuntimeError):
    """Cognito refused the hook's own setup (pool, client, auth flow, credentials): retrying will not help."""

    def __init__(self, reason: str, *, request_id: str | None = None) -> None:
        super().__init__(
            f"Cognito rejected the hook's configuration: {reason}"
            + (f" (request id {request_id})" if request_id else "")
        )
        self.reason, self.request_id = reason, request_id


class CognitoVerifier:
    """``AdminInitiateAuth`` with ``ADMIN_USER_PASSWORD_AUTH``, inside the hook's slice of the Cognito quota."""

    def __init__(self, settings: HookSettings, client: Any | None = None) -> None:
        self.settings = settings
        self.client = client or boto3.session.Session().client(
            "cognito-idp",
            region_name=settings.region,
            endpoint_url=settings.cognito_endpoint_url,
            config=Config(
                connect_timeout=settings.cognito_timeout_s,
                read_timeout=settings.cognito_timeout_s,
                retries={"mode": "standard", "total_max_attempts": settings.cognito_max_attempts},
                max_pool_connections=32,
            ),
        )
        # AdminInitiateAuth counts against the account's UserAuthentication quota, shared with the app still
        # signing users in on Cognito: the hook takes a fixed slice of it and never more.
        self.slice = RateLimiter(settings.cognito_rps, burst=max(1.0, settings.cognito_rps))

    def verify(self, identifier: str, password: Secret) -> Verdict:
        if not self._take_slice():
            raise CognitoUnavailable("the hook's Cognito quota slice is spent", retry_after=1 / self.slice.rate_per_s)
        params = {"USERNAME": identifier, "PASSWORD": password.reveal()}
        client_secret = self.settings.client_secret
        if client_secret is not None:
            params["SECRET_HASH"] = secret_hash(identifier, self.settings.client_id, client_secret.reveal())
        with redaction.guarding(params["PASSWORD"], params.get("SECRET_HASH", "")):
            try:
                result = self.client.admin_initiate_auth(
                    UserPoolId=self.settings.user_pool_id,
                    ClientId=self.settings.client_id,
                    AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                    AuthParameters=params,
                )
            except ClientError as exc:
                return self._from_error(exc)
            except (BotoConnectionError, HTTPClientError) as exc:
                raise CognitoUnavailable(type(exc).__name__) from None
            except BotoCoreError as exc:  # no credentials, no region, a bad parameter: the setup is wrong
                raise CognitoMisconfigured(type(exc).__name__) from None
            finally:
                params.clear()
        return self._from_result(result)

    def _take_slice(self) -> bool:
        """A token within ``cognito_wait_s``; past that, the caller is better told to retry than kept waiting."""
        deadline = time.monotonic() + self.settings.cognito_wait_s
        step = min(0.05, 1 / self.slice.rate_per_s)
        while not self.slice.try_acquire():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(step, remaining))
        return True

    def _from_error(self, exc: ClientError) -> Verdict:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        meta = exc.response.get("ResponseMetadata", {})
        request_id = meta.get("RequestId")
        if code in MISMATCH_ERRORS:
            return Verdict(False, MISMATCH_ERRORS[code])
        if code in UNAVAILABLE_ERRORS or int(meta.get("HTTPStatusCode") or 0) >= 500:
            raise CognitoUnavailable(code or "HTTP 5xx", request_id=request_id) from None
        raise CognitoMisconfigured(code or "unknown error", request_id=request_id) from None

    def _from_result(self, result: Mapping[str, Any]) -> Verdict:
        if result.get("AuthenticationResult"):
            return Verdict(True, "authenticated")
        challenge = str(result.get("ChallengeName") or "")
        if challenge in MFA_CHALLENGES:
            accepted = self.settings.accept_mfa_challenge
            return Verdict(accepted, "mfa_challenge_accepted" if accepted else "mfa_challenge")
        if challenge == "NEW_PASSWORD_REQUIRED":
            return Verdict(False, "new_password_required")
        return Verdict(False, f"challenge_{challenge.lower() or 'unknown'}")


# -- the hook -----------------------------------------------------------------------------------------------


class BodyError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field_name, self.message = field_name, message


def parse_body(body: bytes) -> tuple[str, Secret]:
    """``(identifier, password)``; unknown fields are ignored (they are covered by the signature anyway).

    Errors never quote the body: it holds a password.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BodyError("body", "must be a JSON object") from None
    if not isinstance(data, dict):
        raise BodyError("body", "must be a JSON object")
    identifier, password = data.get("identifier"), data.get("password")
    if not isinstance(identifier, str) or not identifier.strip() or len(identifier) > MAX_IDENTIFIER_CHARS:
        raise BodyError("identifier", f"must be a non-empty string of at most {MAX_IDENTIFIER_CHARS} characters")
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_CHARS:
        raise BodyError("password", f"must be a non-empty string of at most {MAX_PASSWORD_CHARS} characters")
    return identifier.strip(), Secret(password)


class PasswordHook:
    """The whole request pipeline; ``handle()`` is synchronous (boto3 is), so the ASGI app runs it in a thread."""

    def __init__(self, settings: HookSettings, *, cognito_client: Any | None = None, ledger: Any | None = None) -> None:
        self.settings = settings
        self.verifier = CognitoVerifier(settings, cognito_client)
        self.replays = ReplayCache(settings.replay_cache_size)
        self.per_source = KeyedLimiter(settings.source_limit or SOURCE_LIMIT_CALLER, settings.tracked_keys)
        self.per_identifier = KeyedLimiter(settings.identifier_limit, settings.tracked_keys)
        self._ledger = ledger
        self._ledger_lock = threading.Lock()
        self._sqlite_writes = threading.Lock()
        self._tag_key = hmac.new(settings.webhook_secrets[0].reveal().encode(), b"password-hook tag", "sha256").digest()
        statics = [s.reveal() for s in settings.webhook_secrets]
        if settings.client_secret is not None:
            statics.append(settings.client_secret.reveal())
        redaction.install(statics)

    def tag(self, identifier: str) -> str:
        """A stable pseudonym for an identifier: logs and rate-limit keys never hold the email itself."""
        return hmac.new(self._tag_key, identifier.strip().lower().encode(), "sha256").hexdigest()

    def handle(self, request: HookRequest) -> HookResponse:
        started = time.perf_counter()
        try:
            response, note = self._handle(request)
        except Exception as exc:  # the last resort: a clear 500, the details only in the (redacted) log
            logger.exception("password hook: unexpected %s", type(exc).__name__)
            return error_response(500, "internal_error", "the password hook failed; its log has the details")
        level = logging.INFO if response.status_code == 200 else logging.WARNING
        logger.log(
            level,
            "password hook: %s %s source=%s in %.1f ms",
            response.status_code,
            note,
            self._source(request),
            (time.perf_counter() - started) * 1000,
        )
        return response

    def _handle(self, request: HookRequest) -> tuple[HookResponse, str]:
        settings = self.settings
        if len(request.body) > settings.max_body_bytes:
            return error_response(
                413, "body_too_large", f"the body exceeds {settings.max_body_bytes} bytes"
            ), "too large"

        signature = request.headers.get(SIGNATURE_HEADER, "").strip()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        if not signature or not timestamp:
            missing = "X-Avnology-Signature" if not signature else "X-Avnology-Timestamp"
            return error_response(401, "missing_signature", f"the {missing} header is missing"), "unsigned"
        if not _HEX_SIGNATURE.match(signature) or not signature_matches(
            settings.webhook_secrets, timestamp, request.body, signature
        ):
            return error_response(
                401, "invalid_signature", "X-Avnology-Signature does not match the body"
            ), "bad signature"
        if not _UNIX_SECONDS.match(timestamp):
            return error_response(401, "bad_timestamp", "X-Avnology-Timestamp must be unix seconds"), "bad timestamp"
        now, sent_at = time.time(), int(timestamp)
        if sent_at < now - settings.max_age_s:
            message = f"the request is {now - sent_at:.0f} s old; the limit is {settings.max_age_s:g} s"
            return error_response(401, "stale_timestamp", message), "stale"
        if sent_at > now + settings.future_skew_s:
            message = f"the timestamp is {sent_at - now:.0f} s ahead; the limit is {settings.future_skew_s:g} s"
            return error_response(401, "future_timestamp", message), "future"
        try:
            fresh = self.replays.remember(f"{timestamp}.{signature.lower()}", sent_at + settings.max_age_s, now)
        except ReplayCacheFull:
            return error_response(
                503, "replay_cache_full", "too many requests in the window", retry_after=5
            ), "replay cache full"
        if not fresh:
            return error_response(401, "replayed", "this signed request was already received"), "replay"

        try:
            identifier, password = parse_body(request.body)
        except BodyError as exc:
            return error_response(400, "invalid_body", exc.message, field=exc.field_name), f"invalid {exc.field_name}"
        tag = self.tag(identifier)
        note = f"ident={tag[:12]}"

        wait = self.per_source.hit(self._source(request))
        if wait:
            return error_response(
                429, "rate_limited", "too many attempts from this source", retry_after=wait, scope="source"
            ), f"{note} source limit"
        wait = self.per_identifier.hit(tag)
        if wait:
            message = "too many attempts for this identifier"
            return error_response(
                429, "rate_limited", message, retry_after=wait, scope="identifier"
            ), f"{note} identifier limit"

        asked = time.perf_counter()
        try:
            verdict = self.verifier.verify(identifier, password)
        except CognitoUnavailable as exc:
            message = "Cognito cannot verify the password now; try again later"
            return error_response(
                503, "cognito_unavailable", message, retry_after=exc.retry_after
            ), f"{note} unavailable: {exc}"
        except CognitoMisconfigured as exc:
            message = f"Cognito rejected the hook's configuration ({exc.reason})"
            return error_response(500, "hook_misconfigured", message), f"{note} {exc}"
        note = f"{note} {verdict.reason} cognito={(time.perf_counter() - asked) * 1000:.1f}ms"
        if verdict.matched:
            recorded = time.perf_counter()
            self._record_match(identifier, tag)
            note = f"{note} ledger={(time.perf_counter() - recorded) * 1000:.1f}ms"
        return _answer(MATCH if verdict.matched else MISMATCH), note

    def _source(self, request: HookRequest) -> str:
        header = self.settings.source_ip_header
        if header and (value := request.headers.get(header.lower(), "")):
            # The right-most entry is the one our own proxy appended; earlier ones are the client's to forge.
            return value.split(",")[-1].strip() or "unknown"
        return request.peer_ip or "unknown"

    def ledger(self) -> Any:
        """The migration ledger, opened on first use (its schema is created if missing)."""
        with self._ledger_lock:
            if self._ledger is None:
                from cognito_migration.ledger import Ledger

                self._ledger = Ledger(self.settings.ledger_url).create_schema()
            return self._ledger

    def _record_match(self, identifier: str, tag: str) -> None:
        """Mark the user hook-migrated so the email campaign skips them and reconciliation counts them.

        A ledger outage must not lock people out: the match still stands, and the error is logged loudly.
        """
        try:
            ledger = self.ledger()
            # SQLite's busy handler sleeps up to 100 ms between lock attempts; queueing the hook's own writers
            # on a lock instead keeps the sign-in latency tail short (PostgreSQL needs no such help).
            serial = self._sqlite_writes if ledger.engine.dialect.name == "sqlite" else contextlib.nullcontext()
            with serial:
                rows = ledger.mark_hook_migrated(self.settings.user_pool_id, identifier)
        except Exception as exc:
            logger.error(
                "password hook: matched ident=%s but the ledger write failed: %s", tag[:12], type(exc).__name__
            )
            return
        if not rows:
            logger.info("password hook: ident=%s matched; the ledger had no unmarked row for it", tag[:12])
