"""One call's flight recorder (:class:`CallJournal`) and the report built from it (:class:`CallReport`).

Rules:

* The journal is append-only and owned by :class:`~actors.call.Call`; each actor writes only its own
  facts (ingress: end reason and frame counts; SonicSession: transcripts, handovers, restarts,
  intents matched and their tools' outcomes; TurnTaker: latencies, intent prompt latencies and
  barge-in decisions; PlaybackEgress: clears sent and playback results; SonicSession's
  ToolRunner: finished tool calls).
  It is a recorder, not a channel: no actor reads what another wrote, so it creates no coupling and
  needs no lock (one event loop, no awaits inside its methods).
* Times recorded are ``anyio.current_time()`` values; the report turns them into millisecond
  offsets from the call's start so that it is readable and msgspec-encodable.
* Assistant transcript lines are truncated to what the caller heard when a turn was interrupted
  (proportionally to heard/total audio, on a word boundary): the same rule the Sonic history uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, final

import anyio
import attrs
import msgspec

from actors.call.intents import IntentTrigger
from actors.call.protocol import BargeInSource, PlaybackFinished
from actors.tools import ToolCall, ToolOutcome

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BargeInRecord",
    "BargeInSummary",
    "CallJournal",
    "CallReport",
    "EndOfSpeechSource",
    "IntentLatency",
    "IntentRecord",
    "IntentSummary",
    "ToolCallSummary",
    "TranscriptLine",
    "TurnLatency",
    "truncate_to_heard",
]

EndOfSpeechSource = Literal["vad", "transcript"]


class TurnLatency(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Per-turn latency: caller end of speech -> first assistant audio SENT to Twilio.

    ``model_ms``: end of speech -> first assistant audio from Sonic. ``gateway_ms``: first audio
    from Sonic -> first media sent. ``total_ms`` is their sum. A turn with no caller speech before
    it (the greeting, a reply to DTMF) has no end of speech and only ``gateway_ms``.
    """

    turn_id: int
    end_of_speech: EndOfSpeechSource | None
    model_ms: float | None
    gateway_ms: float | None
    total_ms: float | None


