"""A thread-safe token bucket: the client-side half of every external quota the pipeline shares.

Cognito's UserList quota, Avnology's write limit and the email provider's sending rate all punish bursts, and
the server's answer to an over-quota call (a throttle) costs a round trip and, on Cognito, is charged to the
production app sharing the account. Pacing our own calls keeps us under a budget instead of discovering it.

Waiters *reserve* their tokens under the lock and sleep outside it, so callers are served in arrival order and
nobody spins: the balance may go negative by the tokens already promised to sleeping callers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """``RateLimiter(rate_per_s, burst)``: at most ``burst`` calls at once, ``rate_per_s`` on average.

    The bucket starts full unless ``initial_tokens`` says otherwise: starting empty guarantees that from the first
    call on, the calls never outrun ``rate_per_s`` on average (no opening burst). ``clock`` and ``sleep`` are
    injectable so tests can drive time without waiting.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float = 1.0,
        *,
        initial_tokens: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1 (one call must fit in the bucket), got {burst!r}")
        if initial_tokens is not None and not 0 <= initial_tokens <= burst:
            raise ValueError(f"initial_tokens must be in [0, burst={burst}], got {initial_tokens!r}")
        self._rate = float(rate_per_s)
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst if initial_tokens is None else float(initial_tokens)
        self._last = clock()

    @property
    def rate_per_s(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _refill(self, now: float) -> None:
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``, sleeping until the bucket allows it. Returns the seconds waited."""
        if not 0 < tokens <= self._burst:
            raise ValueError(f"tokens must be in (0, burst={self._burst}], got {tokens!r}")
        with self._lock:
            self._refill(self._clock())
            self._tokens -= tokens
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` only if available right now (for callers that prefer to skip than to wait)."""
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= tokens:
                self._tokens -= tokens
                return True
            return False

    def __repr__(self) -> str:
        return f"RateLimiter(rate_per_s={self._rate:g}, burst={self._burst:g})"
