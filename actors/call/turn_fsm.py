"""TurnTaker's Mealy machine: who holds the floor, barge-in, and per-turn latency.

``decide(state, msg, now) -> (state, actions)`` is pure: frozen state in, frozen state and a list
of actions out, no clock, no I/O (Erlang ``gen_statem`` style; tested without an event loop).

Floor (one of :class:`Floor`)::

    IDLE --speech started--> CALLER --speech stopped / USER transcript--> THINKING
    THINKING|CALLER|IDLE --assistant turn started--> ASSISTANT
    ASSISTANT --all open turns finished playing--> IDLE (or CALLER if the caller is talking)
    ASSISTANT --barge-in--> INTERRUPTED --interrupted turns reported--> CALLER | THINKING | IDLE

The call starts in ASSISTANT: the greeting (turn 0) is playing; without a greeting
(``TurnSettings.greeting`` False) it starts IDLE with no turn open, so the caller's first words
are not taken for a barge-in on a greeting that never plays.

Barge-in: any of Sonic's two signals (the ``interrupted`` text marker, ``contentEnd``
INTERRUPTED), or -- if ``local_vad_barge_in`` -- the local VAD reporting continuous caller speech
for ``min_barge_in_speech_ms`` while the assistant holds the floor (a state time-out: armed on
speech start, cancelled on speech stop or when the assistant stops speaking; the shell delivers
:class:`GuardElapsed` at :attr:`TurnState.deadline`). A barge-in acts only if an assistant turn
newer than the last interrupted one is open, so the second signal of the same interruption is a
no-op: once per generation. Acting means: bump the generation, ``ClearPlayback`` through the
newest open turn, record it. A local-VAD barge-in is also reported to SonicSession
(``LocalBargeIn``): Sonic did not signal it, so the model does not know it was cut off. The VAD's
``CallerSpeechStopped`` is forwarded to SonicSession too (it owes the caller an answer from then on).

Latency: the pending end of speech is the last VAD ``CallerSpeechStopped.ended_at`` since the caller
last started talking, else the arrival of Sonic's FINAL USER transcript. It is consumed by the
next assistant turn: model time ends at ``AssistantTurnStarted.at`` (first audio from Sonic), gateway
time at ``PlaybackStarted.at`` (first media sent).

Intents: ``IntentMatched`` makes the intent's cached prompt the assistant's turn at once: playback
is cleared if the assistant is speaking (``ClearPlayback`` with source ``intent``, not a barge-in),
then ``PlayPrompt`` goes to PlaybackEgress; the floor is the assistant's. The prompt consumes the
pending end of speech (a DTMF trigger brings its key's time instead) and, when its first media
went out, yields an :class:`~actors.call.report.IntentLatency`. When the prompt's playback is
over, ``PromptPlayed`` goes to SonicSession (instead of a ``HeardReport``: the prompt is not in
the model's history).
"""

from __future__ import annotations

import enum
from typing import Final, assert_never

import attrs
import msgspec

from actors.call.protocol import (
    GREETING_TURN_ID,
    AssistantTurnEnded,
    AssistantTurnStarted,
    BargeInDetected,
    BargeInSource,
    CallerSpeechStarted,
    CallerSpeechStopped,
    ClearPlayback,
    HeardReport,
    IntentMatched,
    LocalBargeIn,
    PlaybackFinished,
    PlaybackStarted,
    PlayPrompt,
    PromptPlayed,
    TurnControl,
    UserTranscribed,
)
from actors.call.report import BargeInRecord, EndOfSpeechSource, IntentLatency, TurnLatency

__all__ = [
    "MIN_BARGE_IN_SPEECH_MS",
    "Floor",
    "GuardElapsed",
    "OpenTurn",
    "TurnAction",
    "TurnInput",
    "TurnSettings",
    "TurnState",
    "decide",
    "initial_state",
]

MIN_BARGE_IN_SPEECH_MS: Final = 250.0
"""Default continuous caller speech (ms) before a local-VAD barge-in: a cough is shorter."""


class Floor(enum.Enum):
    """Who holds the conversational floor."""

    IDLE = "idle"
    CALLER = "caller_speaking"
    THINKING = "assistant_thinking"
    ASSISTANT = "assistant_speaking"
    INTERRUPTED = "interrupted"


