"""The call's assistant turn ids: Sonic's turns and the prompts intents play, in one order.

Theory of operation: a Sonic conversation numbers its assistant turns from 1. The call numbers
its turns after every turn it already has (``offset``: the call's last turn id when this
SonicSession started), in the order they are first seen, so ids stay unique across SonicSession
restarts and grow in the order the turns happen. An intent's cached prompt is a turn of the call
too, and must sort after every turn that came before it (PlaybackEgress drops a cleared turn's late
audio by comparing ids) and before every Sonic turn that comes after it: :meth:`CallTurnIds.allocate`
simply takes the next id. Only the last :data:`KEPT` Sonic turns are remembered (a heard report or
a late event names a recent turn).

Sans I/O: plain integers in, integers out.
"""

from __future__ import annotations

from typing import Final, final

__all__ = ["KEPT", "CallTurnIds"]

KEPT: Final = 64
"""Sonic turns whose ids are remembered (older ones are forgotten, oldest first)."""


@final
class CallTurnIds:
    """Maps one Sonic conversation's turn ids to the call's; see the module docstring.

    Args:
        offset: the call's last turn id before this conversation (0 at the call's start: the
            greeting is turn 0).
    """

    __slots__ = ("_by_call", "_by_sonic", "_last")

    def __init__(self, offset: int = 0) -> None:
        self._last = offset
        self._by_sonic: dict[int, int] = {}
        self._by_call: dict[int, int] = {}

    @property
    def last(self) -> int:
        """The highest call turn id given out so far (``offset`` before any)."""
        return self._last

    def call_id(self, sonic_turn: int) -> tuple[int, bool]:
        """The call's id of Sonic turn ``sonic_turn``, and whether it was first seen just now."""
        known = self._by_sonic.get(sonic_turn)
        if known is not None:
            return known, False
        self._last += 1
        self._by_sonic[sonic_turn] = self._last
        self._by_call[self._last] = sonic_turn
        if len(self._by_sonic) > KEPT:
            oldest = next(iter(self._by_sonic))
            del self._by_call[self._by_sonic.pop(oldest)]
        return self._last, True

    def sonic_id(self, turn_id: int) -> int | None:
        """The Sonic turn behind call turn ``turn_id`` (None: a prompt, the greeting, or old)."""
        return self._by_call.get(turn_id)

    def allocate(self) -> int:
        """A call turn id for an intent's prompt: after every turn so far, before the next one."""
        self._last += 1
        return self._last
