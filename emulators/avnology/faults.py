"""Fault injection: the share of 5xx answers, added latency and hung requests that test the client's retries.

Faults are decided *before* a handler runs, so a faulted request never changes state: retrying it is always
safe. (A real server can fail after committing; the client's Idempotency-Key and ledger cover that case,
and the emulator's idempotency replay is tested separately.)

With a ``seed`` the decisions are reproducible: the n-th request that reaches the fault stage gets the same
verdict on every run. Latency jitter draws from a separate generator so that concurrency cannot shift the
error sequence.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from emulators.avnology.errors import INJECTED_FAULT, ApiError, invalid

_MAX_SECONDS = 600.0


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503)
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    hang_every: int = 0
    hang_seconds: float = 30.0
    rate_limit_rps: float | None = None  # None: keep the limit the emulator was started with
    rate_limit_burst: int | None = None
    seed: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> FaultConfig:
        """Parse ``POST /_emulator/faults``; every field is optional and ``{}`` means no faults."""
        if not isinstance(data, dict):
            raise invalid("body", "not_an_object", "fault configuration must be a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        for name in data:
            if name not in known:
                raise invalid(name, "unknown_field", f"unknown fault setting {name!r}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        if "error_rate" in data:
            values["error_rate"] = _number(data, "error_rate", 0.0, 1.0)
        if "error_statuses" in data:
            statuses = data["error_statuses"]
            if (
                not isinstance(statuses, list)
                or not statuses
                or not all(isinstance(s, int) and not isinstance(s, bool) and 500 <= s <= 599 for s in statuses)
            ):
                raise invalid("error_statuses", "invalid", "error_statuses must be a non-empty list of 5xx codes")
            values["error_statuses"] = tuple(statuses)
        for name in ("latency_ms", "latency_jitter_ms"):
            if name in data:
                values[name] = _number(data, name, 0.0, _MAX_SECONDS * 1000)
        if "hang_every" in data:
            values["hang_every"] = _integer(data, "hang_every", 0)
        if "hang_seconds" in data:
            values["hang_seconds"] = _number(data, "hang_seconds", 0.0, _MAX_SECONDS)
        if data.get("rate_limit_rps") is not None:
            values["rate_limit_rps"] = _number(data, "rate_limit_rps", 0.0, 1e9)
        if data.get("rate_limit_burst") is not None:
            values["rate_limit_burst"] = _integer(data, "rate_limit_burst", 0)
        if data.get("seed") is not None:
            values["seed"] = _integer(data, "seed", None)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["error_statuses"] = list(self.error_statuses)
        return out


@dataclass
class FaultInjector:
    config: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        self.configure(self.config)

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self.requests_seen = 0
        self.injected = 0
        self._verdicts = random.Random(config.seed)
        self._jitter = random.Random(None if config.seed is None else config.seed + 1)

    async def delay(self) -> None:
        """Added latency, awaited so the event loop keeps serving other requests meanwhile."""
        cfg = self.config
        if cfg.latency_ms <= 0 and cfg.latency_jitter_ms <= 0:
            return
        jitter = self._jitter.uniform(0.0, cfg.latency_jitter_ms) if cfg.latency_jitter_ms > 0 else 0.0
        await asyncio.sleep((cfg.latency_ms + jitter) / 1000.0)

    async def maybe_fail(self) -> None:
        """Raise an injected 5xx (after hanging, for a hung request), or return to let the request through."""
        cfg = self.config
        self.requests_seen += 1
        if cfg.hang_every and self.requests_seen % cfg.hang_every == 0:
            self.injected += 1
            await asyncio.sleep(cfg.hang_seconds)
            raise ApiError(
                503, INJECTED_FAULT, "injected fault: the request hung and was not processed", {"fault": "hang"}
            )
        if cfg.error_rate > 0 and self._verdicts.random() < cfg.error_rate:
            self.injected += 1
            status = self._verdicts.choice(cfg.error_statuses)
            raise ApiError(
                status,
                INJECTED_FAULT,
                f"injected fault: HTTP {status}, the request was not processed",
                {"fault": "error"},
            )


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(name, "not_a_number", f"{name} must be a number")
    if not low <= value <= high:
        raise invalid(name, "out_of_range", f"{name} must be between {low:g} and {high:g}")
    return float(value)


def _integer(data: dict[str, Any], name: str, low: int | None) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, "not_an_integer", f"{name} must be an integer")
    if low is not None and value < low:
        raise invalid(name, "out_of_range", f"{name} must be >= {low}")
    return value
