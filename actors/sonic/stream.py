"""One Bedrock bidirectional stream through the real SDK: open, the one receive loop, send, close.

Theory of operation:

* :meth:`SonicStream.open` invokes ``InvokeModelWithBidirectionalStream`` with the stream's
  credentials pinned (an operation plugin installs :class:`PinnedIdentityResolver`), sends the
  prelude (sessionStart, promptStart, system prompt: allowed before the response headers), then
  awaits ``await_output()`` within ``open_timeout_s`` and marks the protocol ready. Only then may
  the audio block start.
* :meth:`SonicStream.run` is the ONE receive loop (two readers on one stream break it). It decodes
  every event through the sans-I/O :class:`SonicProtocol` and hands the internal events to the
  ``deliver`` callback. ``receive()`` raising, or returning None before we closed, fails the
  stream at once: the failure is stored, every blocked send is cancelled, and later sends raise
  it, because the SDK's ``send()`` never reports a dead connection itself. A watchdog fails the
  stream (``stall``, retryable) when nothing arrives for ``stall_timeout_s`` after
  :meth:`SonicStream.expect_output` said an answer is due (a caller turn ended, a USER text went
  out); any output disarms it. Without such a cue the service may stay quiet for as long as the
  caller does.
* :meth:`SonicStream.send_unit` sends a list of encoded events as one unit under the stream's
  lock: the single writer. It raises the stream's :class:`SonicError` once the stream failed and
  :class:`ClosedByUs` once it was closed. Right after the request is up, the SDK's publisher is
  taken over by :class:`LeanInputWriter` (our framing and chunk signing, a unit in ONE write, the
  SDK's signature chain kept current, see :mod:`actors.sonic.event_writer`); where the SDK is not
  as expected the SDK publisher sends every event instead.
* :meth:`SonicStream.close` is the orderly, bounded end: audio contentEnd, promptEnd, sessionEnd,
  a short wait for ``completionEnd`` if a completion is in flight, then the input stream is closed
  (a signed empty frame and END_STREAM) and the response read to its end by the receive loop; all
  by a deadline (``close_timeout_s`` from now, or earlier), shielded from cancellation. A second
  call with an earlier deadline hurries a close in progress. The SDK stream is always released at
  the end, so awscrt's request-body task always finishes: when the HTTP/2 stream is already gone
  (reset, connection lost) the input pipe is closed without the end frame and without waiting for
  it to drain, since nothing reads it any more. A pending receive is never cancelled by a close; only
  a peer that does not end its response by the deadline leaves one for the owner to cancel.

awscrt and the SDK are wrapped here; callers see only :class:`SonicError` subclasses.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import structlog
from aws_sdk_bedrock_runtime.models import (  # type: ignore[import-untyped]  # no py.typed in 0.12
    InvokeModelWithBidirectionalStreamOperationInput,
    InvokeModelWithBidirectionalStreamOutputChunk,
)
from smithy_core.exceptions import ModeledError

from actors.errors import ClosedByUs, SonicError, SonicRetryableError
from actors.sonic.classify import classify_error
from actors.sonic.credentials import PinnedIdentityResolver, seconds_left
from actors.sonic.event_writer import (
    InputWriter,
    SdkInputWriter,
    close_input,
    discard_input,
    open_input_writer,
)
from actors.sonic.protocol import SonicProtocol
from actors.sonic.transport import HttpStreamSlot, capture_http_stream, end_pending_reads

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from smithy_aws_core.identity import AWSCredentialsIdentity

    from actors.sonic.events import SonicEvent
    from actors.sonic.settings import SonicSettings

__all__ = ["Deliver", "SonicStream"]

_log = structlog.get_logger("actors.sonic.stream")
_stream_numbers: Final = itertools.count(1)
# The last part of a close's budget kept for releasing the SDK stream (at most a quarter of it).
_RELEASE_RESERVE_S: Final = 0.1

type Deliver = Callable[[SonicStream, list[SonicEvent]], Awaitable[None]]


@final
class SonicStream:
    """One open Bedrock stream and its protocol state. Build with :meth:`open`."""

    def __init__(
        self,
        *,
        duplex: Any,
        settings: SonicSettings,
        protocol: SonicProtocol,
        opened_at: float,
        expires_in_s: float | None,
        http: HttpStreamSlot | None = None,
    ) -> None:
        self._duplex = duplex  # smithy DuplexEventStream (the SDK is untyped at this boundary)
        # Gets the CRT stream under it once the SDK's transport task has sent the request.
        self._http = http
        self._receiver: Any = None
        self._settings = settings
        self.protocol = protocol
        self.number = next(_stream_numbers)
        self.opened_at = opened_at
        #: anyio time at which the stream's credentials expire (None: they do not).
        self.credentials_expire_at = None if expires_in_s is None else opened_at + expires_in_s
        self._input: InputWriter = SdkInputWriter(duplex.input_stream)
        # One writer per stream: the lock only orders close() after a send in flight, so take it
        # without a checkpoint when it is free (~1 µs instead of ~6 µs per unit).
        self._send_lock = anyio.Lock(fast_acquire=True)
        # The unit in flight, cancelled when the stream fails (the lock allows only one).
        self._send_scope: anyio.CancelScope | None = None
        self._failure: SonicError | None = None
        self._closing = False
        self._closed = False
        self._receive_done = anyio.Event()
        self._completion_seen = anyio.Event()
        self._running = False
        # The response ended without an exception frame (reset, connection lost): the HTTP/2 stream
        # is gone, and with it awscrt's reader of our input pipe.
        self._peer_gone = False
        # A close in progress (its deadline can be brought forward) and its end.
        self._close_scope: anyio.CancelScope | None = None
        self._close_limit = math.inf
        self._close_done = anyio.Event()
        # Stall watchdog: when an answer became due (None: none is), and the event that wakes it.
        self._expect_since: float | None = None
        self._expecting = anyio.Event()
        self._events_sent = 0

    # ---------------------------------------------------------------- open

    @classmethod
    async def open(
        cls,
        client: Any,
        settings: SonicSettings,
        identity: AWSCredentialsIdentity,
        *,
        turn_ids: Iterator[int] | None = None,
        lean_input: bool = True,
    ) -> SonicStream:
        """Open a stream and send the prelude; returns when ``await_output()`` resolved.

        Blocks (asynchronously) for the HTTP/2 request and the response headers, at most
        ``settings.open_timeout_s``.

        Args:
            client: an ``AsyncBedrockRuntimeClient`` (the connector's).
            settings: the conversation's settings.
            identity: the credentials this stream is signed with for its whole life.
            turn_ids: the conversation's assistant-turn counter (may be attached later).
            lean_input: False keeps the SDK publisher for every event (benchmarks compare).

        Raises:
            SonicRetryableError / SonicFatalError: the open failed or timed out (``openTimeout``).
        """
        resolver = PinnedIdentityResolver(identity)

        def pin(config: Any) -> None:
            config.aws_credentials_identity_resolver = resolver

        protocol = SonicProtocol(settings, turn_ids=turn_ids)
        opened_at = anyio.current_time()
        stream: SonicStream | None = None
        try:
            with anyio.fail_after(settings.open_timeout_s):
                with capture_http_stream() as http:
                    duplex = await client.invoke_model_with_bidirectional_stream(
                        InvokeModelWithBidirectionalStreamOperationInput(
                            model_id=settings.model_id
                        ),
                        plugins=[pin],
                    )
                stream = cls(
                    duplex=duplex,
                    settings=settings,
                    protocol=protocol,
                    opened_at=opened_at,
                    expires_in_s=seconds_left(identity),
                    http=http,
                )
                stream._input = await open_input_writer(duplex, lean=lean_input)
                await stream._input.send(protocol.prelude())
                _, stream._receiver = await duplex.await_output()
        except TimeoutError as exc:
            if stream is not None:
                await stream._abort()
            raise SonicRetryableError(
                "openTimeout", f"stream not ready within {settings.open_timeout_s:g} s"
            ) from exc
        except Exception as exc:
            if stream is not None:
                await stream._abort()
            raise classify_error(exc) from exc
        except BaseException:
            if stream is not None:  # cancelled mid-open: still release the SDK stream
                await stream._abort()
            raise
        protocol.mark_ready()
        _log.debug(
            "sonic.stream_opened",
            stream=stream.number,
            ms=round((anyio.current_time() - opened_at) * 1000, 1),
        )
        return stream

    # ---------------------------------------------------------------- state

    @property
    def failure(self) -> SonicError | None:
        """The error that ended this stream, if any."""
        return self._failure

    @property
    def usable(self) -> bool:
        """True while the stream can still send (not failed, not closing)."""
        return self._failure is None and not self._closing

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has released the stream."""
        return self._close_done.is_set()

    @property
    def expecting_output(self) -> bool:
        """True while an answer is due and no output has arrived since (see :meth:`expect_output`)."""
        return self._expect_since is not None

    def expect_output(self) -> None:
        """An answer is due now (a caller turn ended, a USER text went out): arm the stall watchdog.

        The next output event of any kind disarms it; arming again while armed keeps the first
        time. Does nothing when ``stall_timeout_s`` is None.
        """
        if self._expect_since is None and self._settings.stall_timeout_s is not None:
            self._expect_since = anyio.current_time()
            self._expecting.set()

    def statistics(self) -> dict[str, int | str | None]:
        """Counters of this stream."""
        return {
            "number": self.number,
            "events_sent": self._events_sent,
            "lean_input": int(self._input.lean),
            "failure": None if self._failure is None else self._failure.kind,
            **self.protocol.statistics(),
        }

    # ---------------------------------------------------------------- receive

    async def run(self, deliver: Deliver) -> None:
        """The ONE receive loop; returns after an orderly close, raises :class:`SonicError` otherwise.

        Blocks until the response ends. ``deliver`` is awaited for every non-empty batch of
        internal events (its backpressure slows this loop, never the sender).
        """
        if self._running:
            raise RuntimeError("one receive loop per stream")
        self._running = True
        try:
            async with anyio.create_task_group() as tg:
                if self._settings.stall_timeout_s is not None:
                    tg.start_soon(self._watch_stall, tg.cancel_scope)
                await self._receive_loop(deliver)
                self._receive_done.set()
                tg.cancel_scope.cancel()
        finally:
            self._receive_done.set()
        if self._failure is not None:
            raise self._failure

    async def _receive_loop(self, deliver: Deliver) -> None:
        receiver = self._receiver
        while True:
            try:
                chunk = await receiver.receive()
            except Exception as exc:
                # An exception frame leaves the HTTP/2 stream open until our side ends it; any
                # other error means the stream itself is gone.
                self._peer_gone = not isinstance(exc, ModeledError)
                if self._closed:
                    return  # our own close tore the stream down
                self._fail(classify_error(exc), exc)
                return
            if chunk is None:
                if not self._closing:
                    self._fail(
                        SonicRetryableError(
                            "streamEnded", "the service ended the stream unexpectedly"
                        )
                    )
                return
            if self._expect_since is not None:
                self._expect_since = None  # output arrived: the answer is under way
                self._expecting = anyio.Event()
            if not isinstance(chunk, InvokeModelWithBidirectionalStreamOutputChunk):
                continue  # an unknown union variant: newer service, older SDK
            data = chunk.value.bytes_
            if not data:
                continue
            try:
                events = self.protocol.receive(data)
            except SonicError:
                raise
            except Exception as exc:  # a malformed event is the service's protocol error
                self._fail(SonicRetryableError("invalidEventBytes", str(exc)), exc)
                return
            if self.protocol.completion_ended:
                self._completion_seen.set()
            if events:
                await deliver(self, events)

    async def _watch_stall(self, scope: anyio.CancelScope) -> None:
        limit = self._settings.stall_timeout_s
        assert limit is not None
        while True:
            since = self._expect_since
            if since is None:
                await self._expecting.wait()
                continue
            await anyio.sleep_until(since + limit)
            if self._expect_since != since or self._closing:
                continue  # output arrived meanwhile (or we are closing): nothing is overdue
            self._fail(SonicRetryableError("stall", f"no output for {limit:g} s after a turn"))
            # Never cancel a pending receive (awscrt then resolves a cancelled future from its
            # own thread): end our side so the peer ends the response; if it does not within the
            # close timeout, end the waiting read as awscrt would; cancel only as a last resort.
            await self._close_input()
            with anyio.move_on_after(self._settings.close_timeout_s):
                await self._receive_done.wait()
            if not self._receive_done.is_set() and self._end_waiting_read():
                with anyio.move_on_after(self._settings.close_timeout_s):
                    await self._receive_done.wait()
            scope.cancel()
            return

    def _fail(self, error: SonicError, cause: BaseException | None = None) -> None:
        if self._failure is None:
            if cause is not None:
                error.__cause__ = cause
            self._failure = error
            _log.info(
                "sonic.stream_failed",
                stream=self.number,
                kind=error.kind,
                retryable=error.retryable,
            )
        if self._send_scope is not None:
            self._send_scope.cancel()

    # ---------------------------------------------------------------- send

    async def send_unit(self, events: list[bytes]) -> None:
        """Send ``events`` in order with nothing in between (the single writer).

        Blocks (asynchronously) while the SDK's write buffer is full.

        Raises:
            SonicError: the stream failed (stored failure).
            ClosedByUs: the stream is closing or closed.
        """
        if not events:
            return
        self._check_sendable()
        async with self._send_lock:
            await self._send_locked(events)

    async def _send_locked(self, events: list[bytes]) -> None:
        self._check_sendable()
        with anyio.CancelScope() as scope:  # ~3 µs; lets a failure end a send blocked on the buffer
            self._send_scope = scope
            try:
                await self._input.send(events)
                self._events_sent += len(events)
            except OSError as exc:
                self._fail(classify_error(exc), exc)
            finally:
                self._send_scope = None
        self._check_sendable()

    def _check_sendable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise ClosedByUs(f"sonic stream {self.number} is closing")

    # ---------------------------------------------------------------- close

    async def close(self, *, deadline: float | None = None, finish_answer: bool = True) -> None:
        """End the stream in order by ``deadline``; idempotent; never raises; shielded.

        Blocks until the stream is released, at most until ``deadline`` (default, and at most:
        ``close_timeout_s`` from now). A call while a close is in progress brings that close's
        deadline forward to this one's and waits for it.

        Args:
            deadline: ``anyio.current_time()`` by which the stream is released.
            finish_answer: let an answer in flight finish (a short wait for ``completionEnd``
                while the assistant speaks); False when nobody is listening any more.
        """
        limit = anyio.current_time() + self._settings.close_timeout_s
        if deadline is not None:
            limit = min(limit, deadline)
        reserve = min(_RELEASE_RESERVE_S, max(0.0, limit - anyio.current_time()) / 4)
        running = self._close_scope
        if running is not None or self._close_done.is_set():
            if running is not None:  # hurry the close in progress to our deadline
                running.deadline = min(running.deadline, limit - reserve)
                self._close_limit = min(self._close_limit, limit)
            with anyio.move_on_at(limit, shield=True):
                await self._close_done.wait()
            return
        self._close_limit = limit
        with anyio.CancelScope(deadline=limit - reserve, shield=True) as scope:
            self._close_scope = scope
            await self._close_in_order(finish_answer=finish_answer)
        if scope.cancelled_caught:
            _log.info("sonic.stream_close_timeout", stream=self.number)
        await self._abort(deadline=self._close_limit)
        self._close_done.set()

    async def _close_in_order(self, *, finish_answer: bool) -> None:
        async with self._send_lock:
            if self._failure is None:
                # The stream may have died meanwhile: then there is nothing more to say to it.
                with contextlib.suppress(SonicError):
                    await self._send_locked(self.protocol.close())
            self._closing = True
        if (
            finish_answer
            and self._failure is None
            and self._running
            and self.protocol.assistant_speaking
        ):
            # Let an answer in flight finish: wait briefly for completionEnd.
            assert self._close_scope is not None
            left = self._close_scope.deadline - anyio.current_time()
            with anyio.move_on_after(left / 2):
                await self._completion_seen.wait()
        await self._close_input()
        if self._running:
            await self._receive_done.wait()
        elif self._receiver is not None and self._failure is None:
            await self._drain()

    async def _close_input(self) -> None:
        """End our side: the signed empty frame and END_STREAM, or just the pipe if the peer is gone."""
        try:
            if self._peer_gone:
                await discard_input(self._duplex.input_stream)
            else:
                await close_input(self._duplex.input_stream)
        except Exception as exc:
            _log.debug("sonic.stream_input_close_failed", stream=self.number, error=repr(exc))

    async def _drain(self) -> None:
        # Only for a stream whose receive loop never ran (a pooled stream): read to the end.
        while True:
            try:
                chunk = await self._receiver.receive()
            except Exception:
                return
            if chunk is None:
                return

    async def _abort(self, *, deadline: float | None = None) -> None:
        """Release the SDK stream without ceremony (at the end of a close, or when open failed).

        Shielded, and bounded by ``deadline`` (default half a second from now). The input pipe is
        closed without waiting for it to drain (awscrt's request-body task ends with it). A read
        still waiting for a response the peer has not ended is ended the way awscrt ends it when
        a stream completes, so the receive loop returns by itself (never cancelled under a
        pending read); then the receiver is closed.
        """
        self._closing = True
        self._closed = True
        if self._send_scope is not None:
            self._send_scope.cancel()
        if deadline is None:
            deadline = anyio.current_time() + 0.5
        with anyio.CancelScope(deadline=deadline, shield=True):
            with contextlib.suppress(Exception):
                await discard_input(self._duplex.input_stream)
            if not self._receive_done.is_set() and self._end_waiting_read():
                await self._receive_done.wait()
            if self._receiver is not None and (self._receive_done.is_set() or not self._running):
                with contextlib.suppress(Exception):
                    await self._receiver.close()

    def _end_waiting_read(self) -> bool:
        """End a read waiting on a response the peer has not ended (True if there was a way)."""
        http_stream = None if self._http is None else self._http.stream
        return self._running and http_stream is not None and end_pending_reads(http_stream)

    def age(self, now: float) -> float:
        """Seconds since the stream was opened."""
        return now - self.opened_at

    def credentials_left(self, now: float) -> float:
        """Seconds until the stream's credentials expire (inf if they do not)."""
        if self.credentials_expire_at is None:
            return math.inf
        return self.credentials_expire_at - now
