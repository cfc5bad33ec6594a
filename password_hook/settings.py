"""Settings of the password migration hook, read from the environment.

The same variables configure the container, the docker-compose service and the Lambda function, so one
table in README.md documents all three. Secrets are wrapped in :class:`Secret` the moment they are read:
a secret that ends up in a repr, a traceback or a log line shows as ``********``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "PASSWORD_HOOK_"
ENV_LEDGER_URL = "COGNITO_MIGRATION_LEDGER_URL"  # shared with the pipeline: same ledger, same variable

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
_POOL_ID = re.compile(r"^(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)_[0-9A-Za-z]+$")
_RATE = re.compile(r"^\s*(?P<burst>\d+)\s*/\s*(?P<seconds>\d+(?:\.\d+)?)\s*s?\s*$")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


class Secret:
    """A string that never shows itself; call :meth:`reveal` at the one place that needs the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)


@dataclass(frozen=True)
class RateSpec:
    """``burst`` requests at once, refilled evenly over ``per_seconds``: a token bucket, written ``"10/900"``."""

    burst: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.burst < 1 or self.per_seconds <= 0:
            raise SettingsError(f"a rate limit needs burst >= 1 and a positive period, not {self}")

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self.burst / self.per_seconds

    @classmethod
    def parse(cls, text: str, *, name: str = "rate limit") -> RateSpec:
        match = _RATE.match(text)
        if not match:
            raise SettingsError(f"{name}: expected '<requests>/<seconds>' such as '10/900', not {text!r}")
        return cls(int(match["burst"]), float(match["seconds"]))

    def __str__(self) -> str:
        return f"{self.burst}/{self.per_seconds:g}s"


# Per-source defaults. When a trusted header carries the end user's IP, the limit is per person; otherwise the
# "source" is the caller itself (Avnology's egress or API Gateway), and the limit can only be a flood cap.
SOURCE_LIMIT_END_USER = RateSpec(30, 300)
SOURCE_LIMIT_CALLER = RateSpec(1200, 60)


