"""SonicSession's intent shell with a fake conversation: a match takes the floor at once, the
model's own answer is withheld, the action runs, the model gets a note (the whole stack, emulator and
simulated Twilio included, is tests/replay/test_replay_intents.py)."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from actors.call.dtmf import DtmfSettings
from actors.call.intents import INTENT_NOTE_PREFIX, IntentBook, IntentRule
from actors.call.prompts import PromptCache
from actors.call.protocol import (
    AssistantAudio,
    AssistantTurnEnded,
    AssistantTurnStarted,
    CallerAudio,
    CallerDtmf,
    IntentMatched,
    PlaybackData,
    PromptPlayed,
    SonicControl,
    TurnControl,
    UserTranscribed,
)
from actors.call.report import CallJournal
from actors.call.sonic_session import SessionMemory, SonicSession
from actors.errors import SonicError, SonicFatalError, SonicRetryableError
from actors.runtime import Mailbox, Overflow
from actors.sonic import (
    AssistantText,
    SonicAudio,
    SonicAudioEnded,
    SonicBargeIn,
    SonicSettings,
    ToolUseRequested,
    UserTranscript,
)
from actors.tools import (
    CallAction,
    EndCall,
    EndCallTool,
    Toolbox,
    ToolResult,
    TransferCall,
    TransferCallTool,
)
from tests.call.fake_sonic import FakeConnector, FakeConversation

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from actors.sonic import SonicEvent

pytestmark = pytest.mark.anyio

TWIML = b"<Response><Dial><Number>+15551234567</Number></Dial></Response>"
PROMPTS = PromptCache.bundled()


class HoursTool:
    name = "opening_hours"

    def __init__(self) -> None:
        self.inputs: list[str] = []

    async def invoke(self, input_json: str) -> ToolResult:
        self.inputs.append(input_json)
        return ToolResult(outcome="ok", content_json='{"open":"9-17"}')


class Scripted(FakeConversation):
    """Events the test pushes; records the USER texts and heard reports."""

    def __init__(self) -> None:
        self.send, self._receive = anyio.create_memory_object_stream[Any](16)
        super().__init__()
        self.texts: list[str] = []
        self.heard: list[tuple[int | None, float]] = []
        self.text_sent = anyio.Event()
        self.results: list[tuple[str, str]] = []
        self.result_sent = anyio.Event()

    async def _events(self) -> AsyncIterator[Any]:
        async for event in self._receive:
            yield event
        await anyio.sleep_forever()

    async def send_user_text(self, text: str) -> bool:
        self.texts.append(text)
        self.text_sent.set()
        self.text_sent = anyio.Event()
        return True

    def note_heard(self, turn_id: int | None, fraction: float) -> None:
        self.heard.append((turn_id, fraction))
        super().note_heard(turn_id, fraction)

    async def send_tool_result(self, tool_use_id: str, content_json: str) -> bool:
        self.results.append((tool_use_id, content_json))
        self.result_sent.set()
        return True

    def close(self) -> None:
        self.send.close()
        self._receive.close()


BOOK = IntentBook(
    [
        IntentRule(
            name="operator",
            prompt="transferring",
            prompt_text="Transferring your call now.",
            tool="transfer_call",
            input_json='{"target":"sales"}',
            digits="0",
            keywords=("a person",),
        ),
        IntentRule(
            name="hours",
            prompt="hold",
            prompt_text="Please hold for a moment.",
            tool="opening_hours",
            input_json='{"branch":"main"}',
            digits="12",
            pattern=re.compile(r"\bopening hours\b", re.IGNORECASE),
        ),
        IntentRule(name="bye", prompt="goodbye", prompt_text="Bye.", tool="end_call", digits="9"),
    ]
)


class Harness:
    def __init__(
        self,
        *,
        memory: SessionMemory | None = None,
        connector: Callable[[Scripted], FakeConnector[Scripted]] = FakeConnector,
        model_tools: bool = True,
    ) -> None:
        self.conv = Scripted()
        self.connector = connector(self.conv)
        self.control: Mailbox[SonicControl] = Mailbox("sonic.control", 16, Overflow.BLOCK)
        self.turn: Mailbox[TurnControl] = Mailbox("turn.control", 64, Overflow.BLOCK)
        self.playback: Mailbox[PlaybackData] = Mailbox("playback.data", 64, Overflow.BLOCK)
        self.journal = CallJournal(started_at=anyio.current_time())
        self.memory = memory or SessionMemory.for_settings(SonicSettings())
        self.actions: list[CallAction] = []
        self.acted = anyio.Event()
        self.hours = HoursTool()
        everything = Toolbox([TransferCallTool({"sales": TWIML}), EndCallTool(), self.hours])
        self.session = SonicSession(
            connector=self.connector,  # type: ignore[arg-type]
            audio=Mailbox[CallerAudio]("sonic.audio", 4, Overflow.DROP_OLDEST),
            control=self.control,
            playback_data=self.playback,
            turn_control=self.turn,
            memory=self.memory,
            journal=self.journal,
            dtmf=DtmfSettings(interdigit_ms=60_000),
            tools=everything if model_tools else Toolbox(),
            on_action=self.on_action,
            intents=BOOK,
            intent_tools=None if model_tools else everything,
            prompts=PROMPTS,
        )

    def on_action(self, action: CallAction) -> None:
        self.actions.append(action)
        self.acted.set()

    async def push(self, *events: SonicEvent) -> None:
        for event in events:
            await self.conv.send.send(event)

    async def next_turn_message(self) -> TurnControl:
        return await self.turn.receive()

    async def text(self, number: int) -> str:
        """The ``number``-th USER text the model got (1-based), once it was sent."""
        while len(self.conv.texts) < number:
            await self.conv.text_sent.wait()
        return self.conv.texts[number - 1]

    def audio_turns(self) -> list[int]:
        turns = []
        while True:
            try:
                msg = self.playback.receive_nowait()
            except anyio.WouldBlock:
                return turns
            if isinstance(msg, AssistantAudio):
                turns.append(msg.turn_id)


@pytest.fixture
def harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**options: Any) -> Harness:
        made.append(Harness(**options))
        return made[-1]

    yield make
    for h in made:
        h.conv.close()


def audio(turn: int) -> SonicAudio:
    return SonicAudio(pcm=b"\0\0" * 240, rate=24000, turn_id=turn)


async def test_key_0_takes_the_floor_tells_the_model_and_transfers_once_the_prompt_played(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            await h.control.send(CallerDtmf(digit="0", at=anyio.current_time()))
            matched = await h.next_turn_message()
            assert isinstance(matched, IntentMatched)
            assert (matched.turn_id, matched.intent) == (1, "operator")
            assert matched.ulaw == PROMPTS.get("transferring")
            assert matched.trigger_at is not None
            note = await h.text(1)
            assert note.startswith(INTENT_NOTE_PREFIX)
            assert "pressed 0" in note
            assert "transferred to sales" in note
            assert not h.actions  # not before the caller heard the prompt
            # The model answers the note: withheld, the call is ending.
            await h.push(audio(1), SonicAudioEnded(turn_id=1, stop_reason="END_TURN"))
            await h.control.send(PromptPlayed(turn_id=1, interrupted=False, at=0.0))
            await h.acted.wait()
            h.session.request_stop()
    (action,) = h.actions
    assert isinstance(action, TransferCall)
    assert (action.target, action.announced, action.twiml) == ("sales", True, TWIML)
    assert h.audio_turns() == []
    assert not h.conv.texts[0].startswith("DTMF")  # the entry was the intent's, not the model's
    (record,) = h.journal.intents
    assert (record.intent, record.trigger, record.turn_id, record.tool) == (
        "operator",
        "dtmf",
        1,
        "transfer_call",
    )
    assert h.journal.intent_outcomes == {1: "ok"}
    ((_, call),) = h.journal.tool_calls
    assert (call.name, call.outcome, call.delivered) == ("transfer_call", "ok", True)


async def test_the_models_own_end_call_is_ignored_while_an_intents_transfer_is_pending(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            await h.control.send(CallerDtmf(digit="0", at=anyio.current_time()))
            await h.next_turn_message()
            await h.text(1)
            # Told the call is being transferred, the model hangs up: answered, not acted on.
            await h.push(ToolUseRequested(tool_use_id="t1", name="end_call", arguments_json="{}"))
            await h.conv.result_sent.wait()
            assert not h.actions
            await h.control.send(PromptPlayed(turn_id=1, interrupted=False, at=0.0))
            await h.acted.wait()
            h.session.request_stop()
    (action,) = h.actions
    assert isinstance(action, TransferCall)
    assert h.conv.results == [("t1", '{"status":"ending_call"}')]


async def test_an_intent_runs_a_tool_this_calls_model_is_not_offered(
    harness: Callable[..., Harness],
) -> None:
    h = harness(model_tools=False)  # e.g. a route that offers the model no tools
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            await h.control.send(CallerDtmf(digit="0", at=anyio.current_time()))
            await h.next_turn_message()
            assert "transferred to sales" in await h.text(1)
            h.session.request_stop()
    assert h.journal.intent_outcomes == {1: "ok"}


async def test_a_second_intent_waits_for_its_own_prompt_not_the_first_ones(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            now = anyio.current_time()
            for key in "12":
                await h.control.send(CallerDtmf(digit=key, at=now))
            first = await h.next_turn_message()
            await h.text(1)  # the hours tool answered; the intent is done
            await h.control.send(PromptPlayed(turn_id=first.turn_id, interrupted=False, at=0))
            await h.control.send(CallerDtmf(digit="0", at=anyio.current_time()))
            second = await h.next_turn_message()
            assert isinstance(second, IntentMatched)
            await h.text(2)
            await anyio.wait_all_tasks_blocked()  # the flow now waits for the prompt's end
            assert not h.actions  # the hold prompt's end is not the transferring prompt's
            await h.control.send(PromptPlayed(turn_id=second.turn_id, interrupted=False, at=0))
            await h.acted.wait()
            h.session.request_stop()
    assert isinstance(h.actions[0], TransferCall)


async def test_digits_another_intent_extends_wait_for_the_entry_to_end(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            now = anyio.current_time()
            await h.control.send(CallerDtmf(digit="1", at=now))  # "12" may follow: no match yet
            await h.control.send(CallerDtmf(digit="2", at=now + 0.1))
            matched = await h.next_turn_message()
            assert isinstance(matched, IntentMatched)
            assert matched.intent == "hours"
            note = await h.text(1)
            assert '{"open":"9-17"}' in note
            h.session.request_stop()
    assert h.hours.inputs == ['{"branch":"main"}']


async def test_a_spoken_intent_withholds_the_models_answer_then_plays_its_answer_to_the_note(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            await h.push(
                UserTranscript(text="what are your opening", final=False),
                UserTranscript(text="What are your opening hours?", final=True),
                UserTranscript(text="opening hours, I said", final=True),  # same caller turn
            )
            first = await h.next_turn_message()
            assert isinstance(first, UserTranscribed)
            matched = await h.next_turn_message()
            assert isinstance(matched, IntentMatched)
            assert (matched.intent, matched.turn_id, matched.trigger_at) == ("hours", 1, None)
            again = await h.next_turn_message()
            assert isinstance(again, UserTranscribed)  # no second match for the same turn
            # The model's answer to the caller's words: withheld; only then does the note go.
            await h.push(
                audio(1),
                AssistantText(text="We open at nine.", stage="FINAL", turn_id=1),
                SonicAudioEnded(turn_id=1, stop_reason="END_TURN"),
                SonicBargeIn(turn_id=1, source="marker"),
            )
            note = await h.text(1)
            assert "was not played" in note
            assert '{"open":"9-17"}' in note
            # Its answer to the note is played again.
            await h.push(
                audio(2),
                AssistantText(text="From nine to five.", stage="FINAL", turn_id=2),
                SonicAudioEnded(turn_id=2, stop_reason="END_TURN"),
            )
            started = await h.next_turn_message()
            assert started == AssistantTurnStarted(turn_id=3, at=started.at)
            ended = await h.next_turn_message()
            assert ended == AssistantTurnEnded(turn_id=3, at=ended.at)
            played = h.playback.receive_nowait()
            assert isinstance(played, AssistantAudio)
            assert played.turn_id == 3
            counters = h.session.statistics().counters
            h.session.request_stop()
    assert h.audio_turns() == []  # the withheld turn 2 never reached playback
    assert [text for _, _, text in h.journal.assistant_lines] == ["From nine to five."]
    said = [t.text for t in h.memory.history.shaped() if t.role == "ASSISTANT"]
    assert said == ["From nine to five."]  # the withheld answer was never heard
    assert (1, 0.0) in h.conv.heard
    assert (counters["intents_matched"], counters["turns_withheld"]) == (1, 1)


async def test_an_ending_intent_goes_ahead_when_the_prompts_end_is_never_reported(
    monkeypatch: pytest.MonkeyPatch, harness: Callable[..., Harness]
) -> None:
    monkeypatch.setattr("actors.call.intent_flow.PROMPT_SLACK_S", 0.05)
    h = harness()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            await h.control.send(CallerDtmf(digit="9", at=anyio.current_time()))
            matched = await h.next_turn_message()
            assert isinstance(matched, IntentMatched)
            assert matched.intent == "bye"
            await h.acted.wait()  # the clip's length and the slack after the match, no echo
            h.session.request_stop()
    (action,) = h.actions
    assert isinstance(action, EndCall)
    assert action.announced


async def test_a_pending_transfer_survives_a_sonic_session_restart(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            await h.control.send(CallerDtmf(digit="0", at=anyio.current_time()))
            await h.next_turn_message()
            await h.text(1)
            h.session.request_stop()
    assert not h.actions
    pending = h.memory.pending_end
    assert pending is not None
    assert not pending.acted
    again = harness(memory=h.memory)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(again.session.run)
            await again.control.send(PromptPlayed(turn_id=pending.turn_id, interrupted=False, at=0))
            await again.acted.wait()
            again.session.request_stop()
    (action,) = again.actions
    assert isinstance(action, TransferCall)
    assert pending.acted


class Opening:
    """A conversation being opened, as ``SonicConnector.conversation`` returns it: an async
    context manager that takes a stop deadline."""

    def __init__(self, opening: contextlib.AbstractAsyncContextManager[Scripted]) -> None:
        self._opening = opening

    def stop_by(self, deadline: float) -> None:
        pass

    async def __aenter__(self) -> Scripted:
        return await self._opening.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._opening.__aexit__(*exc_info)


class SlowOpening(FakeConnector[Scripted]):
    """The conversation opens only when ``release`` is set (Sonic is slow to answer)."""

    def __init__(self, conv: Scripted) -> None:
        super().__init__(conv)
        self.release = anyio.Event()

    def conversation(
        self, *, history: object = (), settings: object = None, shared_history: object = None
    ) -> Opening:
        return Opening(self._open())

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Scripted]:
        await self.release.wait()
        yield self.conv


async def test_a_key_intent_takes_the_floor_before_sonic_is_open(
    harness: Callable[..., Harness],
) -> None:
    h = harness(connector=SlowOpening)
    connector = h.connector
    assert isinstance(connector, SlowOpening)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(h.session.run)
            await h.control.send(CallerDtmf(digit="0", at=anyio.current_time()))
            matched = await h.next_turn_message()  # the prompt, while Sonic is still opening
            assert isinstance(matched, IntentMatched)
            assert h.conv.texts == []
            connector.release.set()
            note = await h.text(1)  # the model is told once it is there
            assert "pressed 0" in note
            h.session.request_stop()


class Failing(FakeConnector[Scripted]):
    """The conversation fails: on opening, or (``after_open``) when it ends."""

    error: SonicError = SonicFatalError("accessDeniedException", "no access")
    after_open = False

    def conversation(
        self, *, history: object = (), settings: object = None, shared_history: object = None
    ) -> Opening:
        return Opening(self._open())

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Scripted]:
        if not self.after_open:
            raise self.error
        yield self.conv
        raise self.error


async def test_a_fatal_sonic_error_still_ends_the_call_with_its_kind(
    harness: Callable[..., Harness],
) -> None:
    h = harness(connector=Failing)
    with anyio.fail_after(10):
        await h.session.run()  # returns normally: the call ends (a significant child)
    assert h.journal.end_reason == "sonic_fatal:accessDeniedException"
    assert h.session.state == "failed"


async def test_a_retryable_error_is_raised_as_itself(harness: Callable[..., Harness]) -> None:
    class Retryable(Failing):
        error = SonicRetryableError("modelTimeoutException", "timed out")
        after_open = True

    h = harness(connector=Retryable)
    h.session.request_stop()  # the pumps stop at once; closing the conversation raises
    with anyio.fail_after(10), pytest.raises(SonicRetryableError):
        await h.session.run()
    assert h.journal.sonic_errors == ["modelTimeoutException"]
