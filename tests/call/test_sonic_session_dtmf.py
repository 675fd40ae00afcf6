"""SonicSession's DTMF shell: keys from the control mailbox reach the model as ONE text per entry.

A fake conversation stands in for Sonic (the full path through the real client and the emulator is
the bundled ``dtmf_entry`` replay scenario).
"""

from __future__ import annotations

import anyio
import pytest

from actors.call.dtmf import DtmfSettings
from actors.call.protocol import CallerAudio, CallerDtmf, PlaybackData, SonicControl, TurnControl
from actors.call.report import CallJournal
from actors.call.sonic_session import SessionMemory, SonicSession
from actors.runtime import Mailbox, Overflow
from actors.sonic import SonicSettings
from tests.call.fake_sonic import FakeConnector, FakeConversation

pytestmark = pytest.mark.anyio


class TextRecorder(FakeConversation):
    """Records the USER texts; its event stream stays open until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.sent = anyio.Event()

    async def send_user_text(self, text: str) -> bool:
        self.texts.append(text)
        self.sent.set()
        return True


async def _run_session(
    keys: str, settings: DtmfSettings, *, texts_wanted: int
) -> tuple[list[str], SonicSession]:
    connector = FakeConnector(TextRecorder())
    control: Mailbox[SonicControl] = Mailbox("sonic.control", 16, Overflow.BLOCK)
    session = SonicSession(
        connector=connector,  # type: ignore[arg-type]
        audio=Mailbox[CallerAudio]("sonic.audio", 4, Overflow.DROP_OLDEST),
        control=control,
        playback_data=Mailbox[PlaybackData]("playback.data", 4, Overflow.BLOCK),
        turn_control=Mailbox[TurnControl]("turn.control", 4, Overflow.BLOCK),
        memory=SessionMemory.for_settings(SonicSettings()),
        journal=CallJournal(started_at=anyio.current_time()),
        dtmf=settings,
    )
    conv = connector.conv
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(session.run)
            for key in keys:
                await control.send(CallerDtmf(digit=key, at=anyio.current_time()))
            while len(conv.texts) < texts_wanted:
                conv.sent = anyio.Event()
                await conv.sent.wait()
            session.request_stop()
    return conv.texts, session


async def test_an_entry_ended_by_the_terminator_is_one_text() -> None:
    texts, session = await _run_session("1234#", DtmfSettings(interdigit_ms=60_000), texts_wanted=1)
    assert texts == ["DTMF: 1234"]
    counters = session.statistics().counters
    assert (counters["dtmf_keys"], counters["dtmf_entries"], counters["dtmf_sent"]) == (5, 1, 1)


async def test_an_entry_without_terminator_is_sent_when_the_interdigit_timer_fires() -> None:
    texts, _ = await _run_session("42", DtmfSettings(interdigit_ms=100), texts_wanted=1)
    assert texts == ["DTMF: 42"]


async def test_a_lone_terminator_and_a_length_limited_entry() -> None:
    texts, _ = await _run_session(
        "#123", DtmfSettings(interdigit_ms=60_000, max_digits=3), texts_wanted=2
    )
    assert texts == ["DTMF: #", "DTMF: 123"]
