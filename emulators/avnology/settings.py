"""Start-up configuration of the Avnology ID emulator.

Keys are secrets even in a local stand-in (they end up in Airflow connections), so the settings never show
them: not in ``repr``, not in error messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_TENANTS = ("staging", "production")

# The scopes the docs list. A full key holds all of them; a read-only key holds only the read scopes, which is
# how the emulator produces the documented 403 AVNOLOGY_AUTH_100.
ALL_SCOPES = frozenset(
    {
        "admin:users:read",
        "admin:users:write",
        "admin:orgs:write",
        "admin:permissions:read",
        "admin:permissions:write",
        "admin:webhooks:write",
    }
)
READ_SCOPES = frozenset({"admin:users:read", "admin:permissions:read"})

_TENANT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True, repr=False)
class EmulatorSettings:
    """Which keys exist, which tenant each one opens, and the rate limits.

    ``rate_limit_rps`` / ``rate_limit_burst`` shape one token bucket per API key; 0 or None means unlimited.
    The public recovery flow has no key, so it gets its own bucket per client address plus a per-email
    cooldown (the cooldown applies whether or not the email exists, so it leaks nothing).
    """

    api_keys: Mapping[str, str] = field(default_factory=dict)
    readonly_keys: Mapping[str, str] = field(default_factory=dict)
    rate_limit_rps: float | None = 50.0
    rate_limit_burst: int | None = 50
    recovery_rate_limit_rps: float | None = 50.0
    recovery_rate_limit_burst: int | None = 50
    recovery_email_cooldown_seconds: float = 60.0
    idempotency_ttl_seconds: float = 24 * 3600.0
    # The recovery flow is public: a request without a bearer key lands in this tenant.
    public_tenant: str = "production"

    def __post_init__(self) -> None:
        full = _checked_key_map(self.api_keys, "api_keys")
        readonly = _checked_key_map(self.readonly_keys, "readonly_keys")
        if not full and not readonly:
            raise ValueError("EmulatorSettings needs at least one API key (api_keys or readonly_keys)")
        if set(full) & set(readonly):
            raise ValueError("an API key appears in both api_keys and readonly_keys; give each key one role")
        object.__setattr__(self, "api_keys", MappingProxyType(full))
        object.__setattr__(self, "readonly_keys", MappingProxyType(readonly))
        _check_limit(self.rate_limit_rps, self.rate_limit_burst, "rate_limit")
        _check_limit(self.recovery_rate_limit_rps, self.recovery_rate_limit_burst, "recovery_rate_limit")
        if not (self.recovery_email_cooldown_seconds >= 0):
            raise ValueError("recovery_email_cooldown_seconds must be >= 0")
        if not (self.idempotency_ttl_seconds > 0):
            raise ValueError("idempotency_ttl_seconds must be > 0")
        if not _TENANT_NAME.match(self.public_tenant):
            raise ValueError(f"public_tenant {self.public_tenant!r} is not a valid tenant name")

    @property
    def tenants(self) -> tuple[str, ...]:
        """Staging and production always exist; any other tenant named by a key is added."""
        named = [*self.api_keys.values(), *self.readonly_keys.values(), self.public_tenant]
        extra = sorted(set(named) - set(DEFAULT_TENANTS))
        return (*DEFAULT_TENANTS, *extra)

    def lookup(self, key: str) -> tuple[str, frozenset[str]] | None:
        """The tenant and scopes a key opens, or None for an unknown key."""
        tenant = self.api_keys.get(key)
        if tenant is not None:
            return tenant, ALL_SCOPES
        tenant = self.readonly_keys.get(key)
        if tenant is not None:
            return tenant, READ_SCOPES
        return None

    def is_known_key(self, value: str) -> bool:
        return value in self.api_keys or value in self.readonly_keys

    def __repr__(self) -> str:
        return (
            f"EmulatorSettings(tenants={list(self.tenants)}, api_keys=<{len(self.api_keys)} hidden>, "
            f"readonly_keys=<{len(self.readonly_keys)} hidden>, rate_limit_rps={self.rate_limit_rps}, "
            f"rate_limit_burst={self.rate_limit_burst})"
        )


def _checked_key_map(keys: Mapping[str, str], name: str) -> dict[str, str]:
    if not isinstance(keys, Mapping):
        raise TypeError(f"{name} must be a mapping of API key -> tenant name")
    checked: dict[str, str] = {}
    for position, (key, tenant) in enumerate(keys.items()):
        if not isinstance(key, str) or not key or any(ch.isspace() for ch in key):
            raise ValueError(f"{name}: key #{position + 1} is empty or contains whitespace")
        if not isinstance(tenant, str) or not _TENANT_NAME.match(tenant):
            raise ValueError(f"{name}: key #{position + 1} maps to an invalid tenant name {tenant!r}")
        checked[key] = tenant
    return checked


def _check_limit(rps: float | None, burst: int | None, name: str) -> None:
    if rps is None or rps == 0:
        return
    if not (isinstance(rps, int | float) and math.isfinite(rps) and rps > 0):
        raise ValueError(f"{name}_rps must be a positive number, or 0/None for unlimited")
    if burst is not None and burst != 0 and not (isinstance(burst, int) and burst >= 1):
        raise ValueError(f"{name}_burst must be a positive integer (0/None: derived from the rate)")
