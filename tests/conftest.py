"""Shared pytest configuration.

* The anyio plugin runs async tests on asyncio only: the Bedrock SDK and awscrt are asyncio-only,
  and we run one asyncio loop per process.
* Hypothesis checks behaviour, not speed: its per-example deadline and its "too slow" health check
  are timing assertions, and they failed on a busy 2-core machine for code that was correct. Speed
  lives in the benchmarks under ``scripts/``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "sonic-gateway", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("sonic-gateway")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
