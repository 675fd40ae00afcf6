"""A fake Sonic conversation and connector for SonicSession tests (no stream, no emulator).

:class:`FakeConversation` is the part of :class:`actors.sonic.SonicConversation` SonicSession uses
when nothing in particular happens; tests subclass it to script events or record what is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["FakeConnector", "FakeConversation"]


class FakeConversation:
    """No events until cancelled; audio and heard reports are accepted and dropped."""

    def __init__(self) -> None:
        self.events = self._events()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def _events(self) -> AsyncIterator[Any]:
        await anyio.sleep_forever()
        yield  # pragma: no cover

    async def send_audio(self, pcm: bytes) -> None:
        pass

    def note_heard(self, turn_id: int | None, fraction: float) -> None:
        pass

    def expect_output(self) -> None:
        pass

    def stop_by(self, deadline: float) -> None:
        pass

    def statistics(self) -> dict[str, object]:
        return {}


class FakeConnector[C: FakeConversation]:
    """Opens ``conv`` as the one conversation of every session."""

    def __init__(self, conv: C) -> None:
        self.conv = conv

    def conversation(self, *, history: object = (), settings: object = None) -> C:
        return self.conv
