"""SonicSession's fault handling with a fake conversation (no stream, no emulator): the hold prompt
while a restarted session opens, the stall watchdog's cue, and a barge-in the model never heard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import anyio
import pytest

import audiocodec
from actors.call.protocol import (
    AssistantAudio,
    AssistantAudioEnded,
    AssistantTurnEnded,
    AssistantTurnStarted,
    CallerAudio,
    CallerSpeechStopped,
    HeardReport,
    LocalBargeIn,
    PlaybackData,
    SonicControl,
    TurnControl,
)
from actors.call.report import CallJournal
from actors.call.session_watch import INTERRUPTION_PREFIX, LossWatch, UnheardBargeIn
from actors.call.sonic_session import SessionMemory, SonicSession
from actors.runtime import Mailbox, Overflow
from actors.sonic import SonicBargeIn, SonicSettings
from tests.call.fake_sonic import FakeConnector, FakeConversation

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

HOLD = b"\x10" * 800  # 100 ms of a constant μ-law byte


class Scripted(FakeConversation):
    """Opens after ``open_s``; events come from :attr:`feed`; records texts and stall cues."""

    def __init__(self, open_s: float = 0.0) -> None:
        self.feed, self._events_rx = anyio.create_memory_object_stream[Any](8)
        super().__init__()
        self.open_s = open_s
        self.texts: list[str] = []
        self.text_sent = anyio.Event()
        self.stall_cues = 0
        self.stop_deadlines: list[float] = []

    async def _events(self) -> AsyncIterator[Any]:
        async for event in self._events_rx:
            yield event

    async def __aenter__(self) -> Self:
        await anyio.sleep(self.open_s)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.feed.close()
        self._events_rx.close()

    async def send_user_text(self, text: str) -> bool:
        self.texts.append(text)
        self.text_sent.set()
        return True

    def expect_output(self) -> None:
        self.stall_cues += 1

    def stop_by(self, deadline: float) -> None:
        self.stop_deadlines.append(deadline)


def session_for(
    conv: Scripted, memory: SessionMemory | None = None, **options: Any
) -> tuple[SonicSession, Mailbox[SonicControl], Mailbox[PlaybackData], Mailbox[TurnControl]]:
    control: Mailbox[SonicControl] = Mailbox("sonic.control", 16, Overflow.BLOCK)
    playback: Mailbox[PlaybackData] = Mailbox("playback.data", 32, Overflow.BLOCK)
    turns: Mailbox[TurnControl] = Mailbox("turn.control", 32, Overflow.BLOCK)
    session = SonicSession(
        connector=FakeConnector(conv),  # type: ignore[arg-type]
        audio=Mailbox[CallerAudio]("sonic.audio", 4, Overflow.DROP_OLDEST),
        control=control,
        playback_data=playback,
        turn_control=turns,
        memory=memory or SessionMemory.for_settings(SonicSettings()),
        journal=CallJournal(started_at=anyio.current_time()),
        **options,
    )
    return session, control, playback, turns


async def test_a_restarted_session_plays_hold_while_its_conversation_opens() -> None:
    # The previous SonicSession gave up on a lost session 0.9 s ago; this one takes 0.6 s to
    # open: the hold prompt is due 0.1 s in, before the conversation is open.
    memory = SessionMemory.for_settings(SonicSettings())
    memory.sessions = 1
    memory.last_turn_id = 4
    memory.loss.lost(anyio.current_time() - 0.9)
    conv = Scripted(open_s=0.6)
    session, _, playback, turns = session_for(conv, memory, hold_ulaw=HOLD, hold_after_s=1.0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(session.run)
            started = await turns.receive()
            audio = await playback.receive()
            ended = await playback.receive()
            assert isinstance(await turns.receive(), AssistantTurnEnded)
            session.request_stop()
    assert isinstance(started, AssistantTurnStarted)
    assert started.turn_id == 5  # the next call turn id
    assert isinstance(audio, AssistantAudio)
    assert (audio.turn_id, audio.rate, audio.pcm) == (5, 8000, audiocodec.ulaw_decode(HOLD))
    assert ended == AssistantAudioEnded(turn_id=5, at=ended.at)
    assert memory.last_turn_id == 5  # Sonic turn 1 of the new conversation will be call turn 6
    assert memory.loss.lost_at is None  # the new conversation opened: the loss is over
    assert session.statistics().counters["holds_played"] == 1


async def test_a_turn_long_enough_cues_the_stall_watchdog_and_a_cough_does_not() -> None:
    conv = Scripted()
    session, control, _, _ = session_for(conv)
    now = anyio.current_time()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(session.run)
            await control.send(CallerSpeechStopped(ended_at=now, speech_ms=150, at=now))
            await control.send(CallerSpeechStopped(ended_at=now, speech_ms=900, at=now))
            while session.messages_in < 2:  # noqa: ASYNC110 - test probe of the actor's counter
                await anyio.sleep(0.01)
            session.request_stop()
    assert conv.stall_cues == 1
    (deadline,) = conv.stop_deadlines  # the stop bounded the close inside the 1 s default
    assert deadline <= anyio.current_time() + 1.0


async def run_unheard(*, model_noticed: bool) -> Scripted:
    conv = Scripted()
    session, control, _, _ = session_for(conv, barge_in_confirm_s=0.2)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(session.run)
            now = anyio.current_time()
            await control.send(LocalBargeIn(turn_id=1, at=now))
            await control.send(HeardReport(turn_id=1, heard_ms=500, total_ms=2000, at=now))
            if model_noticed:
                await conv.feed.send(SonicBargeIn(turn_id=1, source="marker"))
            await control.send(
                CallerSpeechStopped(ended_at=now + 0.05, speech_ms=300, at=now + 0.05)
            )
            if model_noticed:
                await anyio.sleep(0.6)  # three times the window: nothing may be sent
            else:
                await conv.text_sent.wait()
            session.request_stop()
    return conv


async def test_a_local_barge_in_the_model_never_heard_of_is_told_to_it() -> None:
    conv = await run_unheard(model_noticed=False)
    (text,) = conv.texts
    assert text.startswith(INTERRUPTION_PREFIX)
    assert "25%" in text


async def test_a_local_barge_in_sonic_also_signalled_is_not_told_again() -> None:
    conv = await run_unheard(model_noticed=True)
    assert conv.texts == []


def test_the_loss_watch_plays_hold_after_the_delay_then_repeats() -> None:
    loss = LossWatch()
    assert loss.due_at(after_s=1.0, repeat_s=5.0) is None
    loss.lost(10.0)
    loss.lost(10.5)  # the same loss
    assert loss.due_at(after_s=1.0, repeat_s=5.0) == 11.0
    assert loss.due_at(after_s=0.0, repeat_s=5.0) is None  # hold prompts turned off
    loss.held(11.0)
    assert loss.due_at(after_s=1.0, repeat_s=5.0) == 16.0
    loss.recovered()
    assert loss.due_at(after_s=1.0, repeat_s=5.0) is None


def test_the_unheard_barge_in_watch() -> None:
    watch = UnheardBargeIn(confirm_s=2.0)
    watch.caller_stopped(1.0)
    assert watch.due_at is None  # no barge-in to confirm
    watch.barge_in(3)
    watch.heard(3, 0.5)
    watch.caller_stopped(4.0)
    assert watch.take(5.9) is None
    note = watch.take(6.0)
    assert note is not None
    assert "50%" in note
    assert watch.take(7.0) is None  # told once
    watch.barge_in(3)
    watch.caller_stopped(4.0)
    watch.model_spoke(3)  # the interrupted turn itself: not a sign
    assert watch.due_at == 6.0
    watch.model_spoke(4)  # a newer turn: the model moved on by itself
    assert watch.take(9.0) is None