class GuardElapsed(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The local-VAD barge-in guard's time-out fired at ``at`` (delivered by the shell)."""

    at: float


TurnInput = TurnControl | GuardElapsed
TurnAction = (
    ClearPlayback
    | PlayPrompt
    | HeardReport
    | PromptPlayed
    | CallerSpeechStopped
    | LocalBargeIn
    | TurnLatency
    | IntentLatency
    | BargeInRecord
)
"""``ClearPlayback`` / ``PlayPrompt`` -> PlaybackEgress.control; ``HeardReport``, ``PromptPlayed``,
``CallerSpeechStopped`` and ``LocalBargeIn`` -> SonicSession.control; records -> the journal (and
the per-turn log line)."""


@attrs.frozen
class TurnSettings:
    """TurnTaker's options (from ``CallDeps``)."""

    local_vad_barge_in: bool = False
    min_barge_in_speech_ms: float = MIN_BARGE_IN_SPEECH_MS
    greeting: bool = True
    """The call opens with a greeting (turn 0); False: the floor starts idle."""


@attrs.frozen
class OpenTurn:
    """An assistant turn that started and has not finished playing."""

    turn_id: int
    model_audio_at: float | None = None
    end_of_speech_at: float | None = None
    end_of_speech: EndOfSpeechSource | None = None
    model_done: bool = False
    first_sent_at: float | None = None
    eos_pending: bool = False
    """The turn started while the VAD still heard the caller: its end of speech is settled by the
    VAD's (later) stop, whose ``ended_at`` precedes the turn -- the VAD's release hangover can be
    longer than Sonic's endpointing."""
    measured: bool = False
    intent: str | None = None
    """The intent whose cached prompt this turn is (None: Sonic's turn or the greeting)."""
    matched_at: float | None = None
    """When that intent matched."""


@attrs.frozen
class TurnState:
    """The whole state of the machine; replace, never mutate."""

    floor: Floor = Floor.ASSISTANT
    generation: int = 0
    open_turns: tuple[OpenTurn, ...] = (OpenTurn(turn_id=GREETING_TURN_ID, model_done=True),)
    interrupted_through: int = -1
    caller_speaking: bool = False
    end_of_speech_at: float | None = None
    end_of_speech: EndOfSpeechSource | None = None
    deadline: float | None = None
    """Local-VAD barge-in guard time-out; the shell delivers ``GuardElapsed`` then."""
    barge_ins: int = 0
    barge_ins_ignored: int = 0
    """Signals with no uninterrupted assistant turn open (the second signal of one barge-in)."""
    false_barge_ins_avoided: int = 0
    """Caller speech over the assistant that stopped before the minimum-speech guard."""

    def speaking_turns(self) -> tuple[OpenTurn, ...]:
        """Open turns not yet interrupted: the assistant is speaking while this is non-empty."""
        return tuple(t for t in self.open_turns if t.turn_id > self.interrupted_through)


def initial_state(settings: TurnSettings) -> TurnState:
    """The state a call starts in: the greeting playing, or idle without one."""
    if settings.greeting:
        return TurnState()
    return TurnState(floor=Floor.IDLE, open_turns=())


def decide(
    state: TurnState, msg: TurnInput, now: float, settings: TurnSettings
) -> tuple[TurnState, list[TurnAction]]:
    """Apply one input; returns the new state and the actions to perform, in order."""
    match msg:
        case CallerSpeechStarted(started_at=started_at):
            deadline = None
            if settings.local_vad_barge_in and state.speaking_turns():
                deadline = started_at + settings.min_barge_in_speech_ms / 1000.0
            floor: Floor = (
                Floor.CALLER if state.floor in (Floor.IDLE, Floor.THINKING) else state.floor
            )
            state = attrs.evolve(
                state,
                floor=floor,
                caller_speaking=True,
                end_of_speech_at=None,
                end_of_speech=None,
                deadline=deadline,
            )
            if deadline is not None and deadline <= now:
                return _barge_in(state, "local_vad", now)
            return state, []
        case CallerSpeechStopped(ended_at=ended_at):
            avoided = state.false_barge_ins_avoided + (state.deadline is not None)
            after: Floor = Floor.THINKING if state.floor is Floor.CALLER else state.floor
            actions: list[TurnAction] = [msg]  # forwarded: SonicSession now owes an answer
            consumed = False
            for pending in state.open_turns:
                if not pending.eos_pending:
                    continue
                settled = attrs.evolve(pending, eos_pending=False)
                if pending.model_audio_at is not None and ended_at <= pending.model_audio_at:
                    settled = attrs.evolve(settled, end_of_speech_at=ended_at, end_of_speech="vad")
                    consumed = True
                settled, measured = _measure(settled)
                actions.extend(measured)
                state = _replace_turn(state, settled)
            return attrs.evolve(
                state,
                floor=after,
                caller_speaking=False,
                end_of_speech_at=None if consumed else ended_at,
                end_of_speech=None if consumed else "vad",
                deadline=None,
                false_barge_ins_avoided=avoided,
            ), actions
        case UserTranscribed(at=at):
            if state.end_of_speech_at is None:
                state = attrs.evolve(state, end_of_speech_at=at, end_of_speech="transcript")
            if state.floor in (Floor.IDLE, Floor.CALLER):
                state = attrs.evolve(state, floor=Floor.THINKING)
            return state, []
        case AssistantTurnStarted(turn_id=turn_id, at=at):
            if turn_id <= state.interrupted_through:
                return state, []
            turn = _find(state, turn_id)
            fresh = OpenTurn(
                turn_id=turn_id,
                model_audio_at=at,
                end_of_speech_at=state.end_of_speech_at,
                end_of_speech=state.end_of_speech,
                eos_pending=state.caller_speaking and state.end_of_speech != "vad",
            )
            if turn is not None:  # PlaybackStarted overtook us: keep what it recorded
                fresh = attrs.evolve(turn, model_audio_at=at)
            state = _replace_turn(state, fresh)
            return attrs.evolve(
                state, floor=Floor.ASSISTANT, end_of_speech_at=None, end_of_speech=None
            ), []
        case AssistantTurnEnded(turn_id=turn_id):
            turn = _find(state, turn_id)
            if turn is None:
                return state, []
            return _replace_turn(state, attrs.evolve(turn, model_done=True)), []
        case PlaybackStarted(turn_id=turn_id, at=at):
            if turn_id <= state.interrupted_through:
                return state, []
            turn = _find(state, turn_id) or OpenTurn(turn_id=turn_id)
            if turn.first_sent_at is not None:
                return state, []
            turn, measured = _measure(attrs.evolve(turn, first_sent_at=at))
            state = _replace_turn(state, turn)
            if state.floor is not Floor.INTERRUPTED:
                state = attrs.evolve(state, floor=Floor.ASSISTANT)
            return state, measured
        case PlaybackFinished(
            turn_id=turn_id, interrupted=interrupted, position_ms=heard, total_ms=total, at=at
        ):
            actions = []
            finished = _find(state, turn_id)
            if finished is not None and finished.intent is not None:
                actions.append(PromptPlayed(turn_id=turn_id, interrupted=interrupted, at=at))
            elif interrupted and turn_id != GREETING_TURN_ID:
                actions.append(HeardReport(turn_id=turn_id, heard_ms=heard, total_ms=total, at=at))
            remaining = tuple(t for t in state.open_turns if t.turn_id != turn_id)
            state = attrs.evolve(state, open_turns=remaining)
            if not state.speaking_turns():
                state = attrs.evolve(state, deadline=None)
            if not remaining:
                if state.caller_speaking:
                    rest = Floor.CALLER
                elif state.floor is Floor.INTERRUPTED and state.end_of_speech_at is not None:
                    rest = Floor.THINKING
                else:
                    rest = Floor.IDLE
                state = attrs.evolve(state, floor=rest)
            return state, actions
        case IntentMatched():
            return _intent(state, msg)
        case BargeInDetected(source=source, at=at):
            return _barge_in(state, source, at)
        case GuardElapsed(at=at):
            if state.deadline is None or not state.caller_speaking:
                return attrs.evolve(state, deadline=None), []
            return _barge_in(state, "local_vad", at)
        case _:
            assert_never(msg)


def _barge_in(
    state: TurnState, source: BargeInSource, at: float
) -> tuple[TurnState, list[TurnAction]]:
    speaking = state.speaking_turns()
    if not speaking:
        return attrs.evolve(state, barge_ins_ignored=state.barge_ins_ignored + 1, deadline=None), []
    through = max(t.turn_id for t in speaking)
    generation = state.generation + 1
    clear = ClearPlayback(
        generation=generation, through_turn_id=through, source=source, signal_at=at, at=at
    )
    record = BargeInRecord(source=source, signal_at=at, turn_id=through, generation=generation)
    actions: list[TurnAction] = [clear, record]
    if source == "local_vad":
        actions.append(LocalBargeIn(turn_id=through, at=at))
    state = attrs.evolve(
        state,
        floor=Floor.INTERRUPTED,
        generation=generation,
        interrupted_through=through,
        deadline=None,
        barge_ins=state.barge_ins + 1,
    )
    return state, actions


def _intent(state: TurnState, msg: IntentMatched) -> tuple[TurnState, list[TurnAction]]:
    """The intent's prompt takes the floor now: clear what the assistant is saying, play it."""
    actions: list[TurnAction] = []
    speaking = state.speaking_turns()
    generation = state.generation
    interrupted_through = state.interrupted_through
    if speaking:
        through = max(t.turn_id for t in speaking)
        generation += 1
        interrupted_through = through
        actions.append(
            ClearPlayback(
                generation=generation,
                through_turn_id=through,
                source="intent",
                signal_at=msg.at,
                at=msg.at,
            )
        )
    if msg.trigger_at is not None:
        caller_at: float | None = msg.trigger_at
        caller: EndOfSpeechSource | None = None
    else:
        caller_at, caller = state.end_of_speech_at, state.end_of_speech
    prompt = OpenTurn(
        turn_id=msg.turn_id,
        model_audio_at=msg.at,
        end_of_speech_at=caller_at,
        end_of_speech=caller,
        model_done=True,
        intent=msg.intent,
        matched_at=msg.at,
    )
    actions.append(PlayPrompt(turn_id=msg.turn_id, ulaw=msg.ulaw, at=msg.at))
    state = attrs.evolve(
        state,
        floor=Floor.ASSISTANT,
        generation=generation,
        interrupted_through=interrupted_through,
        end_of_speech_at=None,
        end_of_speech=None,
        deadline=None,
    )
    return _replace_turn(state, prompt), actions


def _find(state: TurnState, turn_id: int) -> OpenTurn | None:
    for turn in state.open_turns:
        if turn.turn_id == turn_id:
            return turn
    return None


def _replace_turn(state: TurnState, turn: OpenTurn) -> TurnState:
    turns = [t for t in state.open_turns if t.turn_id != turn.turn_id]
    turns.append(turn)
    turns.sort(key=lambda t: t.turn_id)
    return attrs.evolve(state, open_turns=tuple(turns))


def _measure(turn: OpenTurn) -> tuple[OpenTurn, list[TurnAction]]:
    """Emit the turn's latency once its first send is known and its end of speech settled.

    The greeting (turn 0) is not measured here: it has no end of speech (the report has its own
    start -> first media figure).
    """
    if (
        turn.measured
        or turn.first_sent_at is None
        or turn.eos_pending
        or turn.turn_id == GREETING_TURN_ID
    ):
        return turn, []

    def ms(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round((b - a) * 1000.0, 2)

    if turn.intent is not None:
        media = ms(turn.matched_at, turn.first_sent_at)
        assert media is not None  # both set: the match made the turn, the send measured it
        caller = ms(turn.end_of_speech_at, turn.matched_at)
        intent = IntentLatency(
            turn_id=turn.turn_id,
            intent=turn.intent,
            caller=turn.end_of_speech
            if turn.end_of_speech is not None
            else ("dtmf" if turn.end_of_speech_at is not None else None),
            caller_ms=caller,
            media_ms=media,
            total_ms=ms(turn.end_of_speech_at, turn.first_sent_at) if caller is not None else None,
        )
        return attrs.evolve(turn, measured=True), [intent]
    model = ms(turn.end_of_speech_at, turn.model_audio_at)
    latency = TurnLatency(
        turn_id=turn.turn_id,
        end_of_speech=turn.end_of_speech,
        model_ms=model,
        gateway_ms=ms(turn.model_audio_at, turn.first_sent_at),
        total_ms=ms(turn.end_of_speech_at, turn.first_sent_at) if model is not None else None,
    )
    return attrs.evolve(turn, measured=True), [latency]
