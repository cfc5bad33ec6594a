"""Everything one running emulator holds: settings, tenants, rate limiters and the fault injector."""

from __future__ import annotations

from typing import Any

from emulators.avnology.faults import FaultConfig, FaultInjector
from emulators.avnology.ratelimit import Cooldown, RateLimiter
from emulators.avnology.settings import EmulatorSettings
from emulators.avnology.tenant import Tenant


class EmulatorRuntime:
    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.faults = FaultInjector()
        self.key_limiter = RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
        self.public_limiter = RateLimiter(settings.recovery_rate_limit_rps, settings.recovery_rate_limit_burst)
        self.recovery_cooldown = Cooldown(settings.recovery_email_cooldown_seconds)
        self.tenants: dict[str, Tenant] = {}
        self.unauthenticated_requests = 0
        self.reset()

    def reset(self) -> None:
        """Back to the state right after start: empty tenants, full buckets, no faults."""
        self.tenants = {name: Tenant(name, self.settings.idempotency_ttl_seconds) for name in self.settings.tenants}
        self.unauthenticated_requests = 0
        self.configure_faults(FaultConfig())
        self.public_limiter.configure(self.settings.recovery_rate_limit_rps, self.settings.recovery_rate_limit_burst)
        self.recovery_cooldown = Cooldown(self.settings.recovery_email_cooldown_seconds)

    def configure_faults(self, config: FaultConfig) -> None:
        """Apply a fault configuration; a rate limit in it overrides the start-up one until cleared."""
        self.faults.configure(config)
        if config.rate_limit_rps is None and config.rate_limit_burst is None:
            rps, burst = self.settings.rate_limit_rps, self.settings.rate_limit_burst
        elif config.rate_limit_rps is None:
            rps, burst = self.settings.rate_limit_rps, config.rate_limit_burst
        else:
            rps, burst = config.rate_limit_rps, config.rate_limit_burst
        self.key_limiter.configure(rps, burst)

    def tenant_snapshot(self, name: str) -> dict[str, Any]:
        snapshot = self.tenants[name].snapshot()
        snapshot["server"] = {
            "unauthenticated_requests": self.unauthenticated_requests,
            "faults": self.faults.config.as_dict(),
            "fault_stage_requests": self.faults.requests_seen,
            "faults_injected": self.faults.injected,
            "rate_limit": self.key_limiter.describe(),
        }
        return snapshot
