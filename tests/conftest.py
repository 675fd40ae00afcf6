"""Shared pytest configuration: the anyio plugin runs async tests on asyncio only.

The Bedrock SDK and awscrt are asyncio-only, and we run one asyncio loop per process.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
