"""A bounded wait for a test probe (state the code under test owns and signals no event for)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["wait_for"]


async def wait_for(predicate: Callable[[], object], limit_s: float = 10.0) -> None:
    """Wait until ``predicate()`` is true; fail (``TimeoutError``) after ``limit_s``."""
    with anyio.fail_after(limit_s):
        while not predicate():  # noqa: ASYNC110  # no event exists for arbitrary test predicates
            await anyio.sleep(0.01)
