"""Token buckets, one per caller, so the client's 429 handling meets a limiter that behaves like a real one."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds (>= 1) when refused, else 0

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """A bucket per key: ``burst`` tokens, refilled at ``rps`` per second; a request costs one token.

    ``Retry-After`` is a whole number of seconds, rounded up and at least 1, because that is the form
    HTTP defines (delta-seconds); a client must therefore cope with waiting a little longer than needed.
    """

    def __init__(self, rps: float | None, burst: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.configure(rps, burst)

    def configure(self, rps: float | None, burst: int | None) -> None:
        self.rps = float(rps) if rps else 0.0
        self.burst = int(burst) if burst else max(1, math.ceil(self.rps))
        self._buckets: dict[str, _Bucket] = {}

    @property
    def unlimited(self) -> bool:
        return self.rps <= 0

    def describe(self) -> dict[str, float | int | None]:
        return {"rps": None, "burst": None} if self.unlimited else {"rps": self.rps, "burst": self.burst}

    def check(self, key: str) -> RateDecision | None:
        """Take a token for ``key``; None when the limiter is off (no headers to send)."""
        if self.unlimited:
            return None
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rps)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return RateDecision(True, self.burst, int(bucket.tokens), 0)
        wait = (1.0 - bucket.tokens) / self.rps
        return RateDecision(False, self.burst, 0, max(1, math.ceil(wait)))


class Cooldown:
    """At most one action per subject per ``seconds`` (e.g. one recovery email per address per minute)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last: dict[str, float] = {}

    def retry_after(self, subject: str) -> int:
        """0 and record the action when allowed; otherwise the whole seconds left to wait (>= 1)."""
        if self.seconds <= 0:
            return 0
        now = self._clock()
        last = self._last.get(subject)
        if last is not None and now - last < self.seconds:
            return max(1, math.ceil(self.seconds - (now - last)))
        self._last[subject] = now
        return 0
