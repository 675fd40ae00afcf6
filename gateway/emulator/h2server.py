"""A lean HTTP/2 + TLS server for the emulator: one asyncio protocol per connection, h2 inside.

Theory of operation. The emulator serves one kind of request, a long bidirectional stream, and
must stay cheap per DATA frame under hundreds of concurrent streams. So this is a transport shell
with no per-frame task hops: :class:`H2ServerConnection` is an :class:`asyncio.Protocol` on a plain
TCP transport that decrypts with :class:`~gateway.emulator.tls_bio.ServerTls` (ALPN must select
``h2``), feeds the plaintext to an ``h2`` connection and hands each event straight to the
application's per-stream :class:`StreamSink` (plain method calls, no queues). The application
answers through :class:`ServerStream` (``respond``, ``send`` / ``send_nowait``, ``end``,
``reset``); bytes queued on a stream go out as far as HTTP/2 flow control allows and wait for the
peer's WINDOW_UPDATE otherwise. Callbacks never await; the async side (sessions) lives in the task
group of whoever owns the server and only awaits when a stream's queue is above its high water.

Connection rules:

* SETTINGS_MAX_CONCURRENT_STREAMS is advertised once (``max_concurrent_streams``); there is no
  recycling after N requests (the failure mode of servers that GOAWAY after a request count).
* Flow control costs next to nothing per DATA frame: the peer gets the largest windows HTTP/2
  allows (2^31-1 per stream and for the connection) and received bytes are handed back to ``h2``
  in batches of ``ack_batch_bytes`` per connection (``h2`` then sends a WINDOW_UPDATE only after
  half a window). The data was consumed before it is acknowledged; the windows bound nothing the
  emulator needs bounded.
* ``h2`` formats every received frame for a trace log line even when nothing logs (``repr`` of the
  frame, hex of its payload); :class:`_QuietH2Connection` leaves that line out
  (``tests/emulator/test_emulator_h2server.py`` pins the copied method to ``h2``'s source). With
  the batched acknowledgement, a 1.45 KB DATA frame costs 8 us in ``h2`` instead of 14 us (11 us
  without the trace line alone); one core of the 2-core development VM.
* :meth:`H2ServerConnection.goaway` sends GOAWAY(NO_ERROR, last-stream-id = highest stream id
  seen) *without* moving ``h2`` to its closed state (``h2`` 4.x refuses to send anything after its
  own ``close_connection``), so streams already open run to their end; a stream the peer opens
  above that id is refused (RST_STREAM REFUSED_STREAM); the connection closes once no stream is
  open. :meth:`H2ServerConnection.drop` aborts the TCP connection with no frame at all.
* A graceful GOAWAY *received* from the peer (NO_ERROR) is RFC 9113 section 6.8's: the streams
  already open continue; the connection accepts no new stream (REFUSED_STREAM) and closes once
  the last one ended. Node's HTTP/2 client, which the AWS SDK for JavaScript v3 uses for Bedrock's
  bidirectional stream, sends it right after the response headers (``session.close()``).
  ``h2`` 4.x would move to its closed state on any received GOAWAY, clear its outbound buffer and
  refuse to send another frame (python-hyper/h2 issue 1181), so :class:`_QuietH2Connection` only
  reports that one as an event; a GOAWAY with an error code still closes the connection at once,
  aborting its streams.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Final, Protocol, cast, final

import anyio
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import structlog
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from gateway.emulator.tls_bio import ServerTls

if TYPE_CHECKING:
    from collections.abc import Callable

    from h2.events import Event
    from hyperframe.frame import Frame

__all__ = [
    "H2_INTERNAL_ERROR",
    "H2_NO_ERROR",
    "H2_REFUSED_STREAM",
    "H2ServerConnection",
    "H2ServerSettings",
    "Request",
    "ServerStream",
    "StreamSink",
]

_log = structlog.get_logger("gateway.emulator")

H2_NO_ERROR: Final = 0
H2_INTERNAL_ERROR: Final = 2
H2_REFUSED_STREAM: Final = 7
_DEFAULT_WINDOW: Final = 65_535
MAX_WINDOW: Final = 2**31 - 1


class _QuietH2Connection(h2.connection.H2Connection):
    """``h2``'s connection without the eagerly formatted trace line per received frame, and with
    a peer's graceful GOAWAY reported without closing the connection (module docstring)."""

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        if frame.error_code != ErrorCodes.NO_ERROR:
            return super()._receive_goaway_frame(frame)
        # Graceful: no state change and the queued output stays; the connection decides the rest.
        event = h2.events.ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def _receive_frame(self, frame: Frame) -> list[Event]:
        # h2 4.4.1 H2Connection._receive_frame, minus its first statement:
        #   self.config.logger.trace("Received frame: %s", repr(frame))
        events: list[Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events


class StreamSink(Protocol):
    """What the application plugs into a stream to hear its request side (called synchronously)."""

    def feed(self, data: bytes) -> None:
        """Request body bytes, as they arrive (DATA frames cut anywhere)."""

    def end_input(self) -> None:
        """The peer ended its side of the stream (END_STREAM)."""

    def abort(self) -> None:
        """The stream died: reset by the peer, or the connection closed."""


@final
class Request:
    """A request's head: method, path and headers (names lower-case bytes).

    ``path`` is percent-decoded and without the query (as ASGI servers present it);
    ``raw_path`` and ``query`` are as sent, ``authority`` is the ``:authority`` pseudo-header
    (what SigV4 signs as ``host``). A header sent more than once has its values joined by commas.
    """

    __slots__ = ("authority", "headers", "method", "path", "query", "raw_path")

    def __init__(
        self,
        method: str,
        path: str,
        headers: dict[bytes, bytes],
        *,
        raw_path: str | None = None,
        query: str = "",
        authority: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.raw_path = path if raw_path is None else raw_path
        self.query = query
        self.authority = authority


@final
class H2ServerSettings:
    """Per-connection HTTP/2 parameters.

    Attributes:
        max_concurrent_streams: SETTINGS_MAX_CONCURRENT_STREAMS advertised to the peer.
        receive_window: initial stream window and connection window granted to the peer (bytes).
        ack_batch_bytes: received bytes handed back to flow control at once, per connection.
        high_water_frames: queued response chunks above which ``ServerStream.send`` waits.
    """

    __slots__ = ("ack_batch_bytes", "high_water_frames", "max_concurrent_streams", "receive_window")

    def __init__(
        self,
        *,
        max_concurrent_streams: int = 100,
        receive_window: int = MAX_WINDOW,
        ack_batch_bytes: int = 16 << 20,
        high_water_frames: int = 32,
    ) -> None:
        if not 0 < ack_batch_bytes <= receive_window // 2:
            raise ValueError("ack_batch_bytes must be positive and at most half the window")
        self.max_concurrent_streams = max_concurrent_streams
        self.receive_window = receive_window
        self.ack_batch_bytes = ack_batch_bytes
        self.high_water_frames = high_water_frames


type RequestHandler = Callable[[ServerStream, Request], None]


@final
class ServerStream:
    """One HTTP/2 stream as the application sees it: a sink for input, methods for output."""

    __slots__ = (
        "_conn",
        "_end_requested",
        "_headers_sent",
        "_pending",
        "_writable",
        "closed",
        "input_ended",
        "output_ended",
        "sink",
        "stream_id",
    )

    def __init__(self, conn: H2ServerConnection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.sink: StreamSink | None = None
        self._pending: collections.deque[bytes] = collections.deque()
        self._end_requested = False
        self._headers_sent = False
        self._writable: anyio.Event | None = None
        self.input_ended = False
        self.output_ended = False
        self.closed = False
        """True once the stream is gone (both sides ended, reset, or the connection closed)."""

    @property
    def connection(self) -> H2ServerConnection:
        """The connection carrying this stream."""
        return self._conn

    def respond(
        self, status: int, headers: list[tuple[bytes, bytes]], *, end: bool = False
    ) -> None:
        """Send the response headers (``end``: and end the response right there).

        Body bytes queued before this wait for it.
        """
        if self.closed or self._headers_sent:
            return
        self._headers_sent = True
        self._conn.send_headers(self, [(b":status", str(status).encode()), *headers], end=end)
        if not end:
            self._conn.pump(self)

    def send_nowait(self, data: bytes) -> None:
        """Queue response body bytes regardless of the high water (a last frame, an error)."""
        if self.closed or self._end_requested or not data:
            return
        self._pending.append(data)
        self._conn.pump(self)

    async def send(self, data: bytes) -> None:
        """Queue response body bytes; wait first while the queue is above its high water."""
        while len(self._pending) >= self._conn.high_water_frames and not self.closed:
            if self._writable is None:
                self._writable = anyio.Event()
            await self._writable.wait()
        self.send_nowait(data)

    def end(self) -> None:
        """End the response once the queued bytes are out (END_STREAM)."""
        if self.closed or self._end_requested:
            return
        self._end_requested = True
        self._conn.pump(self)

    def reset(self, error_code: int = H2_INTERNAL_ERROR) -> None:
        """Reset the stream now (RST_STREAM); queued bytes are discarded."""
        if self.closed:
            return
        self._pending.clear()
        self._conn.reset(self, error_code)

    # ---------------------------------------------------------------------- connection side

    def _wake_writers(self) -> None:
        event = self._writable
        if event is not None and (self.closed or len(self._pending) < self._conn.high_water_frames):
            self._writable = None
            event.set()


@final
class H2ServerConnection(asyncio.Protocol):
    """One HTTP/2 server connection (see the module docstring)."""

    def __init__(
        self,
        *,
        number: int,
        settings: H2ServerSettings,
        tls: ssl.SSLContext,
        on_request: RequestHandler,
        on_closed: Callable[[H2ServerConnection], None],
    ) -> None:
        self.number = number
        self._tls = ServerTls(tls)
        self._h2_started = False
        self._plain: list[bytes] = []
        self._write_scheduled = False
        self.high_water_frames = settings.high_water_frames
        self._settings = settings
        self._on_request = on_request
        self._on_closed = on_closed
        self._h2 = _QuietH2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._unacked: dict[int, int] = {}
        self._unacked_bytes = 0
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, ServerStream] = {}
        self._blocked: set[int] = set()
        self._goaway_sent = False
        self._peer_goaway_received = False
        self._last_accepted: int | None = None
        """Once either side sent GOAWAY: the highest stream id still served; None before."""
        self._highest_request = 0
        """The highest stream id a request arrived on (in event order, unlike h2's own count)."""
        self._lost = False
        self.streams_opened = 0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Wait for the TLS handshake (the client speaks first)."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        """Decrypt, run the peer's frames through h2 and dispatch the events to the streams."""
        tls = self._tls
        try:
            plain = tls.receive(data)
        except ssl.SSLError as exc:
            _log.info("emulator.tls_error", connection=self.number, error=str(exc))
            self.drop()
            return
        if not self._h2_started and tls.handshake_done:
            if tls.alpn_protocol != "h2":
                _log.info("emulator.not_h2", connection=self.number, alpn=tls.alpn_protocol)
                self._flush()
                self._close_transport()
                return
            self._start_h2()
        if plain:
            self._receive_h2(plain)
        else:
            self._flush()
        if tls.peer_closed:
            self._close_transport()

    def _start_h2(self) -> None:
        """Send our SETTINGS (stream limit, windows) and open the connection window."""
        self._h2_started = True
        window = self._settings.receive_window
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: (
                    self._settings.max_concurrent_streams
                ),
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            },
        )
        self._h2.initiate_connection()
        if window > _DEFAULT_WINDOW:
            self._h2.increment_flow_control_window(window - _DEFAULT_WINDOW)
        self._flush()

    def _receive_h2(self, data: bytes) -> None:
        conn = self._h2
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            _log.info("emulator.h2_protocol_error", connection=self.number, error=str(exc))
            self._flush()
            self._close_transport()
            return
        streams = self._streams
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                stream = streams.get(event.stream_id)
                if stream is not None and stream.sink is not None and event.data:
                    try:
                        stream.sink.feed(event.data)
                    except Exception:
                        # An application bug costs this stream, not the connection.
                        _log.exception("emulator.stream_handler_failed", stream=event.stream_id)
                        self._abort_stream(event.stream_id)
                        self.reset(stream, H2_INTERNAL_ERROR)
                # Consumed already; the window goes back to h2 in batches (module docstring).
                size = event.flow_controlled_length
                if size:
                    unacked = self._unacked
                    unacked[event.stream_id] = unacked.get(event.stream_id, 0) + size
                    self._unacked_bytes += size
                    if self._unacked_bytes >= self._settings.ack_batch_bytes:
                        self._acknowledge()
            elif isinstance(event, h2.events.StreamEnded):
                self._input_ended(event.stream_id)
            elif isinstance(event, h2.events.RequestReceived):
                self._request(event)
            elif isinstance(event, h2.events.StreamReset):
                self._abort_stream(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self._window_updated(event.stream_id)
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self._window_updated(0)
            elif isinstance(event, h2.events.ConnectionTerminated):
                if event.error_code == ErrorCodes.NO_ERROR:
                    self._peer_goaway()
                    continue
                self._flush()
                self._close_transport()
                return
        self._flush()
        self._maybe_finish_goaway()

    def connection_lost(self, exc: Exception | None) -> None:
        """Every stream still open dies with the connection."""
        self._lost = True
        for stream_id in list(self._streams):
            self._abort_stream(stream_id)
        self._on_closed(self)

    # ------------------------------------------------------------------ control

    @property
    def _closing(self) -> bool:
        return self._transport is not None and self._transport.is_closing()

    @property
    def is_open(self) -> bool:
        """True until the TCP connection is gone."""
        return not self._lost

    @property
    def goaway_sent(self) -> bool:
        """True once :meth:`goaway` ran."""
        return self._goaway_sent

    @property
    def goaway_received(self) -> bool:
        """True once the peer sent a graceful GOAWAY (NO_ERROR)."""
        return self._peer_goaway_received

    @property
    def open_streams(self) -> int:
        """Streams not yet closed on this connection."""
        return len(self._streams)

    def goaway(self) -> None:
        """Graceful GOAWAY: no new streams here; open ones finish; close when the last one ends."""
        if self._lost or self._goaway_sent:
            return
        self._goaway_sent = True
        last = self._highest_request
        self._stop_accepting()
        frame = GoAwayFrame(stream_id=0, last_stream_id=last, error_code=H2_NO_ERROR)
        self._flush()
        # Written beside h2, not through it: h2's own GOAWAY would stop every open stream too.
        self._queue(frame.serialize())
        self._maybe_finish_goaway()

    def _peer_goaway(self) -> None:
        # The peer's graceful GOAWAY: serve the open streams to their end, accept no new one.
        if not self._peer_goaway_received:
            self._peer_goaway_received = True
            _log.debug("emulator.goaway_received", connection=self.number, open=len(self._streams))
        self._stop_accepting()

    def _stop_accepting(self) -> None:
        if self._last_accepted is None:
            self._last_accepted = self._highest_request

    def drop(self) -> None:
        """Abort the TCP connection at once: no GOAWAY, no RST_STREAM, no TLS close_notify."""
        if self._transport is not None and not self._lost:
            self._transport.abort()

    def close(self) -> None:
        """Close now: GOAWAY through h2 then the transport (server shutdown)."""
        if self._lost or self._closing:
            return
        if self._h2_started:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()
        self._flush()
        self._close_transport()

    # ------------------------------------------------------------------ stream plumbing

    def send_headers(
        self, stream: ServerStream, headers: list[tuple[bytes, bytes]], *, end: bool
    ) -> None:
        """Send a stream's response headers."""
        try:
            self._h2.send_headers(stream.stream_id, headers, end_stream=end)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self._abort_stream(stream.stream_id)
            return
        if end:
            stream._end_requested = True
            self._output_ended(stream)
        self._flush()

    def pump(self, stream: ServerStream) -> None:
        """Send as much of a stream's queue as flow control allows; end it when asked and empty."""
        if stream.closed or not stream._headers_sent:
            return
        conn = self._h2
        pending = stream._pending
        stream_id = stream.stream_id
        try:
            while pending:
                window = min(
                    conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size
                )
                if window <= 0:
                    self._blocked.add(stream_id)
                    break
                chunk = pending[0]
                if len(chunk) <= window:
                    pending.popleft()
                    conn.send_data(stream_id, chunk)
                else:
                    conn.send_data(stream_id, chunk[:window])
                    pending[0] = chunk[window:]
            if not pending and stream._end_requested and not stream.output_ended:
                conn.end_stream(stream_id)
                self._output_ended(stream)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self._abort_stream(stream_id)
            return
        finally:
            self._flush()
        stream._wake_writers()
        self._maybe_finish_goaway()

    def reset(self, stream: ServerStream, error_code: int) -> None:
        """RST_STREAM a stream and forget it."""
        with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream.stream_id, error_code=error_code)
        self._forget(stream)
        self._flush()
        self._maybe_finish_goaway()

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self._last_accepted is None:
            self._highest_request = max(self._highest_request, stream_id)
        elif stream_id > self._last_accepted:
            # Opened after a GOAWAY: refused, the peer may retry it elsewhere.
            self._h2.reset_stream(stream_id, error_code=H2_REFUSED_STREAM)
            return
        method = raw_path = query = authority = ""
        headers: dict[bytes, bytes] = {}
        for name, value in event.headers or ():
            name_b = bytes(name)
            if name_b == b":method":
                method = bytes(value).decode("ascii", "replace")
            elif name_b == b":path":
                raw_path, _, query = bytes(value).decode("ascii", "replace").partition("?")
            elif name_b == b":authority":
                authority = bytes(value).decode("ascii", "replace")
            elif not name_b.startswith(b":"):
                previous = headers.get(name_b)
                headers[name_b] = (
                    bytes(value) if previous is None else previous + b"," + bytes(value)
                )
        stream = ServerStream(self, stream_id)
        self._streams[stream_id] = stream
        self.streams_opened += 1
        request = Request(
            method,
            urllib.parse.unquote(raw_path),
            headers,
            raw_path=raw_path,
            query=query,
            authority=authority,
        )
        self._on_request(stream, request)

    def _input_ended(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.input_ended:
            return
        stream.input_ended = True
        if stream.sink is not None:
            stream.sink.end_input()
        if stream.output_ended:
            self._forget(stream)

    def _output_ended(self, stream: ServerStream) -> None:
        stream.output_ended = True
        if stream.input_ended:
            self._forget(stream)

    def _abort_stream(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._forget(stream)
        if stream.sink is not None:
            stream.sink.abort()

    def _forget(self, stream: ServerStream) -> None:
        stream.closed = True
        stream._pending.clear()
        self._streams.pop(stream.stream_id, None)
        self._blocked.discard(stream.stream_id)
        stream._wake_writers()

    def _window_updated(self, stream_id: int) -> None:
        if stream_id == 0:
            ready = list(self._blocked)
            self._blocked.clear()
        elif stream_id in self._blocked:
            self._blocked.discard(stream_id)
            ready = [stream_id]
        else:
            return
        for sid in ready:
            stream = self._streams.get(sid)
            if stream is not None:
                self.pump(stream)

    def _acknowledge(self) -> None:
        conn = self._h2
        for stream_id, size in self._unacked.items():
            conn.acknowledge_received_data(size, stream_id)
        self._unacked.clear()
        self._unacked_bytes = 0

    def _maybe_finish_goaway(self) -> None:
        if self._last_accepted is not None and not self._streams:
            self.close()

    def _flush(self) -> None:
        """Queue h2's output; TLS records (handshake, tickets) already made go out now."""
        if self._lost:
            return
        if self._h2_started:
            data = self._h2.data_to_send()
            if data:
                self._queue(data)
        out = self._tls.outgoing()
        if out and self._transport is not None:
            self._transport.write(out)

    def _queue(self, data: bytes) -> None:
        # Everything queued during one event-loop iteration (frames of several streams, a text
        # block's three events) goes out in one TLS write and one send() at its end.
        self._plain.append(data)
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_now)

    def _write_now(self) -> None:
        self._write_scheduled = False
        if self._lost or self._transport is None or self._transport.is_closing():
            # Closing: TLS already sent its close_notify; nothing more can go out.
            return
        if self._plain:
            data = self._plain[0] if len(self._plain) == 1 else b"".join(self._plain)
            self._plain.clear()
            self._tls.send(data)
        out = self._tls.outgoing()
        if out:
            self._transport.write(out)

    def _close_transport(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._write_now()
            self._tls.close()
            self._write_now()
            self._transport.close()
