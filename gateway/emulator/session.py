"""One emulated Nova Sonic stream: read input events, detect turns, answer, fail on demand.

Theory of operation. :class:`SessionRunner` is the async shell around the sans-I/O parts
(:class:`~gateway.emulator.framing.FrameSplitter`, :class:`~gateway.emulator.validator.SessionValidator`,
:class:`~gateway.emulator.turns.TurnDetector`, :class:`~gateway.emulator.persona.OutputEvents`).

* *Input* is synchronous: the HTTP/2 connection calls :meth:`SessionRunner.feed` with request body
  bytes as they arrive (and :meth:`~SessionRunner.end_input` / :meth:`~SessionRunner.abort`). Each
  call splits and decodes frames, checks each frame's signature against the stream's chain (a
  :class:`~gateway.emulator.auth.ChunkVerifier`; a failure ends the session with a
  ``validationException``), validates each event, records it, feeds caller audio to the turn
  detector and hands finished turns to the responder over a small bounded channel. No task hop per
  event: that is most of the emulator's cost per call-second.
* *Cross-modal text*: a USER ``textInput`` sent while the audio block is open (DTMF keys, "speak
  first") is recorded (``EmulatedSession.text_inputs``) and is a caller turn like speech: it takes
  the next scripted turn (or the default persona) and is answered the same way, except that no USER
  transcript is reported for it (the model was not told anything it had to transcribe).
* :meth:`SessionRunner.run` owns one task group for the stream's life: the *responder* answers
  turns one at a time (transcript, optional tool call, think time, speculative text, paced audio,
  final text, usage); its current reply runs in a cancel scope that caller speech inside the
  reply's real-time playback window cancels (barge-in), and the responder then emits the service's
  interruption sequence. *Timers*: the session cap and scheduled faults. ``run`` returns when the
  request side is done (ended, aborted, or shut down).

Every output frame goes to the stream's output (:class:`FrameOutput`): the responder waits while the
output is above its high water, so a slow client back-pressures the persona; frames produced while
handling input (an exception frame, ``completionEnd``) are queued without waiting. After a terminal
error (exception frame, stall) nothing more is emitted; the stream stays open until the client
ends its side (at most ``close_grace_s``), because the response must not end first.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Final, Protocol, assert_never, final, overload

import anyio
import attrs
import structlog

from actors.errors import RemoteProtocolError
from actors.wire import (
    BARGE_IN_MARKER,
    AudioInput,
    EndpointingSensitivity,
    InputContentEnd,
    InputContentStart,
    OutputContentStart,
    OutputEventBody,
    PromptEnd,
    PromptStart,
    SessionEnd,
    SessionStart,
    TextInput,
    ToolResultInput,
    decode_chunk_payload,
    decode_input_event,
    encode_chunk_payload,
    encode_exception_payload,
    encode_output_event,
    input_event_name,
)
from gateway.emulator.faults import SESSION_CAP_MESSAGE, Fault, is_exception_kind
from gateway.emulator.framing import (
    ExceptionKind,
    FrameSplitter,
    decode_audio_input,
    decode_outer_frame,
    encode_event_frame,
    encode_exception_frame,
)
from gateway.emulator.persona import (
    FINAL,
    SPECULATIVE,
    OutputEvents,
    Reply,
    TokenMeter,
    default_reply,
    scripted_reply,
)
from gateway.emulator.settings import ThinkTimes
from gateway.emulator.turns import SpeechOnset, TurnDetector, TurnEnded
from gateway.emulator.validator import SessionValidator, SessionViolation
from gateway.emulator.voice import (
    AudioFrameEncoder,
    RenderedReply,
    VoiceCache,
    chunk_bytes_for,
    reply_seed,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream

    from gateway.emulator.auth import ChunkVerifier
    from gateway.emulator.script import ModelScript
    from gateway.emulator.settings import EmulatorSettings
    from gateway.loop_lag import LagHistogram

__all__ = ["EmulatedSession", "EventLog", "FrameOutput", "SessionRunner", "TurnTiming"]

_log = structlog.get_logger("gateway.emulator")
_TURN_QUEUE: Final = 8


class FrameOutput(Protocol):
    """Where a session's response frames go (an HTTP/2 stream)."""

    def send_nowait(self, data: bytes) -> None:
        """Queue a frame without waiting."""

    async def send(self, data: bytes) -> None:
        """Queue a frame, waiting first while the output is above its high water."""


