"""serve freezes what start-up built, so garbage collections never walk it again."""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING

import pytest

from gateway.wiring import freeze_startup_heap

if TYPE_CHECKING:
    from collections.abc import Iterator


class Node:
    """A reference cycle: only the cycle collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.collect()


@pytest.mark.usefixtures("unfrozen")
def test_start_up_objects_are_frozen_and_the_calls_objects_are_still_collected() -> None:
    garbage_before = weakref.ref(Node())
    kept = [Node()]
    kept_ref = weakref.ref(kept[0])
    freeze_startup_heap()
    assert garbage_before() is None  # it collects first: no garbage is frozen
    assert gc.get_freeze_count() > 0
    kept.clear()
    made_later = weakref.ref(Node())
    gc.collect()
    assert made_later() is None  # an object of a call: collected as before
    assert kept_ref() is not None  # frozen: never walked again, even once unreachable
    gc.unfreeze()
    gc.collect()
    assert kept_ref() is None
