"""RateLimiter: the token bucket every client-side quota uses (Cognito, Avnology, email)."""

from __future__ import annotations

import threading
import time

import pytest

from cognito_migration.ratelimit import RateLimiter


class FakeClock:
    """Time that only moves when the limiter sleeps: the test sees every wait exactly."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_paces_at_the_rate_after_the_burst() -> None:
    fake = FakeClock()
    limiter = RateLimiter(10, burst=3, clock=fake.clock, sleep=fake.sleep)
    waits = [limiter.acquire() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.1, 0.1, 0.1])
    assert fake.now == pytest.approx(100.3)


def test_idle_time_refills_but_never_beyond_the_burst() -> None:
    fake = FakeClock()
    limiter = RateLimiter(2, burst=2, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    limiter.acquire()
    fake.now += 60  # a long idle period earns at most `burst` tokens
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0, 0, 0.5])


def test_an_empty_start_never_runs_ahead_of_the_rate() -> None:
    fake = FakeClock()
    limiter = RateLimiter(4, burst=2, initial_tokens=0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(8):
        limiter.acquire()
    assert fake.now - 100.0 == pytest.approx(8 / 4)  # eight calls took exactly 8/rate: no opening burst
    with pytest.raises(ValueError, match="initial_tokens"):
        RateLimiter(4, burst=2, initial_tokens=3)


def test_try_acquire_never_waits() -> None:
    fake = FakeClock()
    limiter = RateLimiter(1, burst=1, clock=fake.clock, sleep=fake.sleep)
    assert limiter.try_acquire() is True
    assert limiter.try_acquire() is False
    fake.now += 1.0
    assert limiter.try_acquire() is True
    assert fake.sleeps == []


def test_threads_together_stay_under_the_rate() -> None:
    """Real time, real threads: 4 threads x 10 calls at 100/s (burst 1) cannot finish in under 0.39 s."""
    limiter = RateLimiter(100, burst=1)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(stamps) == 40
    assert max(stamps) - start >= 0.39 - 0.01  # 39 intervals of 10 ms after the first (free) token
    # No 100 ms window holds more than rate*0.1 + burst = 11 calls.
    stamps.sort()
    assert max(sum(1 for t in stamps if s <= t < s + 0.1) for s in stamps) <= 11


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_rejects_a_bucket_that_cannot_work(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match=r"rate_per_s|burst"):
        RateLimiter(rate, burst)


def test_rejects_asking_for_more_than_the_bucket_holds() -> None:
    with pytest.raises(ValueError, match="tokens"):
        RateLimiter(5, burst=2).acquire(3)
