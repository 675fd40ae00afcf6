"""A conversation that outlives Sonic's session cap: streams handed over, errors recovered.

Theory of operation. A :class:`SonicConversation` is an
async context manager owning a task group; inside it:

* exactly one receive loop per stream (:meth:`SonicStream.run`), started as soon as the stream is
  open; a stream's events reach the consumer only while it is the *current* stream, through ONE
  bounded channel, so the consumer sees no gap and no duplicates across handovers;
* a manager task, a Mealy machine over the sans-I/O :class:`HandoverPlanner`, that sleeps until
  the planner's next deadline or a control message (a stream failed, the next one is ready);
* caller audio (:meth:`send_audio`) goes to the current stream under the conversation's lock and
  into a ring buffer of the last ``replay_audio_ms``.

Planned handover (age or credential expiry): at the due time the next stream is opened in the
background (prelude sent, ready); at a turn boundary, under the lock, the new stream receives the
shaped history, opens its audio block and gets the ring buffer replayed, then becomes current; the
old one is closed in order in the background. Caller audio reaches the old stream up to the switch
and the new one from the switch, and the replay overlaps the switch, so every caller sample
reaches at least one session. A :class:`HandedOver` event reports it (a planned event, not a
failure).

Error recovery: a retryable failure of the current stream takes the same path at once (bounded
attempts with doubling backoff; audio meanwhile only fills the ring). A fatal error, or too many
consecutive failures, cancels the conversation's task group and the error is raised from the
``async with`` block, typed (:class:`SonicRetryableError` / :class:`SonicFatalError`), for the
supervisor.

History: FINAL transcripts and FINAL assistant text (never SPECULATIVE) feed a
:class:`ConversationHistory`; PlaybackEgress's report of what the caller heard truncates the
assistant's text (:meth:`note_heard`, :meth:`truncate_last_assistant`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import TYPE_CHECKING, Any, Final, Self, final

import anyio
import msgspec
import structlog

from actors.errors import ClosedByUs, SonicError
from actors.sonic.events import (
    AssistantAudio,
    AssistantAudioEnded,
    AssistantAudioStarted,
    AssistantText,
    BargeIn,
    CompletionEnded,
    HandedOver,
    SessionClosed,
    SonicEvent,
    ToolUseRequested,
    Usage,
    UserTranscript,
)
from actors.sonic.handover import HandoverAction, HandoverPlanner
from actors.sonic.history import CallerAudioRing, ConversationHistory, HistoryTurn

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream

    from actors.sonic.connector import SonicConnector
    from actors.sonic.settings import SonicSettings
    from actors.sonic.stream import SonicStream

__all__ = ["SonicConversation"]

_log = structlog.get_logger("actors.sonic.conversation")
_CONTROL_CAPACITY: Final = 8


class _StreamFailed(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    number: int
    error: Any  # SonicError (exceptions are not msgspec types)


class _NextReady(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    number: int


class _PrepareFailed(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    error: Any


_Control = _StreamFailed | _NextReady | _PrepareFailed


@final
class SonicConversation:
    """One caller's conversation with Nova Sonic, across as many sessions as it takes.

    Use ``async with connector.conversation() as conv:``; read events from :attr:`events`; send
    caller audio with :meth:`send_audio`. Raises the conversation's :class:`SonicError` from the
    ``async with`` block when it cannot go on.

    Args:
        connector: opens streams (from its warm pool when it can) and owns the SDK client.
        events_capacity: bound of the event channel to the consumer (audio arrives faster than
            real time; the receive loop waits when the consumer lags).
        settings: this conversation's settings (a call's route: system prompt, voice, tools);
            None: the connector's.
    """

    def __init__(
        self,
        connector: SonicConnector,
        *,
        events_capacity: int = 256,
        history: Sequence[HistoryTurn] = (),
        settings: SonicSettings | None = None,
    ) -> None:
        self._connector = connector
        s = connector.settings if settings is None else settings
        self._settings = s
        self._history = ConversationHistory(
            max_turns=s.history_max_turns,
            max_bytes_per_turn=s.history_max_bytes_per_turn,
            max_total_bytes=s.history_max_total_bytes,
        )
        self._history.seed(history)
        self._ring = CallerAudioRing(s.replay_bytes)
        self._planner = HandoverPlanner(s)
        self._turn_ids = itertools.count(1)
        self._events_tx, self._events_rx = anyio.create_memory_object_stream[SonicEvent](
            events_capacity
        )
        self._control_tx, self._control_rx = anyio.create_memory_object_stream[_Control](
            _CONTROL_CAPACITY
        )
        # Taken for every 20 ms of caller audio and almost never contended: an uncontended
        # acquire need not yield to the event loop (the audio pump yields on its mailbox anyway).
        self._lock = anyio.Lock(fast_acquire=True)
        self._stack = contextlib.AsyncExitStack()
        self._tg: TaskGroup | None = None
        self._current: SonicStream | None = None
        self._next: SonicStream | None = None
        self._preparing = False
        self._session_index = 0
        self._failure: SonicError | None = None
        self._closing = False
        self._closed = False
        self._audio_open = False
        self._last_user_pos: int | None = None
        # Ring position when the assistant last finished a reply it was not interrupted in.
        self._answered_pos: int | None = None
        self._barged_turn: int | None = None
        self._handovers = 0
        self._recoveries = 0
        self._dropped_events = 0
        self._tool_results_dropped = 0
        self._receiving: set[int] = set()

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        """Open the first session (from the pool when possible) and start the manager.

        Raises:
            SonicError: the first session could not be opened (after bounded retries if retryable).
        """
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        try:
            stream = await self._open_with_retries()
            async with self._lock:
                await self._activate(stream, reason=None)
        except BaseException:
            self._tg.cancel_scope.cancel()
            await self._stack.aclose()
            for channel in (self._events_tx, self._events_rx, self._control_tx, self._control_rx):
                channel.close()
            raise
        self._tg.start_soon(self._manage)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Close in order (bounded), stop every task, and raise the conversation's failure if any."""
        try:
            if self._failure is None:
                await self.aclose()
        finally:
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            await self._stack.__aexit__(exc_type, exc, tb)
            for channel in (self._events_tx, self._events_rx, self._control_tx, self._control_rx):
                channel.close()
        if self._failure is not None and (
            exc is None or isinstance(exc, anyio.get_cancelled_exc_class())
        ):
            raise self._failure
        return False

    async def aclose(self) -> None:
        """End the conversation in order: the current stream closes (audio contentEnd, promptEnd,
        sessionEnd, bounded), a prepared one too, and :class:`SessionClosed` is the last event.

        Idempotent; shielded from cancellation by the streams' own bounded close.
        """
        if self._closing:
            return
        self._closing = True
        async with self._lock:
            streams = [s for s in (self._current, self._next) if s is not None]
            self._next = None
        for stream in streams:
            await stream.close()
        with contextlib.suppress(
            anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            self._events_tx.send_nowait(SessionClosed(reason="closed"))
        self._events_tx.close()
        self._closed = True

    # ---------------------------------------------------------------- consumer API

    @property
    def events(self) -> MemoryObjectReceiveStream[SonicEvent]:
        """The one event channel (``async for event in conv.events``); ends after SessionClosed."""
        return self._events_rx

    async def send_audio(self, pcm: bytes) -> None:
        """Send caller PCM (LPCM16 mono at ``input_rate``); any length, batched per ``audio_batch_ms``.

        Blocks (asynchronously) while the SDK's write buffer is full or a switch is in progress.
        While a failed session is being replaced the audio only fills the replay ring buffer.

        Raises:
            SonicError: the conversation failed for good.
            ClosedByUs: the conversation is closing.
        """
        self._check_open()
        async with self._lock:
            self._ring.append(pcm)
            stream = self._current
            if stream is None or not stream.usable:
                return
            with contextlib.suppress(SonicError, ClosedByUs):  # recovery is the manager's job
                await stream.send_unit(stream.protocol.audio(pcm))

    async def send_user_text(self, text: str) -> bool:
        """Send interactive USER text (DTMF digits, "speak first"); False if no session could take it."""
        return await self._send_text_unit(lambda s: s.protocol.user_text(text))

    async def send_tool_result(self, tool_use_id: str, content_json: str) -> bool:
        """Answer a :class:`ToolUseRequested`; False if its session is gone (the id died with it)."""
        delivered = await self._send_text_unit(
            lambda s: s.protocol.tool_result(tool_use_id, content_json)
        )
        if not delivered:
            self._tool_results_dropped += 1
        return delivered

    def note_heard(self, turn_id: int | None, heard_fraction: float) -> None:
        """The caller heard only ``heard_fraction`` of assistant turn ``turn_id`` (None: the latest)."""
        self._history.note_heard(turn_id, heard_fraction)

    def truncate_last_assistant(self, heard_ms: float, total_ms: float) -> None:
        """The caller heard ``heard_ms`` of the latest assistant turn's ``total_ms``."""
        self._history.truncate_last_assistant(heard_ms, total_ms)

    def statistics(self) -> dict[str, object]:
        """Counters for ``/debug/actors`` and tests."""
        current = self._current
        return {
            "session_index": self._session_index,
            "handovers": self._handovers,
            "recoveries": self._recoveries,
            "dropped_events": self._dropped_events,
            "tool_results_dropped": self._tool_results_dropped,
            "caller_audio_bytes": self._ring.total_bytes,
            "current_stream": None if current is None else current.statistics(),
            "history": self._history.statistics(),
            "handover_due_in_s": None
            if math.isinf(self._planner.due_at)
            else round(self._planner.due_at - anyio.current_time(), 3),
        }

    def history_snapshot(self) -> list[Any]:
        """The history a new session would receive now (shaped; for tests and debugging)."""
        return self._history.shaped()

    # ---------------------------------------------------------------- internals: sending

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise ClosedByUs("sonic conversation is closing")

    async def _send_text_unit(self, build: Any) -> bool:
        self._check_open()
        async with self._lock:
            stream = self._current
            if stream is None or not stream.usable:
                return False
            try:
                await stream.send_unit(build(stream))
            except (SonicError, ClosedByUs):
                return False
            return True

    # ---------------------------------------------------------------- internals: streams

    async def _open_with_retries(self) -> SonicStream:
        while True:
            try:
                return await self._connector.open_stream(
                    turn_ids=self._turn_ids, settings=self._settings
                )
            except SonicError as err:
                backoff = self._planner.stream_failed() if err.retryable else None
                if backoff is None:
                    raise
                _log.info("sonic.open_retry", kind=err.kind, backoff_s=backoff)
                await anyio.sleep(backoff)

    async def _activate(self, stream: SonicStream, *, reason: str | None) -> None:
        """Make ``stream`` current (caller holds the lock): history, audio block, replay."""
        assert self._tg is not None
        replay = self._ring.snapshot() if reason is not None else b""
        answered = self._answered_pos
        if replay and answered is not None and answered >= (self._last_user_pos or 0):
            # The last caller turn was answered in full: it is in the history as text, and
            # replaying its audio would make the new session answer it a second time. Replay
            # only what the caller said after that answer (the old session got all the rest).
            since = self._ring.total_bytes - answered
            if since < len(replay):
                replay = replay[len(replay) - since :] if since else b""
        drop_user = (
            self._last_user_pos is not None
            and self._last_user_pos > self._ring.total_bytes - len(replay)
        )
        history = self._history.shaped(drop_trailing_user=reason is not None and drop_user)
        protocol = stream.protocol
        unit = protocol.history(history) + protocol.open_audio() + protocol.audio(replay)
        self._start_receiving(stream)
        await stream.send_unit(unit)
        old, self._current = self._current, stream
        now = anyio.current_time()
        self._planner.stream_started(now=now, credentials_expire_at=stream.credentials_expire_at)
        self._audio_open = False
        if old is None:
            return
        self._session_index += 1
        lost = old.protocol.abandon_turn()
        self._tg.start_soon(old.close)
        _log.info(
            "sonic.handed_over",
            reason=reason,
            session_index=self._session_index,
            history_turns=len(history),
            replay_ms=len(replay) // self._settings.input_bytes_per_ms,
        )
        for event in [*lost, HandedOver(reason=reason or "", session_index=self._session_index)]:
            await self._emit(event)

    def _start_receiving(self, stream: SonicStream) -> None:
        # Exactly one receive loop per stream, started as soon as the stream is ours.
        if stream.number not in self._receiving:
            assert self._tg is not None
            self._receiving.add(stream.number)
            self._tg.start_soon(self._run_stream, stream)

    async def _run_stream(self, stream: SonicStream) -> None:
        try:
            await stream.run(self._deliver)
        except SonicError as err:
            if self._closing:
                return
            if stream is self._current:
                await self._control_tx.send(_StreamFailed(number=stream.number, error=err))
            elif stream is self._next:
                self._next = None
                await self._control_tx.send(_PrepareFailed(error=err))
        finally:
            self._receiving.discard(stream.number)

    async def _deliver(self, stream: SonicStream, events: list[SonicEvent]) -> None:
        if stream is not self._current or self._closed:
            self._dropped_events += len(events)
            return
        now = anyio.current_time()
        self._planner.stream_healthy()
        for event in events:
            self._note(event, now)
            await self._emit(event)

    def _note(self, event: SonicEvent, now: float) -> None:
        match event:
            case UserTranscript(final=True):
                self._history.add_user(event.text)
                self._last_user_pos = self._ring.total_bytes
            case AssistantText(stage="FINAL"):
                self._history.add_assistant(event.text, turn_id=event.turn_id)
                if event.turn_id != self._barged_turn:
                    self._answered_pos = self._ring.total_bytes
            case AssistantAudioStarted():
                self._audio_open = True
                self._planner.assistant_turn(now=now, open_=True)
            case AssistantAudio():
                self._planner.assistant_audio(now)
            case BargeIn():
                self._barged_turn = event.turn_id
                self._audio_open = False
                self._planner.assistant_turn(now=now, open_=False)
            case AssistantAudioEnded():
                self._audio_open = False
                self._planner.assistant_turn(now=now, open_=False)
            case (
                UserTranscript()
                | AssistantText()
                | ToolUseRequested()
                | Usage()
                | CompletionEnded()
                | HandedOver()
                | SessionClosed()
            ):
                pass

    async def _emit(self, event: SonicEvent) -> None:
        try:
            await self._events_tx.send(event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._dropped_events += 1

    # ---------------------------------------------------------------- internals: manager

    async def _manage(self) -> None:
        while True:
            now = anyio.current_time()
            action = self._planner.decide(now, next_ready=self._next is not None)
            if action is HandoverAction.SWITCH and self._next is not None:
                await self._switch(self._next, reason=self._planner.reason)
                continue
            timeout = math.inf
            if action is HandoverAction.PREPARE:
                if not self._preparing:
                    self._preparing = True
                    assert self._tg is not None
                    self._tg.start_soon(self._prepare)
            else:
                timeout = max(0.0, self._planner.next_wakeup(now) - now)
            message: _Control | None = None
            with anyio.move_on_after(timeout):
                message = await self._control_rx.receive()
            match message:
                case None | _NextReady():
                    pass
                case _StreamFailed():
                    if self._current is not None and message.number == self._current.number:
                        await self._recover(message.error)
                case _PrepareFailed():
                    self._preparing = False
                    backoff = self._planner.stream_failed()
                    if backoff is None or not message.error.retryable:
                        self._fail(message.error)
                        return
                    await anyio.sleep(backoff)

    async def _prepare(self) -> None:
        try:
            stream = await self._connector.open_stream(
                turn_ids=self._turn_ids, settings=self._settings
            )
        except SonicError as err:
            await self._control_tx.send(_PrepareFailed(error=err))
            return
        if self._closing:
            await stream.close()
            return
        self._next = stream
        self._start_receiving(stream)
        await self._control_tx.send(_NextReady(number=stream.number))

    async def _switch(self, stream: SonicStream, *, reason: str) -> None:
        async with self._lock:
            self._next = None
            self._preparing = False
            if self._closing:
                await stream.close()
                return
            try:
                await self._activate(stream, reason=reason)
            except SonicError as err:
                _log.info("sonic.switch_failed", kind=err.kind)
                await stream.close()
                return
            self._handovers += 1

    async def _recover(self, error: SonicError) -> None:
        err = error
        while True:
            if not err.retryable:
                self._fail(err)
                return
            backoff = self._planner.stream_failed()
            if backoff is None:
                self._fail(err)
                return
            await anyio.sleep(backoff)
            stream, self._next = self._next, None
            self._preparing = False
            try:
                if stream is None:
                    stream = await self._connector.open_stream(
                        turn_ids=self._turn_ids, settings=self._settings
                    )
                async with self._lock:
                    await self._activate(stream, reason=f"error:{err.kind}")
            except SonicError as again:
                if stream is not None:
                    await stream.close()
                err = again
                continue
            self._recoveries += 1
            return

    def _fail(self, error: SonicError) -> None:
        _log.warning("sonic.conversation_failed", kind=error.kind, retryable=error.retryable)
        self._failure = error
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