@final
@attrs.define
class TurnTiming:
    """When the emulated model decided one caller turn had ended, and when it started answering.

    ``pause_ms``: the caller silence (audio time) that ended the turn; None for a text turn.
    ``ended_at`` / ``first_audio_at``: ``anyio.current_time()`` of the decision and of the first
    ``audioOutput`` of its reply (None: no audio went out, e.g. a fault or a hang-up first).
    """

    ended_at: float
    pause_ms: float | None
    first_audio_at: float | None = None

    @property
    def first_audio_ms(self) -> float | None:
        """The model's time to first audio after it decided the turn ended (wall ms)."""
        if self.first_audio_at is None:
            return None
        return 1000.0 * (self.first_audio_at - self.ended_at)


@final
class EventLog:
    """A session's input event names in order, run-length encoded (bounded memory).

    Consecutive events of one name (a caller's ``audioInput`` stream) are one run; at most
    ``max_runs`` runs are kept: from the first event that would start one more, events are only
    counted (``dropped``), so the log is always a prefix of what arrived. Reads like a list of names: iteration, ``len``, indexing and slicing (which
    expand the runs: meant for tests), ``count`` and ``index``.
    """

    __slots__ = ("_counts", "_max_runs", "_names", "dropped", "total")

    def __init__(self, max_runs: int = 4096) -> None:
        self._names: list[str] = []
        self._counts: list[int] = []
        self._max_runs = max_runs
        self.total = 0
        """Events appended, kept or not."""
        self.dropped = 0
        """Events not kept (the run limit was reached)."""

    def append(self, name: str) -> None:
        """Log one event (O(1), no allocation for a run that goes on)."""
        self.total += 1
        names = self._names
        if self.dropped:
            self.dropped += 1  # full: the kept log stays a prefix of what arrived
        elif names and names[-1] == name:
            self._counts[-1] += 1
        elif len(names) < self._max_runs:
            names.append(name)
            self._counts.append(1)
        else:
            self.dropped += 1

    def runs(self) -> list[tuple[str, int]]:
        """``(name, consecutive count)`` per run, in order."""
        return list(zip(self._names, self._counts, strict=True))

    def count(self, name: str) -> int:
        """Kept events named ``name``."""
        return sum(c for n, c in zip(self._names, self._counts, strict=True) if n == name)

    def index(self, name: str) -> int:
        """Position of the first kept event named ``name``.

        Raises:
            ValueError: none is.
        """
        position = 0
        for n, c in zip(self._names, self._counts, strict=True):
            if n == name:
                return position
            position += c
        raise ValueError(f"{name!r} is not in the event log")

    def __iter__(self) -> Iterator[str]:
        for name, count in zip(self._names, self._counts, strict=True):
            for _ in range(count):
                yield name

    def __len__(self) -> int:
        return self.total - self.dropped

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return list(self)[index]

    def __repr__(self) -> str:
        return f"EventLog(runs={self.runs()!r}, dropped={self.dropped})"