@dataclass(frozen=True)
class HookSettings:
    """Everything the hook needs; ``from_env()`` reads it, tests and the benchmark build it directly."""

    webhook_secrets: tuple[Secret, ...]
    user_pool_id: str
    client_id: str
    client_secret: Secret | None = None
    region: str = ""  # empty: taken from the pool id ("us-east-1_AbC" -> "us-east-1")
    cognito_endpoint_url: str | None = None  # moto or a VPC endpoint; None: the public AWS endpoint
    ledger_url: str | None = None  # None: the pipeline's configured ledger (cognito_migration.config)
    max_age_s: float = 300.0  # the documented 5 minutes
    future_skew_s: float = 60.0
    replay_cache_size: int = 100_000
    identifier_limit: RateSpec = field(default_factory=lambda: RateSpec(10, 900))
    source_limit: RateSpec | None = None  # None: the default for the source kind (see SOURCE_LIMIT_*)
    source_ip_header: str | None = None
    tracked_keys: int = 100_000  # rate-limit buckets kept per limiter (least recently used go first)
    cognito_rps: float = 20.0
    cognito_wait_s: float = 2.0
    cognito_timeout_s: float = 5.0
    cognito_max_attempts: int = 3
    accept_mfa_challenge: bool = False
    max_body_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        if not self.webhook_secrets:
            raise SettingsError(f"{ENV_PREFIX}WEBHOOK_SECRET is required (the whsec_… secret of the Avnology hook)")
        for secret in self.webhook_secrets:
            if not isinstance(secret, Secret):
                raise SettingsError("webhook_secrets must hold Secret values")
            value = secret.reveal()
            if not value.startswith(WEBHOOK_SECRET_PREFIX) or len(value) <= len(WEBHOOK_SECRET_PREFIX):
                raise SettingsError(f"{ENV_PREFIX}WEBHOOK_SECRET: each secret must start with 'whsec_'")
        match = _POOL_ID.match(self.user_pool_id or "")
        if not match:
            raise SettingsError(
                f"{ENV_PREFIX}USER_POOL_ID: expected '<region>_<id>' such as 'us-east-1_AbC123', not {self.user_pool_id!r}"
            )
        if not self.client_id:
            raise SettingsError(
                f"{ENV_PREFIX}CLIENT_ID is required (an app client that allows ADMIN_USER_PASSWORD_AUTH)"
            )
        if self.client_secret is not None and not isinstance(self.client_secret, Secret):
            raise SettingsError("client_secret must be a Secret")
        if not self.region:
            object.__setattr__(self, "region", match["region"])
        if self.source_limit is None:
            default = SOURCE_LIMIT_END_USER if self.source_ip_header else SOURCE_LIMIT_CALLER
            object.__setattr__(self, "source_limit", default)
        positive: dict[str, float] = {
            "max_age_s": self.max_age_s,
            "cognito_rps": self.cognito_rps,
            "cognito_timeout_s": self.cognito_timeout_s,
            "replay_cache_size": self.replay_cache_size,
            "tracked_keys": self.tracked_keys,
            "max_body_bytes": self.max_body_bytes,
            "cognito_max_attempts": self.cognito_max_attempts,
        }
        for name, number in positive.items():
            if number <= 0:
                raise SettingsError(f"{name} must be positive, not {number!r}")
        for name, number in {"future_skew_s": self.future_skew_s, "cognito_wait_s": self.cognito_wait_s}.items():
            if number < 0:
                raise SettingsError(f"{name} must not be negative, not {number!r}")

    @property
    def replay_window_s(self) -> float:
        """How long a signature is remembered at most: a request is fresh from ts - skew to ts + max age."""
        return self.max_age_s + self.future_skew_s

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HookSettings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        kwargs: dict[str, Any] = {
            "webhook_secrets": tuple(Secret(s.strip()) for s in (get("WEBHOOK_SECRET") or "").split(",") if s.strip()),
            "user_pool_id": get("USER_POOL_ID") or "",
            "client_id": get("CLIENT_ID") or "",
            "client_secret": Secret(v) if (v := get("CLIENT_SECRET")) else None,
            "region": get("REGION") or "",
            "cognito_endpoint_url": get("COGNITO_ENDPOINT_URL"),
            "ledger_url": env.get(ENV_LEDGER_URL, "").strip() or None,
            "source_ip_header": get("SOURCE_IP_HEADER"),
        }
        numbers = {
            "MAX_AGE_S": ("max_age_s", float),
            "FUTURE_SKEW_S": ("future_skew_s", float),
            "REPLAY_CACHE_SIZE": ("replay_cache_size", int),
            "TRACKED_KEYS": ("tracked_keys", int),
            "COGNITO_RPS": ("cognito_rps", float),
            "COGNITO_WAIT_S": ("cognito_wait_s", float),
            "COGNITO_TIMEOUT_S": ("cognito_timeout_s", float),
            "COGNITO_MAX_ATTEMPTS": ("cognito_max_attempts", int),
            "MAX_BODY_BYTES": ("max_body_bytes", int),
        }
        for suffix, (name, kind) in numbers.items():
            if (raw := get(suffix)) is not None:
                try:
                    kwargs[name] = kind(raw)
                except ValueError:
                    raise SettingsError(f"{ENV_PREFIX}{suffix}: expected a {kind.__name__}, not {raw!r}") from None
        if (raw := get("IDENTIFIER_LIMIT")) is not None:
            kwargs["identifier_limit"] = RateSpec.parse(raw, name=f"{ENV_PREFIX}IDENTIFIER_LIMIT")
        if (raw := get("SOURCE_LIMIT")) is not None:
            kwargs["source_limit"] = RateSpec.parse(raw, name=f"{ENV_PREFIX}SOURCE_LIMIT")
        if (raw := get("ACCEPT_MFA_CHALLENGE")) is not None:
            kwargs["accept_mfa_challenge"] = _flag(raw, f"{ENV_PREFIX}ACCEPT_MFA_CHALLENGE")
        return cls(**kwargs)


def _flag(raw: str, name: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}: expected true or false, not {raw!r}")
