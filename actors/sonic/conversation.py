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

A next stream that fails to open, or fails before taking over, is retried with backoff (up to
:data:`~actors.sonic.handover.PREPARE_BACKOFF_MAX_S` apart) while the current stream lives: the
call loses nothing meanwhile. Only when the current stream itself ends (Sonic's cap) does the
failure path below take over.

Error recovery: a retryable failure of the current stream is reported at once
(:class:`SessionLost`) and takes the same path (bounded attempts with doubling backoff; audio
meanwhile only fills the ring; :class:`HandedOver` ``error:<kind>`` once a new stream took over). A
fatal error, or too many consecutive failures, closes every stream of the conversation, then
cancels its task group, and the error is raised from the ``async with`` block, typed
(:class:`SonicRetryableError` / :class:`SonicFatalError`), for the supervisor.

Streams are never left to the garbage collector: every stream the conversation opened is closed
before it is forgotten (in order when it is healthy, at once when it failed), on every path out,
and before the task group that runs their receive loops is cancelled; a receive is cancelled only
when the service does not end a response by the close's deadline. :meth:`aclose` takes a deadline,
so an owner with a shutdown bound (SonicSession) gets the whole close inside it.

Stall detection: :meth:`expect_output` (a caller turn ended) and every USER text arm the current
stream's watchdog; no output for ``stall_timeout_s`` fails the stream (``stall``, retryable), which
reopens with history like any other failure.

History: FINAL transcripts and FINAL assistant text (never SPECULATIVE) feed a
:class:`ConversationHistory`; PlaybackEgress's report of what the caller heard truncates the
assistant's text (:meth:`note_heard`, :meth:`truncate_last_assistant`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from typing import TYPE_CHECKING, Any, Final, Self, final

import anyio
import msgspec
import structlog

from actors.errors import ClosedByUs, SonicError
from actors.sonic.events import (
    AssistantText,
    CompletionEnded,
    HandedOver,
    SessionClosed,
    SessionLost,
    SonicAudio,
    SonicAudioEnded,
    SonicAudioStarted,
    SonicBargeIn,
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
        shared_history: the call's history to continue and keep (a SonicSession's memory, which
            outlives this conversation); None: a history of its own, seeded with ``history``.
    """

    def __init__(
        self,
        connector: SonicConnector,
        *,
        events_capacity: int = 256,
        history: Sequence[HistoryTurn] = (),
        settings: SonicSettings | None = None,
        shared_history: ConversationHistory | None = None,
    ) -> None:
        self._connector = connector
        s = connector.settings if settings is None else settings
        self._settings = s
        if shared_history is not None:
            # The call's one history: this conversation continues it (and writes to it).
            shared_history.seal()
            self._history = shared_history
        else:
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
        # Every stream opened and not yet closed: whatever path ends the conversation closes these.
        self._streams: set[SonicStream] = set()
        self._prepare_failures = 0
        # Set by stop_by(): every close ends by then and waits for no answer in flight.
        self._stop_deadline: float | None = None
        self._opening = anyio.CancelScope()  # the first open; stop_by() bounds it

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        """Open the first session (from the pool when possible) and start the manager.

        Raises:
            SonicError: the first session could not be opened (after bounded retries if retryable).
            ClosedByUs: :meth:`stop_by` was called before it opened.
        """
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        try:
            with self._opening:  # stop_by() bounds it: the owner is stopping
                stream = await self._open_with_retries()
            if self._opening.cancelled_caught:
                raise ClosedByUs("the conversation was stopped while it opened")
            async with self._lock:
                await self._activate(stream, reason=None)
        except BaseException:
            self._closing = True
            await self._close_all(deadline=None, finish_answer=False)
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
        """Close every stream (bounded), stop every task, and raise the conversation's failure if any."""
        try:
            if self._failure is None:
                await self.aclose()
            else:
                await self._close_all(deadline=None, finish_answer=False)
        finally:
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            await self._stack.__aexit__(exc_type, exc, tb)
            # A stream whose open completed while the tasks were being stopped.
            await self._close_all(deadline=None, finish_answer=False)
            for channel in (self._events_tx, self._events_rx, self._control_tx, self._control_rx):
                channel.close()
        if self._failure is not None and (
            exc is None or isinstance(exc, anyio.get_cancelled_exc_class())
        ):
            raise self._failure
        return False

    def stop_by(self, deadline: float) -> None:
        """The owner is stopping and must be done by ``deadline``: from now on every close of this
        conversation (and its exit) ends by then, and none waits for an answer in flight (nobody
        will hear it). An open in progress gets half of the time left to finish (then the stream
        is closed in order), else it is abandoned (``async with`` raises :class:`ClosedByUs`).
        Does not block; a later, earlier deadline wins."""
        if self._stop_deadline is None or deadline < self._stop_deadline:
            self._stop_deadline = deadline
        now = anyio.current_time()
        self._opening.deadline = min(self._opening.deadline, now + max(0.0, deadline - now) / 2)

    async def aclose(self, *, deadline: float | None = None, finish_answer: bool = True) -> None:
        """End the conversation in order: every stream closes (audio contentEnd, promptEnd,
        sessionEnd), all at once, and :class:`SessionClosed` is the last event.

        Blocks until the streams are released, at most until ``deadline`` (default:
        ``close_timeout_s`` from now). Idempotent (a second call with an earlier deadline hurries
        the first); shielded from cancellation.

        Args:
            deadline: ``anyio.current_time()`` by which every stream is released.
            finish_answer: let an answer in flight finish first (a short wait for
                ``completionEnd``); False when the caller has gone.
        """
        self._closing = True
        await self._close_all(deadline=deadline, finish_answer=finish_answer)
        if self._closed:
            return
        with contextlib.suppress(
            anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            self._events_tx.send_nowait(SessionClosed(reason="closed"))
        self._events_tx.close()
        self._closed = True

    async def _close_all(self, *, deadline: float | None, finish_answer: bool) -> None:
        """Close every stream not closed yet, concurrently, each by ``deadline``; shielded."""
        if deadline is None:
            deadline = anyio.current_time() + self._settings.close_timeout_s
        if self._stop_deadline is not None:
            deadline = min(deadline, self._stop_deadline)
            finish_answer = False
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for stream in list(self._streams):
                    tg.start_soon(
                        functools.partial(
                            self._close_stream,
                            stream,
                            deadline=deadline,
                            finish_answer=finish_answer,
                        )
                    )

    async def _close_stream(
        self, stream: SonicStream, *, deadline: float | None = None, finish_answer: bool = True
    ) -> None:
        try:
            await stream.close(deadline=deadline, finish_answer=finish_answer)
        finally:
            if stream.closed:
                self._streams.discard(stream)

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
        """Send interactive USER text (DTMF digits, "speak first"); False if no session could take it.

        The model answers a USER text, so it arms the stall watchdog like a caller turn.
        """
        return await self._send_text_unit(lambda s: s.protocol.user_text(text), expect=True)

    def expect_output(self) -> None:
        """A caller turn just ended: the current stream must say something within
        ``stall_timeout_s`` (see :meth:`SonicStream.expect_output`)."""
        stream = self._current
        if stream is not None and stream.usable:
            stream.expect_output()

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
            "prepare_failures": self._prepare_failures,
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

    async def _send_text_unit(self, build: Any, *, expect: bool = False) -> bool:
        self._check_open()
        async with self._lock:
            stream = self._current
            if stream is None or not stream.usable:
                return False
            try:
                await stream.send_unit(build(stream))
            except (SonicError, ClosedByUs):
                return False
            if expect:
                stream.expect_output()
            return True

    # ---------------------------------------------------------------- internals: streams

    async def _open(self) -> SonicStream:
        """Open a stream (the pool's if it has one); it is ours to close from now on."""
        stream = await self._connector.open_stream(turn_ids=self._turn_ids, settings=self._settings)
        self._streams.add(stream)
        return stream

    async def _open_with_retries(self) -> SonicStream:
        while True:
            try:
                return await self._open()
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
        if old.expecting_output:
            stream.expect_output()  # the turn the old stream never answered is in the replay
        self._session_index += 1
        lost = old.protocol.abandon_turn()
        self._tg.start_soon(self._close_stream, old)
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
            if self._closing or self._failure is not None:
                return
            if stream is self._current:
                await self._control_tx.send(_StreamFailed(number=stream.number, error=err))
            elif stream is self._next:
                self._next = None
                self._tg_start(self._close_stream, stream)
                await self._control_tx.send(_PrepareFailed(error=err))
        finally:
            self._receiving.discard(stream.number)

    def _tg_start(self, func: Any, *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(func, *args)

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
            case SonicAudioStarted():
                self._audio_open = True
                self._planner.assistant_turn(now=now, open_=True)
            case SonicAudio():
                self._planner.assistant_audio(now)
            case SonicBargeIn():
                self._barged_turn = event.turn_id
                self._audio_open = False
                self._planner.assistant_turn(now=now, open_=False)
            case SonicAudioEnded():
                self._audio_open = False
                self._planner.assistant_turn(now=now, open_=False)
            case (
                UserTranscript()
                | AssistantText()
                | ToolUseRequested()
                | Usage()
                | CompletionEnded()
                | HandedOver()
                | SessionLost()
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
            ready = self._next is not None
            action = self._planner.decide(now, next_ready=ready)
            if action is HandoverAction.SWITCH and self._next is not None:
                await self._switch(self._next, reason=self._planner.reason)
                continue
            timeout = math.inf
            if action is HandoverAction.PREPARE:
                if not self._preparing:
                    self._preparing = True
                    self._tg_start(self._prepare)
            else:
                timeout = max(0.0, self._planner.next_wakeup(now, next_ready=ready) - now)
            message: _Control | None = None
            with anyio.move_on_after(timeout):
                message = await self._control_rx.receive()
            match message:
                case None | _NextReady():
                    pass
                case _StreamFailed():
                    failed = self._current
                    if failed is not None and message.number == failed.number:
                        # The failed stream's turn ends now (SESSION_LOST), not at the switch:
                        # nothing more of it will come, and the consumer may fill the silence.
                        for event in [
                            *failed.protocol.abandon_turn(),
                            SessionLost(kind=message.error.kind),
                        ]:
                            self._note(event, anyio.current_time())
                            await self._emit(event)
                        await self._recover(message.error)
                        if self._failure is not None:
                            return
                case _PrepareFailed():
                    self._preparing = False
                    self._prepare_failed(message.error)

    def _prepare_failed(self, error: SonicError) -> None:
        """The next stream failed to open or to take over: the current one goes on; try later."""
        self._prepare_failures += 1
        now = anyio.current_time()
        retry_at = self._planner.prepare_failed(now, retryable=error.retryable)
        if retry_at is None:
            _log.warning(
                "sonic.prepare_gave_up",
                kind=error.kind,
                attempts=self._planner.prepare_failures,
            )
        else:
            _log.info(
                "sonic.prepare_retry",
                kind=error.kind,
                attempts=self._planner.prepare_failures,
                retry_in_s=round(retry_at - now, 3),
            )

    async def _prepare(self) -> None:
        current = self._current
        try:
            stream = await self._open()
        except SonicError as err:
            await self._control_tx.send(_PrepareFailed(error=err))
            return
        if self._closing or self._failure is not None or self._current is not current:
            # Closing, failed, or a recovery replaced the stream this one was meant to follow.
            self._preparing = False
            await self._close_stream(stream)
            return
        self._next = stream
        self._start_receiving(stream)
        await self._control_tx.send(_NextReady(number=stream.number))

    async def _switch(self, stream: SonicStream, *, reason: str) -> None:
        async with self._lock:
            self._next = None
            self._preparing = False
            if self._closing:
                await self._close_stream(stream)
                return
            try:
                await self._activate(stream, reason=reason)
            except SonicError as err:
                _log.info("sonic.switch_failed", kind=err.kind)
                self._tg_start(self._close_stream, stream)
                self._prepare_failed(err)
                return
            self._handovers += 1

    async def _recover(self, error: SonicError) -> None:
        err = error
        while not self._closing:
            if not err.retryable:
                await self._fail(err)
                return
            backoff = self._planner.stream_failed()
            if backoff is None:
                await self._fail(err)
                return
            await anyio.sleep(backoff)
            if self._stopping():
                return
            stream, self._next = self._next, None
            self._preparing = False
            try:
                if stream is None:
                    stream = await self._open()
                async with self._lock:
                    await self._activate(stream, reason=f"error:{err.kind}")
            except SonicError as again:
                if stream is not None:
                    self._tg_start(self._close_stream, stream)
                err = again
                continue
            self._recoveries += 1
            return

    def _stopping(self) -> bool:
        # A method, not the attribute: the closing flag changes while a recovery sleeps.
        return self._closing

    async def _fail(self, error: SonicError) -> None:
        """Give up: close every stream (the consumer still runs meanwhile), then cancel the task
        group, which ends the consumer's ``async with`` body; ``__aexit__`` raises ``error``."""
        _log.warning("sonic.conversation_failed", kind=error.kind, retryable=error.retryable)
        self._failure = error
        await self._close_all(deadline=None, finish_answer=False)
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
