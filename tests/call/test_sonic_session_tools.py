"""SonicSession's tool shell: a tool use never holds up the model's event stream, and pending tools
are cancelled when the session stops. A fake conversation stands in for Sonic (the path through the
real client, the emulator and a real receiver is tests/replay/test_replay_tools.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest

from actors.call.protocol import (
    AssistantAudio,
    CallerAudio,
    PlaybackData,
    SonicControl,
    TurnControl,
)
from actors.call.report import CallJournal
from actors.call.sonic_session import SessionMemory, SonicSession
from actors.runtime import Mailbox, Overflow
from actors.sonic import SonicAudio, SonicSettings, ToolUseRequested
from actors.tools import Toolbox, ToolResult
from tests.call.fake_sonic import FakeConnector, FakeConversation

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio


class GatedTool:
    name = "slow"

    def __init__(self) -> None:
        self.gate = anyio.Event()

    async def invoke(self, input_json: str) -> ToolResult:
        await self.gate.wait()
        return ToolResult(outcome="ok", content_json='{"done":true}')


class ToolUser(FakeConversation):
    """Emits a tool use, then model audio; records the tool results."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[tuple[str, str]] = []
        self.answered = anyio.Event()

    async def _events(self) -> AsyncIterator[Any]:
        yield ToolUseRequested(tool_use_id="t1", name="slow", arguments_json='{"q":1}')
        yield SonicAudio(pcm=b"\0\0" * 160, rate=24000, turn_id=1)
        await anyio.sleep_forever()

    async def send_tool_result(self, tool_use_id: str, content_json: str) -> bool:
        self.results.append((tool_use_id, content_json))
        self.answered.set()
        return True


def make_session(
    tool: GatedTool,
) -> tuple[SonicSession, FakeConnector[ToolUser], Mailbox[PlaybackData], CallJournal]:
    connector = FakeConnector(ToolUser())
    playback: Mailbox[PlaybackData] = Mailbox("playback.data", 4, Overflow.BLOCK)
    journal = CallJournal(started_at=anyio.current_time())
    session = SonicSession(
        connector=connector,  # type: ignore[arg-type]
        audio=Mailbox[CallerAudio]("sonic.audio", 4, Overflow.DROP_OLDEST),
        control=Mailbox[SonicControl]("sonic.control", 16, Overflow.BLOCK),
        playback_data=playback,
        turn_control=Mailbox[TurnControl]("turn.control", 4, Overflow.BLOCK),
        memory=SessionMemory.for_settings(SonicSettings()),
        journal=journal,
        tools=Toolbox([tool]),
    )
    return session, connector, playback, journal


async def test_model_audio_flows_while_a_tool_runs_and_the_result_follows() -> None:
    tool = GatedTool()
    session, connector, playback, journal = make_session(tool)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(session.run)
            audio = await playback.receive()  # arrives while the tool is still blocked
            assert isinstance(audio, AssistantAudio)
            assert connector.conv.results == []
            assert msgspec.to_builtins(session.statistics())["counters"]["tools_in_flight"] == 1
            tool.gate.set()
            await connector.conv.answered.wait()
            session.request_stop()
    assert connector.conv.results == [("t1", '{"done":true}')]
    report = journal.report(call_sid="CA1", stream_sid="MZ1", now=anyio.current_time())
    assert [(t.name, t.outcome, t.delivered) for t in report.tools] == [("slow", "ok", True)]


async def test_a_pending_tool_is_cancelled_when_the_session_stops() -> None:
    tool = GatedTool()
    session, connector, playback, journal = make_session(tool)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(session.run)
            await playback.receive()
            session.request_stop()
    assert connector.conv.results == []
    report = journal.report(call_sid="CA1", stream_sid="MZ1", now=anyio.current_time())
    assert [(t.outcome, t.delivered) for t in report.tools] == [("cancelled", False)]