@attrs.define
class EmulatedSession:
    """What one stream received and produced (read by tests and replay reports).

    Times are ``anyio.current_time()`` values; ``*_at`` fields are None until it happened.
    """

    number: int
    model_id: str
    started_at: float
    connection: int = 0
    """The HTTP/2 connection carrying the stream (a small number per connection)."""
    input_rate: int | None = None
    output_rate: int | None = None
    input_events: EventLog = attrs.Factory(EventLog)
    """Input event names in order (run-length encoded, bounded)."""
    caller_pcm_bytes: int = 0
    first_audio_at: float | None = None
    last_audio_at: float | None = None
    turns: int = 0
    end_of_turn_pause_ms: float | None = None
    """The silence that ends a caller turn in this session (None until the audio block opens)."""
    turn_timings: list[TurnTiming] = attrs.Factory(list)
    """One per caller turn, in order (dropped turns included, with no first audio)."""
    transcripts: list[str] = attrs.Factory(list)
    replies: list[str] = attrs.Factory(list)
    reply_audio_bytes: int = 0
    barge_ins: int = 0
    text_inputs: list[str] = attrs.Factory(list)
    """Interactive USER text received while the audio block was open, in order."""
    tool_results: list[tuple[str, str]] = attrs.Factory(list)
    """``(toolUseId, content)`` per toolResult received."""
    tools_offered: list[str] = attrs.Factory(list)
    """The tool names ``promptStart``'s tool configuration offered the model."""
    voice_id: str | None = None
    """The voice ``promptStart`` asked for."""
    system_prompt: str | None = None
    """The SYSTEM text the session received (its ``textInput`` contents, joined)."""
    faults: list[str] = attrs.Factory(list)
    end_reason: str | None = None
    """``closed`` (orderly), an exception kind, ``reset``, ``stall``, ``input_ended``,
    ``disconnected``, ``shutdown``."""
    error_message: str | None = None
    ended_at: float | None = None

    @property
    def caller_audio_ms(self) -> float:
        """Caller audio received, in milliseconds at the declared input rate."""
        if not self.input_rate:
            return 0.0
        return 1000.0 * self.caller_pcm_bytes / 2 / self.input_rate


@final
@attrs.frozen
class TextTurn:
    """A caller turn made of cross-modal USER text."""

    text: str


