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
  it, because the SDK's ``send()`` never reports a dead connection itself. An optional watchdog
  fails the stream when nothing arrives for ``stall_timeout_s`` while audio is flowing.
* :meth:`SonicStream.send_unit` sends a list of encoded events as one unit under the stream's
  lock: the single writer. It raises the stream's :class:`SonicError` once the stream failed and
  :class:`ClosedByUs` once it was closed. Right after the request is up, the SDK's publisher is
  taken over by :class:`LeanInputWriter` (our framing and chunk signing, a unit in ONE write, the
  SDK's signature chain kept current, see :mod:`actors.sonic.event_writer`); where the SDK is not
  as expected the SDK publisher sends every event instead.
* :meth:`SonicStream.close` is the orderly, bounded end: audio contentEnd, promptEnd, sessionEnd,
  a short wait for ``completionEnd`` if a completion is in flight, then the input stream is closed
  (a signed empty frame and END_STREAM) and the response drained; all within ``close_timeout_s``
  and shielded from cancellation.

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

from actors.errors import ClosedByUs, SonicError, SonicRetryableError
from actors.sonic.classify import classify_error
from actors.sonic.credentials import PinnedIdentityResolver, seconds_left
from actors.sonic.event_writer import InputWriter, SdkInputWriter, open_input_writer
from actors.sonic.protocol import InputState, SonicProtocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from smithy_aws_core.identity import AWSCredentialsIdentity

    from actors.sonic.events import SonicEvent
    from actors.sonic.settings import SonicSettings

__all__ = ["Deliver", "SonicStream"]

_log = structlog.get_logger("actors.sonic.stream")
_stream_numbers: Final = itertools.count(1)

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
    ) -> None:
        self._duplex = duplex  # smithy DuplexEventStream (the SDK is untyped at this boundary)
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
        self._last_output_at = opened_at
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
                duplex = await client.invoke_model_with_bidirectional_stream(
                    InvokeModelWithBidirectionalStreamOperationInput(model_id=settings.model_id),
                    plugins=[pin],
                )
                stream = cls(
                    duplex=duplex,
                    settings=settings,
                    protocol=protocol,
                    opened_at=opened_at,
                    expires_in_s=seconds_left(identity),
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
            self._last_output_at = anyio.current_time()
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
            deadline = self._last_output_at + limit
            await anyio.sleep_until(deadline)
            if self._last_output_at + limit > anyio.current_time():
                continue  # output arrived meanwhile: sleep to the new deadline
            if self.protocol.state is InputState.AUDIO and not self._closing:
                self._fail(SonicRetryableError("stall", f"no output for {limit:g} s"))
                # Never cancel a pending receive (awscrt then resolves a cancelled future from its
                # own thread): end our side so the peer ends the response, and cancel only if it
                # does not within the close timeout.
                await self._close_input()
                with anyio.move_on_after(self._settings.close_timeout_s):
                    await self._receive_done.wait()
                scope.cancel()
                return
            self._last_output_at = anyio.current_time()  # not streaming: nothing is expected

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

    async def close(self) -> None:
        """End the stream in order, bounded by ``close_timeout_s``; idempotent; never raises.

        Shielded: completes (or times out) even when the caller is being cancelled.
        """
        if self._closing:
            with anyio.move_on_after(self._settings.close_timeout_s, shield=True):
                await self._receive_done.wait()
            return
        with anyio.move_on_after(self._settings.close_timeout_s, shield=True) as scope:
            async with self._send_lock:
                if self._failure is None:
                    # The stream may have died meanwhile: then there is nothing more to say to it.
                    with contextlib.suppress(SonicError):
                        await self._send_locked(self.protocol.close())
                self._closing = True
            if self._failure is None and self._running and self.protocol.assistant_speaking:
                # Let an answer in flight finish (reference §6: wait briefly for completionEnd).
                with anyio.move_on_after(self._settings.close_timeout_s / 2):
                    await self._completion_seen.wait()
            await self._close_input()
            if self._running:
                await self._receive_done.wait()
            elif self._receiver is not None and self._failure is None:
                await self._drain()
        if scope.cancelled_caught:
            _log.info("sonic.stream_close_timeout", stream=self.number)
        await self._abort()

    async def _close_input(self) -> None:
        try:
            await self._duplex.input_stream.close()
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

    async def _abort(self) -> None:
        """Release the SDK stream without ceremony (after close, or when open failed)."""
        self._closing = True
        self._closed = True
        if self._send_scope is not None:
            self._send_scope.cancel()
        with anyio.move_on_after(0.5, shield=True):
            with contextlib.suppress(Exception):
                await self._duplex.input_stream.close()
            if self._receiver is not None:
                with contextlib.suppress(Exception):
                    await self._receiver.close()

    def age(self, now: float) -> float:
        """Seconds since the stream was opened."""
        return now - self.opened_at

    def credentials_left(self, now: float) -> float:
        """Seconds until the stream's credentials expire (inf if they do not)."""
        if self.credentials_expire_at is None:
            return math.inf
        return self.credentials_expire_at - now