class IntentLatency(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An intent's prompt (TurnTaker): the caller's end of speech or key -> match -> first media.

    ``caller_ms``: the caller's end of speech (``vad`` / ``transcript``, as for a turn) or the key
    that completed a DTMF trigger (``dtmf``) -> the match. ``media_ms``: the match -> the prompt's
    first ``media`` sent. ``total_ms`` is their sum (None without a caller time).
    """

    turn_id: int
    intent: str
    caller: EndOfSpeechSource | Literal["dtmf"] | None
    caller_ms: float | None
    media_ms: float
    total_ms: float | None


class IntentRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An intent SonicSession matched: which, what matched it, when, its prompt's turn, its tool."""

    intent: str
    trigger: IntentTrigger
    at: float
    turn_id: int
    tool: str


class BargeInRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """TurnTaker's decision to interrupt: the signal and the generation the clear starts."""

    source: BargeInSource
    signal_at: float
    turn_id: int
    generation: int


class TranscriptLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A FINAL transcript line; PII: logged only under ``pii_*`` keys."""

    role: Literal["USER", "ASSISTANT"]
    text: str
    at_ms: float
    turn_id: int | None = None
    truncated: bool = False
    """ASSISTANT only: cut to what the caller heard before a barge-in."""


class BargeInSummary(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One barge-in as the report shows it."""

    source: BargeInSource
    at_ms: float
    """Signal arrival, from the call's start."""
    turn_id: int
    stop_ms: float | None
    """Signal -> ``clear`` sent (None if the call ended first)."""
    heard_ms: float | None
    """How much of the interrupted turn the caller heard."""


class ToolCallSummary(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One tool call the model made: which tool, how it ended, how long it took."""

    name: str
    outcome: ToolOutcome
    """``ok``, or the structured error the model got (``timeout``, ``http_status``...), or
    ``cancelled`` (the call or its Sonic session ended first)."""
    latency_ms: float
    """Request from the model -> result sent back (or cancelled)."""
    at_ms: float
    """When the model asked, from the call's start."""
    delivered: bool
    """The result reached the model."""


class IntentSummary(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One intent that matched, as the report shows it.

    Attributes:
        intent: its name.
        trigger: ``dtmf`` (the caller's keys) or ``transcript`` (the caller's words).
        at_ms: when it matched, from the call's start.
        tool: the tool its action ran.
        outcome: that tool's outcome (None: the call ended before it finished).
        caller: what the caller time is: ``vad`` / ``transcript`` (end of speech) or ``dtmf``.
        caller_to_match_ms: the caller's end of speech or key -> the match.
        match_to_media_ms: the match -> the prompt's first ``media`` sent (the gateway's part).
        caller_to_media_ms: the caller's end of speech or key -> the prompt's first media.
    """

    intent: str
    trigger: IntentTrigger
    at_ms: float
    tool: str
    outcome: ToolOutcome | None
    caller: EndOfSpeechSource | Literal["dtmf"] | None
    caller_to_match_ms: float | None
    match_to_media_ms: float | None
    caller_to_media_ms: float | None


class CallReport(msgspec.Struct, frozen=True, kw_only=True):
    """What happened on one call: latencies, transcript, barge-ins, what was heard, why it ended."""

    call_sid: str
    stream_sid: str
    duration_ms: float
    end_reason: str
    greeting_ms: float | None
    """Call start -> first greeting media sent."""
    turns: list[TurnLatency]
    transcript: list[TranscriptLine]
    barge_ins: list[BargeInSummary]
    heard_ms: float
    """Assistant audio the caller heard, all turns (greeting included)."""
    handovers: int
    """Sonic session switches: planned (age, credentials) and recoveries from a retryable error."""
    sonic_restarts: int
    cleared_ms: float = 0.0
    """Assistant audio cut off by a barge-in (generated, never heard), all turns."""
    sonic_errors: list[str] = msgspec.field(default_factory=list)
    """The kind of every Sonic error the call met, in order: recovered, restarted or fatal."""
    tools: list[ToolCallSummary] = msgspec.field(default_factory=list)
    """Every tool call the model made (and every tool an intent ran), in the order they
    finished."""
    intents: list[IntentSummary] = msgspec.field(default_factory=list)
    """Every intent that matched, in order, with its prompt's latency."""


def truncate_to_heard(text: str, heard_ms: float, total_ms: float) -> str:
    """Cut ``text`` to the share of its audio that was heard, at a word boundary."""
    if total_ms <= 0.0 or heard_ms >= total_ms:
        return text
    keep = int(len(text) * max(0.0, heard_ms) / total_ms)
    cut = text[:keep]
    if keep < len(text) and not text[keep : keep + 1].isspace():
        cut = cut.rsplit(" ", 1)[0] if " " in cut else ""
    return cut.rstrip()


@final
@attrs.define
class CallJournal:
    """Append-only record of one call (see the module docstring)."""

    started_at: float
    end_reason: str | None = None
    end_detail: str | None = None
    """What the actor that ended the call said about it (a peer fault's message); logs only."""
    first_media_at: float | None = None
    latencies: list[TurnLatency] = attrs.field(factory=list)
    barge_ins: list[BargeInRecord] = attrs.field(factory=list)
    clears_sent: dict[int, float] = attrs.field(factory=dict)
    playbacks: dict[int, PlaybackFinished] = attrs.field(factory=dict)
    user_lines: list[tuple[float, str]] = attrs.field(factory=list)
    assistant_lines: list[tuple[float, int | None, str]] = attrs.field(factory=list)
    handovers: list[float] = attrs.field(factory=list)
    sonic_restarts: int = 0
    sonic_errors: list[str] = attrs.field(factory=list)
    tool_calls: list[tuple[float, ToolCall]] = attrs.field(factory=list)
    """``(asked at, finished call)`` per tool call, written by SonicSession's ToolRunner."""
    intents: list[IntentRecord] = attrs.field(factory=list)
    """Intents SonicSession matched, in order."""
    intent_outcomes: dict[int, ToolOutcome] = attrs.field(factory=dict)
    """The outcome of each matched intent's tool, by the intent prompt's turn id (SonicSession)."""
    intent_latencies: dict[int, IntentLatency] = attrs.field(factory=dict)
    """Each intent prompt's latency, by its turn id (TurnTaker, when its first media went out)."""
    ended_at: float | None = None

    def end(self, reason: str, at: float, detail: str | None = None) -> None:
        """Record why the call ended; the first reason wins (later ones are consequences)."""
        if self.end_reason is None:
            self.end_reason = reason
            self.end_detail = detail
            self.ended_at = at

    def record_tool_call(self, call: ToolCall) -> None:
        """A tool call finished (its start is recovered from its latency); never blocks."""
        now = anyio.current_time()
        self.tool_calls.append((now - call.latency_ms / 1000.0, call))

    def report(self, *, call_sid: str, stream_sid: str, now: float) -> CallReport:
        """Build the report (callable at any time; final once the call has ended)."""
        t0 = self.started_at

        def ms(t: float) -> float:
            return round((t - t0) * 1000.0, 1)

        transcript = [
            TranscriptLine(role="USER", text=text, at_ms=ms(at)) for at, text in self.user_lines
        ]
        for at, turn_id, text in self.assistant_lines:
            done = self.playbacks.get(turn_id) if turn_id is not None else None
            shown = text
            if done is not None and done.interrupted:
                shown = truncate_to_heard(text, done.position_ms, done.total_ms)
            transcript.append(
                TranscriptLine(
                    role="ASSISTANT",
                    text=shown,
                    at_ms=ms(at),
                    turn_id=turn_id,
                    truncated=shown != text,
                )
            )
        transcript.sort(key=lambda line: line.at_ms)
        barge_ins = []
        for b in self.barge_ins:
            cleared = self.clears_sent.get(b.generation)
            done = self.playbacks.get(b.turn_id)
            barge_ins.append(
                BargeInSummary(
                    source=b.source,
                    at_ms=ms(b.signal_at),
                    turn_id=b.turn_id,
                    stop_ms=None if cleared is None else round((cleared - b.signal_at) * 1e3, 2),
                    heard_ms=None if done is None else done.position_ms,
                )
            )
        end = self.ended_at if self.ended_at is not None else now
        return CallReport(
            call_sid=call_sid,
            stream_sid=stream_sid,
            duration_ms=ms(end),
            end_reason=self.end_reason or "running",
            greeting_ms=None if self.first_media_at is None else ms(self.first_media_at),
            turns=list(self.latencies),
            transcript=transcript,
            barge_ins=barge_ins,
            heard_ms=sum(p.position_ms for p in self.playbacks.values()),
            handovers=len(self.handovers),
            sonic_restarts=self.sonic_restarts,
            cleared_ms=sum(
                max(0.0, p.total_ms - p.position_ms)
                for p in self.playbacks.values()
                if p.interrupted
            ),
            sonic_errors=list(self.sonic_errors),
            tools=[
                ToolCallSummary(
                    name=call.name,
                    outcome=call.outcome,
                    latency_ms=call.latency_ms,
                    at_ms=ms(at),
                    delivered=call.delivered,
                )
                for at, call in self.tool_calls
            ],
            intents=[self._intent_summary(record, ms) for record in self.intents],
        )

    def _intent_summary(self, record: IntentRecord, ms: Callable[[float], float]) -> IntentSummary:
        latency = self.intent_latencies.get(record.turn_id)
        return IntentSummary(
            intent=record.intent,
            trigger=record.trigger,
            at_ms=ms(record.at),
            tool=record.tool,
            outcome=self.intent_outcomes.get(record.turn_id),
            caller=None if latency is None else latency.caller,
            caller_to_match_ms=None if latency is None else latency.caller_ms,
            match_to_media_ms=None if latency is None else latency.media_ms,
            caller_to_media_ms=None if latency is None else latency.total_ms,
        )