@final
class ScriptCursor:
    """How many scripted turns the conversation has used, shared by the sessions of one script."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0

    def take(self) -> int:
        """Return the index of the next scripted turn and move past it."""
        index = self.used
        self.used += 1
        return index


@final
class SessionRunner:
    """Drives one stream; :meth:`run` returns when the request side is done (or the stream dies)."""

    def __init__(
        self,
        *,
        settings: EmulatorSettings,
        record: EmulatedSession,
        script: ModelScript | None,
        out: FrameOutput,
        cursor: ScriptCursor | None = None,
        voices: VoiceCache | None = None,
        lateness: LagHistogram | None = None,
        verifier: ChunkVerifier | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._verifier = verifier
        self._wall_clock = wall_clock
        self._record = record
        self._script = script
        self._cursor = cursor if cursor is not None else ScriptCursor()
        self._out = out
        self._voices = voices if voices is not None else VoiceCache()
        self._lateness = lateness
        self._splitter = FrameSplitter()
        self._validator = SessionValidator()
        self._detector: TurnDetector | None = None
        self._events: OutputEvents | None = None
        self._meter = TokenMeter()
        self._tg: TaskGroup | None = None
        self._read_scope = anyio.CancelScope()
        self._responder_scope = anyio.CancelScope()
        self._reply_scope: anyio.CancelScope | None = None
        self._open_audio: OutputContentStart | None = None
        self._playback_end: float | None = None
        self._completion_started = False
        self._terminated = False
        self._tool_waits: dict[str, anyio.Event] = {}
        self.reset_requested = False
        self._input_done = anyio.Event()
        self._turns_send, self._turns_recv = anyio.create_memory_object_stream[
            tuple[TurnEnded | TextTurn, TurnTiming]
        ](_TURN_QUEUE)
        self._sensitivity: EndpointingSensitivity | None = None
        self._think_times = ThinkTimes(settings, record.number)
        cap = settings.session_cap_s
        if script is not None and script.session_cap_s is not None:
            cap = script.session_cap_s
        self._cap_s = cap

    @property
    def terminated(self) -> bool:
        """True once the session stopped answering (closed, failed, stalled, reset)."""
        return self._terminated

    @property
    def record(self) -> EmulatedSession:
        """The session's record."""
        return self._record

    async def run(self, faults: list[Fault]) -> None:
        """Serve the stream until the request side is done; blocks for the whole session.

        Args:
            faults: session-wide faults, each fired ``after_ms`` from now.
        """
        async with self._turns_recv, anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._respond, self._turns_recv)
            tg.start_soon(self._cap_timer)
            for fault in faults:
                if fault.kind != "slow_first_byte":
                    tg.start_soon(self._fire_after, fault)
            with self._read_scope:
                await self._input_done.wait()
            tg.cancel_scope.cancel()
        self._turns_send.close()
        self._tg = None
        self._record.ended_at = anyio.current_time()
        if self._record.end_reason is None:
            self._record.end_reason = "input_ended"
        _log.info(
            "emulator.session_ended",
            session=self._record.number,
            reason=self._record.end_reason,
            turns=self._record.turns,
            barge_ins=self._record.barge_ins,
        )

    def inject(self, fault: Fault) -> None:
        """Fire ``fault`` ``after_ms`` from now in this running session (no-op once it ended)."""
        if self._tg is not None:
            self._tg.start_soon(self._fire_after, fault)

    def shutdown(self) -> None:
        """Stop serving now (emulator shutdown): stop reading and answering."""
        if self._record.end_reason is None:
            self._record.end_reason = "shutdown"
        self._terminated = True
        self._read_scope.cancel()

    # ------------------------------------------------------------------------------ reading

    def feed(self, data: bytes) -> None:
        """Request body bytes as they arrive (called by the connection, never awaits)."""
        if self._terminated or self._input_done.is_set():
            return
        try:
            for frame in self._splitter.feed(data):
                self._on_frame(frame)
                if self.terminated:
                    break
        except SessionViolation as exc:
            self._fail("validationException", exc.message)
        except RemoteProtocolError as exc:
            self._fail("validationException", f"Invalid input request: {exc}")

    def end_input(self) -> None:
        """The client ended its side of the stream."""
        self._input_done.set()

    def abort(self) -> None:
        """The stream died under us (reset by the client, connection lost)."""
        if self._record.end_reason is None:
            self._record.end_reason = "disconnected"
        self._terminated = True
        self._input_done.set()

    def _on_frame(self, frame: bytes) -> None:
        chunk = decode_outer_frame(frame)
        if self._verifier is not None:
            # The signature chain covers every frame, the empty end-of-input one too.
            error = self._verifier.check(chunk, self._wall_clock())  # SigV4 signs wall time
            if error is not None:
                _log.info("emulator.event_signature_failed", session=self._record.number)
                self._fail("validationException", error)
                return
        if chunk.payload is None:
            return  # end of input; the HTTP/2 stream end follows
        data = decode_chunk_payload(chunk.payload)
        audio = decode_audio_input(data)
        if audio is not None:
            # Nearly every event: skip the general decode and dispatch.
            self._record.input_events.append("audioInput")
            self._validator.feed(audio)
            self._on_audio(audio.content)
            return
        event = decode_input_event(data)
        self._record.input_events.append(input_event_name(event))
        self._validator.feed(event)
        match event:
            case SessionStart():
                detection = event.turn_detection_configuration
                if detection is not None:
                    self._sensitivity = detection.endpointing_sensitivity
            case InputContentEnd() | PromptEnd():
                pass
            case TextInput():
                block = self._validator.last_block
                if block is not None and block.role == "SYSTEM":
                    self._record.system_prompt = (self._record.system_prompt or "") + event.content
                elif self._detector is not None and block is not None and block.role == "USER":
                    # After the audio block opened: cross-modal input, not history.
                    self._record.text_inputs.append(event.content)
                    self._queue_turn(TextTurn(text=event.content))
            case PromptStart():
                config = event.tool_configuration
                if config is not None:
                    self._record.tools_offered = [t.tool_spec.name for t in config.tools]
                self._record.voice_id = event.audio_output_configuration.voice_id
                self._events = OutputEvents(
                    prompt_name=event.prompt_name, output_rate=self._validator.output_rate
                )
                self._record.output_rate = self._validator.output_rate
                if self._script is not None and self._tg is not None:
                    # Scripted replies render now, not at their turn: a first render takes tens
                    # of ms of a core (more beside a busy loop) that a scripted answer must not wait.
                    self._tg.start_soon(self._prerender_script, self._events.output_rate)
            case InputContentStart():
                if event.type == "AUDIO" and self._validator.input_rate is not None:
                    self._record.input_rate = self._validator.input_rate
                    pause_ms = self._settings.end_of_turn_pause_ms(self._sensitivity)
                    self._record.end_of_turn_pause_ms = pause_ms
                    self._detector = TurnDetector(
                        self._validator.input_rate,
                        end_of_turn_silence_ms=pause_ms,
                        onset_ms=self._settings.vad_onset_ms,
                        threshold_dbfs=self._settings.vad_threshold_dbfs,
                        block_ms=self._settings.vad_block_ms,
                    )
            case AudioInput():
                self._on_audio(event.content)
            case ToolResultInput():
                self._on_tool_result(event)
            case SessionEnd():
                self._on_session_end()
            case _:
                assert_never(event)

    def _on_audio(self, pcm: bytes) -> None:
        now = anyio.current_time()
        record = self._record
        record.caller_pcm_bytes += len(pcm)
        if record.first_audio_at is None:
            record.first_audio_at = now
        record.last_audio_at = now
        assert self._detector is not None  # the validator guarantees an open AUDIO block
        for turn_event in self._detector.feed(pcm):
            match turn_event:
                case SpeechOnset():
                    self._maybe_barge_in(now)
                case TurnEnded():
                    self._queue_turn(turn_event)
                case _:
                    assert_never(turn_event)

    def _queue_turn(self, turn: TurnEnded | TextTurn) -> None:
        record = self._record
        record.turns += 1
        timing = TurnTiming(
            ended_at=anyio.current_time(),
            pause_ms=turn.silence_ms if isinstance(turn, TurnEnded) else None,
        )
        record.turn_timings.append(timing)
        try:
            self._turns_send.send_nowait((turn, timing))
        except anyio.WouldBlock:
            # The responder is _TURN_QUEUE turns behind (audio sent much faster than real
            # time): this turn gets no answer.
            _log.warning("emulator.turn_dropped", session=record.number)

    def _maybe_barge_in(self, now: float) -> None:
        scope = self._reply_scope
        end = self._playback_end
        if scope is not None and end is not None and now < end:
            scope.cancel()

    def _on_tool_result(self, event: ToolResultInput) -> None:
        block = self._validator.last_block
        tool_use_id = "" if block is None or block.tool_use_id is None else block.tool_use_id
        self._record.tool_results.append((tool_use_id, event.content))
        waiter = self._tool_waits.pop(tool_use_id, None)
        if waiter is not None:
            waiter.set()

    def _on_session_end(self) -> None:
        self._responder_scope.cancel()
        if self._completion_started and self._events is not None:
            self._emit_nowait(self._events.completion_end())
        self._record.end_reason = "closed"
        self._terminated = True

    # ------------------------------------------------------------------------------ answering

    async def _respond(
        self, turns: MemoryObjectReceiveStream[tuple[TurnEnded | TextTurn, TurnTiming]]
    ) -> None:
        with self._responder_scope:
            index = 0
            async for turn, timing in turns:
                index += 1
                reply, fault = self._plan(index)
                if fault is not None:
                    await self._fire_after(fault)
                    return
                with anyio.CancelScope() as scope:
                    self._reply_scope = scope
                    await self._reply(reply, timing, transcribe=not isinstance(turn, TextTurn))
                self._reply_scope = None
                if scope.cancelled_caught:
                    await self._interrupted()

    def _plan(self, index: int) -> tuple[Reply, Fault | None]:
        settings = self._settings
        think_ms = self._think_times.draw()
        script = self._script
        # Scripted turns belong to the conversation, not to one stream: a handover or a recovery
        # continues the script where the previous session left it.
        scripted = self._cursor.take() if script is not None else None
        if script is not None and scripted is not None and scripted < len(script.turns):
            turn = script.turns[scripted]
            reply = scripted_reply(
                turn, index=index, answer_ms=settings.answer_ms, think_ms=think_ms
            )
            return reply, turn.fault
        return default_reply(index, answer_ms=settings.answer_ms, think_ms=think_ms), None

    async def _reply(self, reply: Reply, timing: TurnTiming, *, transcribe: bool = True) -> None:
        events = self._events
        if events is None:
            return
        if not self._completion_started:
            self._completion_started = True
            await self._emit(events.completion_start())
        if transcribe:
            for body in events.text_block(
                role="USER", stage=FINAL, text=reply.transcript, stop_reason="PARTIAL_TURN"
            ):
                await self._emit(body)
            self._record.transcripts.append(reply.transcript)
        if reply.tool_name is not None and reply.tool_arguments is not None:
            await self._use_tool(events, reply, timing)
        await self._say(events, reply, timing)

    async def _say(self, events: OutputEvents, reply: Reply, timing: TurnTiming) -> None:
        """Think, then speak ``reply.text``: SPECULATIVE text, the audio, FINAL text, usage."""
        # Think time runs while the reply audio renders (a worker thread, first use only).
        think_until = anyio.current_time() + reply.think_ms / 1000.0
        audio = await self._render(events, reply)
        await anyio.sleep(max(0.0, think_until - anyio.current_time()))
        for body in events.text_block(
            role="ASSISTANT", stage=SPECULATIVE, text=reply.text, stop_reason="PARTIAL_TURN"
        ):
            await self._emit(body)
        await self._speak(events, reply, audio, timing)
        if self._playback_end is not None:
            # The FINAL text says what was spoken: it comes when playback would have finished.
            await anyio.sleep(max(0.0, self._playback_end - anyio.current_time()))
        self._playback_end = None
        for body in events.text_block(
            role="ASSISTANT", stage=FINAL, text=reply.text, stop_reason="END_TURN"
        ):
            await self._emit(body)
        self._record.replies.append(reply.text)
        heard_s = self._detector.samples_received / self._detector_rate() if self._detector else 0.0
        await self._emit(
            self._meter.usage(
                events,
                input_s=heard_s,
                input_chars=0,
                output_s=reply.answer_ms / 1000.0,
                output_chars=len(reply.text),
            )
        )

    def _detector_rate(self) -> int:
        return self._record.input_rate or 16000

    async def _use_tool(self, events: OutputEvents, reply: Reply, timing: TurnTiming) -> None:
        """The TOOL block, then (Nova 2 tools are asynchronous) the filler the model speaks while
        the tool runs, then wait (bounded) for the client's result."""
        assert reply.tool_name is not None
        assert reply.tool_arguments is not None
        tool_use_id = str(uuid.uuid4())
        waiter = anyio.Event()
        self._tool_waits[tool_use_id] = waiter
        for body in events.tool_block(
            tool_name=reply.tool_name, tool_use_id=tool_use_id, arguments=reply.tool_arguments
        ):
            await self._emit(body)
        if reply.filler is not None:
            await self._say(events, reply.filler, timing)
        with anyio.move_on_after(self._settings.tool_result_timeout_s) as scope:
            await waiter.wait()
        if scope.cancelled_caught:
            self._tool_waits.pop(tool_use_id, None)
            _log.warning(
                "emulator.tool_result_missing", session=self._record.number, tool=reply.tool_name
            )

    async def _prerender_script(self, rate: int) -> None:
        script = self._script
        assert script is not None
        chunk_bytes = chunk_bytes_for(rate, self._settings.output_chunk_ms)
        for turn in script.turns:
            if turn.reply:
                ms = self._settings.answer_ms if turn.answer_ms is None else turn.answer_ms
                await self._voices.get(rate, ms, reply_seed(turn.reply), chunk_bytes)
            filler = turn.tool_use.filler if turn.tool_use is not None else None
            if filler is not None:
                await self._voices.get(rate, filler.ms, reply_seed(filler.text), chunk_bytes)

    async def _render(self, events: OutputEvents, reply: Reply) -> RenderedReply:
        chunk_bytes = chunk_bytes_for(events.output_rate, self._settings.output_chunk_ms)
        return await self._voices.get(
            events.output_rate, reply.answer_ms, reply_seed(reply.text), chunk_bytes
        )

    async def _speak(
        self, events: OutputEvents, reply: Reply, audio: RenderedReply, timing: TurnTiming
    ) -> None:
        rate = events.output_rate
        factor = self._settings.realtime_factor
        block = events.audio_start()
        await self._emit(block)
        self._open_audio = block
        encoder = AudioFrameEncoder(
            session_id=events.session_id,
            prompt_name=events.prompt_name,
            completion_id=events.completion_id,
            content_id=block.content_id,
        )
        lateness = self._lateness
        started = anyio.current_time()
        sent_bytes = 0
        for size, tail in zip(audio.pcm_sizes, audio.tails, strict=True):
            if factor > 0:
                due = started + sent_bytes / 2 / rate / factor
                await anyio.sleep(max(0.0, due - anyio.current_time()))
                if lateness is not None:
                    lateness.record(max(0.0, (anyio.current_time() - due) * 1000.0))
            else:
                await anyio.lowlevel.checkpoint()
            if self._terminated:
                return
            await self._out.send(encoder.frame(tail))
            if timing.first_audio_at is None:
                timing.first_audio_at = anyio.current_time()
            if self._playback_end is None:
                # The caller starts hearing the answer now; it lasts the answer's duration.
                self._playback_end = anyio.current_time() + reply.answer_ms / 1000.0
            sent_bytes += size
            self._record.reply_audio_bytes += size
        await self._emit(events.audio_end(block, "END_TURN"))
        self._open_audio = None

    async def _interrupted(self) -> None:
        """Barge-in: close the audio block (END_TURN), then the marker block ending INTERRUPTED."""
        self._record.barge_ins += 1
        self._playback_end = None
        events = self._events
        if events is None:
            return
        _log.info("emulator.barge_in", session=self._record.number)
        if self._open_audio is not None:
            await self._emit(events.audio_end(self._open_audio, "END_TURN"))
            self._open_audio = None
        for body in events.text_block(
            role="ASSISTANT", stage=FINAL, text=BARGE_IN_MARKER, stop_reason="INTERRUPTED"
        ):
            await self._emit(body)

    # ------------------------------------------------------------------------------ failing

    async def _cap_timer(self) -> None:
        await anyio.sleep(self._cap_s)
        self._fail("modelTimeoutException", SESSION_CAP_MESSAGE)

    async def _fire_after(self, fault: Fault) -> None:
        await anyio.sleep(fault.after_ms / 1000.0)
        self._apply(fault)

    def _apply(self, fault: Fault) -> None:
        if self._terminated:
            return
        self._record.faults.append(fault.kind)
        _log.info("emulator.fault", session=self._record.number, kind=fault.kind)
        kind = fault.kind
        if is_exception_kind(kind):
            self._fail(kind, fault.exception_message())
        elif kind == "reset":
            self._terminated = True
            self.reset_requested = True
            self._record.end_reason = "reset"
            self._responder_scope.cancel()
            self._read_scope.cancel()
        elif kind == "stall":
            self._terminated = True
            self._record.end_reason = "stall"
            self._responder_scope.cancel()
        # slow_first_byte only means something before the response starts (the server handles it).

    def _fail(self, kind: ExceptionKind, message: str) -> None:
        """Send one exception frame and stop answering; wait (bounded) for the client's end."""
        if self._terminated:
            return
        self._terminated = True
        self._record.end_reason = kind
        self._record.error_message = message
        self._read_scope.deadline = anyio.current_time() + self._settings.close_grace_s
        _log.info("emulator.exception_sent", session=self._record.number, kind=kind)
        self._out.send_nowait(encode_exception_frame(kind, encode_exception_payload(message)))
        self._responder_scope.cancel()

    def _emit_nowait(self, body: OutputEventBody) -> None:
        if self._terminated:
            return
        payload = encode_chunk_payload(encode_output_event(body))
        self._out.send_nowait(encode_event_frame(payload))

    async def _emit(self, body: OutputEventBody) -> None:
        if self._terminated:
            return
        payload = encode_chunk_payload(encode_output_event(body))
        await self._out.send(encode_event_frame(payload))
