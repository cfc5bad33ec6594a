"""A real Avnology emulator on a free loopback port, shared by a module and reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from emulators.avnology import AvnologyEmulatorServer, EmulatorSettings

STAGING_KEY = "ak_test_staging_0f3a9c1d2e4b5a69"
PRODUCTION_KEY = "ak_test_production_7b1e0d9c8a6f5e43"
READONLY_KEY = "ak_test_readonly_5c2d8e1f0a9b7c36"


@pytest.fixture(scope="module")
def avnology() -> Iterator[AvnologyEmulatorServer]:
    settings = EmulatorSettings(
        api_keys={STAGING_KEY: "staging", PRODUCTION_KEY: "production"},
        readonly_keys={READONLY_KEY: "production"},
        rate_limit_rps=0,  # unlimited here; rate limiting has its own tests
        recovery_rate_limit_rps=0,
    )
    with AvnologyEmulatorServer(settings, port=0) as server:  # stops even when a test fails
        yield server


@pytest.fixture(autouse=True)
def _fresh_state(request: pytest.FixtureRequest) -> None:
    if "avnology" in request.fixturenames:
        request.getfixturevalue("avnology").reset()


@pytest.fixture(scope="module")
def prod(avnology: AvnologyEmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=avnology.url, headers={"Authorization": f"Bearer {PRODUCTION_KEY}"}, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def staging(avnology: AvnologyEmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=avnology.url, headers={"Authorization": f"Bearer {STAGING_KEY}"}, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def readonly(avnology: AvnologyEmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=avnology.url, headers={"Authorization": f"Bearer {READONLY_KEY}"}, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(avnology: AvnologyEmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=avnology.url, timeout=10) as c:
        yield c
