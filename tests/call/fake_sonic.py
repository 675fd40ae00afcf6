"""A fake Sonic conversation and connector for SonicSession tests (no stream, no emulator).

:class:`FakeConversation` is the part of :class:`actors.sonic.SonicConversation` SonicSession uses
when nothing in particular happens; tests subclass it to script events or record what is sent.
Like the real one, it keeps the call's history it is given (``shared_history``): FINAL texts of
the events it yields are added to it, heard reports cut them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import anyio

from actors.sonic import AssistantText, UserTranscript

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors.sonic import ConversationHistory

__all__ = ["FakeConnector", "FakeConversation"]


class FakeConversation:
    """No events until cancelled; audio and heard reports are accepted and dropped."""

    def __init__(self) -> None:
        self.events = self._noted()
        self.history: ConversationHistory | None = None

    async def _noted(self) -> AsyncIterator[Any]:
        async for event in self._events():
            history = self.history
            if history is not None:
                match event:
                    case UserTranscript(final=True):
                        history.add_user(event.text)
                    case AssistantText(stage="FINAL"):
                        history.add_assistant(event.text, turn_id=event.turn_id)
                    case _:
                        pass
            yield event

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
        if self.history is not None:
            self.history.note_heard(turn_id, fraction)

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

    def conversation(
        self,
        *,
        history: object = (),
        settings: object = None,
        shared_history: ConversationHistory | None = None,
    ) -> C:
        if shared_history is not None:
            shared_history.seal()
            self.conv.history = shared_history
        return self.conv
