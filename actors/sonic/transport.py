"""The CRT HTTP/2 transport of the Sonic client: a pool of HTTP/2 connections, a private CA bundle.

Rules:

* Bedrock's bidirectional stream needs the awscrt transport (aiohttp cannot stream both ways) over
  TLS with ALPN ``h2``; connections are built as HTTP/2-only CRT connections, so an endpoint that
  does not speak HTTP/2 fails fast (``AWS_ERROR_HTTP_UNSUPPORTED_PROTOCOL``) instead of hanging.
* A CA bundle (the emulator's trustme CA, a corporate proxy's CA) is trusted by THIS client only:
  ``_tls_ctx`` is replaced by a context whose trust store is the bundle. ``SSL_CERT_FILE`` would
  replace the trust store of the whole process and is never used.
* ``__deepcopy__`` returns ``self``: the SDK deep-copies its config for every operation, and the
  base class's copy would rebuild the client with the default trust store (silently dropping the
  bundle) and with an empty pool (silently dropping warm connections).
* TCP keep-alive is on, so an idle warm connection notices a dead peer.
* awscrt exposes no TCP_NODELAY option, and Nagle's algorithm meeting delayed ACKs put 20-25 ms
  on the p90 of small events at 20 ms batching (docs/performance.md §4). With ``tcp_nodelay``
  (default on) each new connection's socket gets TCP_NODELAY from outside: the descriptors that
  appeared while the connection was built are found in ``/proc/self/fd``, and the option is set on
  a ``dup`` of each one whose peer port is the endpoint's (a socket option belongs to the socket,
  not the descriptor). Nothing in the SDK or awscrt is patched; where ``/proc`` is missing it
  does nothing.

The pool (theory of operation). The base class keeps ONE connection per endpoint; this transport
keeps up to ``max_connections`` accepting connections and spreads streams over them:

* :meth:`send` (the SDK calls it once per operation, so once per Sonic stream, never per event)
  takes the accepting connection with the fewest open streams that is under its bound, oldest
  first on a tie; when every one is full it builds a new one (builds are serialised, and a waiter
  re-checks after each, so a burst of opens builds only what it needs); when ``max_connections``
  are full it raises a retryable ``connectionPoolFull``. Choosing the connection and registering
  the new stream on it happen with no ``await`` in between, so concurrent opens never overshoot.
* A connection's bound is ``min(streams_per_connection, the peer's SETTINGS_MAX_CONCURRENT_STREAMS)``.
  The peer's value arrives through awscrt's ``on_remote_settings_changed`` (called for every
  SETTINGS frame, even an empty one): the server's preface comes about one round trip after the
  CRT reports the connection up, so a new connection is offered to streams only once its preface
  arrived (bounded wait, 2 s; a cold open pays that round trip, the warm pool hides it). The CRT
  does not refuse streams beyond the peer's limit: they hang unanswered and then fail, so the
  bound must never exceed it.
* Open streams are counted from the CRT streams themselves: a stream counts until its
  ``completion_future`` resolves (closed in order, reset, or its connection lost); the count is
  O(1) per open (see :class:`_Connection`).
* GOAWAY. awscrt has no GOAWAY callback and ``is_open()`` stays True after one; the CRT instead
  refuses to create a stream on that connection (``RuntimeError`` "AWS_ERROR_HTTP_GOAWAY_RECEIVED"
  from ``request()``, before anything is sent and before any body task exists). :meth:`send` then
  marks the connection *draining* (no new streams; its open streams go on until they finish) and
  tries the next connection for the same request; any other refusal to create a stream is treated
  the same way. A connection that is no longer open (dropped, closed by the peer) is skipped; its
  streams have failed on their own. :meth:`retire` closes draining connections once their last
  stream ended and forgets dead ones; draining connections do not count against
  ``max_connections``.
* awscrt writes each request body from a task of its own, which ends by writing END_STREAM; when
  the stream has completed first (reset, connection lost, closed by the peer) that write raises
  ``AWS_ERROR_HTTP_STREAM_HAS_COMPLETED``, and nothing in awscrt or the SDK retrieves it (asyncio
  logs "Task exception was never retrieved"). The transport retrieves it when the task ends: an
  expected end of a finished stream, logged at debug level.
* A Sonic stream may need its CRT stream later (:func:`end_pending_reads`): an open made inside
  :func:`capture_http_stream` gets it in its :class:`HttpStreamSlot` (a context variable carries
  the slot to :meth:`send`, so concurrent opens never mix them up). The SDK sends the request
  from a task of its own, after the operation has returned, so the slot fills a little later.
* :meth:`preconnect` keeps room for ``room`` more streams on open accepting connections, opening
  connections (no request, nothing billed) up to ``max_connections``.

awscrt is untyped; this module is its only importer in the package besides ``classify``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import itertools
import os
import re
import socket
from typing import TYPE_CHECKING, Any, Final, Self, final
from urllib.parse import urlsplit

import anyio
import msgspec
import structlog
from awscrt import http as crt_http
from awscrt import io as crt_io
from awscrt.aio.http import AIOHttp2ClientConnection
from awscrt.exceptions import AwsCrtError
from smithy_core import URI
from smithy_http.aio.crt import AWSCRTHTTPClient, AWSCRTHTTPClientConfig, AWSCRTHTTPResponse
from smithy_http.exceptions import SmithyHTTPError

from actors.errors import SonicRetryableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from smithy_core.interfaces import URI as URILike
    from smithy_http.aio.interfaces import HTTPRequest
    from smithy_http.interfaces import HTTPRequestConfiguration

__all__ = [
    "BedrockTransport",
    "ConnectionStatistics",
    "HttpStreamSlot",
    "capture_http_stream",
    "end_pending_reads",
    "endpoint_of",
]

_log = structlog.get_logger("actors.sonic.transport")
# awscrt raises a plain RuntimeError("<code> (<NAME>): <message>") when it will not create a stream.
_CRT_REFUSAL: Final = re.compile(r"^(\d+) \((AWS_[A-Z0-9_]+)\): ?(.*)$", re.DOTALL)
_GOAWAY: Final = "AWS_ERROR_HTTP_GOAWAY_RECEIVED"
_connection_ids: Final = itertools.count(1)
# Bound on the wait for the server's connection preface (its first SETTINGS frame).
_PREFACE_WAIT_S: Final = 2.0

type _Key = tuple[str, str, int | None]


class ConnectionStatistics(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One pooled HTTP/2 connection, as :meth:`BedrockTransport.connection_statistics` saw it.

    Attributes:
        id: this process's number for the connection (1, 2, ... in opening order).
        open: the CRT reports the connection open.
        draining: no new streams go to it (GOAWAY received or the CRT refused a stream).
        streams: streams open on it now.
        bound: the most streams it takes (``streams_per_connection``, lowered to the peer's
            SETTINGS_MAX_CONCURRENT_STREAMS once known).
        peer_max_streams: the peer's SETTINGS_MAX_CONCURRENT_STREAMS (None until received).
        streams_opened: streams ever opened on it.
    """

    id: int
    open: bool
    draining: bool
    streams: int
    bound: int
    peer_max_streams: int | None
    streams_opened: int


@final
class _Connection:
    """One pooled CRT HTTP/2 connection and the count of CRT streams open on it.

    Counting is O(1) per open: each stream's ``completion_future`` callback (on whichever thread
    completes it) appends to a deque, atomic in CPython, which only the asyncio thread drains.
    """

    __slots__ = (
        "_completed",
        "_loop",
        "_streams",
        "crt",
        "draining",
        "id",
        "key",
        "limit",
        "opened",
        "peer_max",
        "preface",
    )

    def __init__(self, key: _Key, limit: int) -> None:
        self.id = next(_connection_ids)
        self.key = key
        self.limit = limit
        self.crt: Any = None  # AIOHttp2ClientConnection once connected
        self._streams = 0  # streams added (asyncio thread only) ...
        self._completed: collections.deque[None] = collections.deque()  # ... and completed
        self.draining = False
        self.peer_max: int | None = None
        self.opened = 0
        self.preface = anyio.Event()  # the server's first SETTINGS frame arrived
        self._loop = asyncio.get_running_loop()

    def on_remote_settings(self, settings: list[crt_http.Http2Setting]) -> None:
        # Runs on the CRT's event-loop thread (also for an empty SETTINGS frame): one attribute
        # store, atomic under the GIL, and the preface event set on the asyncio loop's thread.
        for setting in settings:
            if setting.id == crt_http.Http2SettingID.MAX_CONCURRENT_STREAMS:
                self.peer_max = setting.value
        if not self.preface.is_set():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                self._loop.call_soon_threadsafe(self.preface.set)

    @property
    def bound(self) -> int:
        peer = self.peer_max
        return self.limit if peer is None else min(self.limit, peer)

    def is_open(self) -> bool:
        return self.crt is not None and bool(self.crt.is_open())

    def add_stream(self, crt_stream: Any) -> None:
        """Count ``crt_stream`` (an ``AIOHttp2ClientStream``) until its completion."""
        self._streams += 1
        self.opened += 1
        crt_stream.completion_future.add_done_callback(self._stream_completed)

    def _stream_completed(self, _: object) -> None:
        self._completed.append(None)  # any thread

    def open_streams(self) -> int:
        completed = self._completed
        while completed:
            completed.popleft()
            self._streams -= 1
        return self._streams

    def room(self) -> int:
        """Streams this connection still takes (0 when draining or no longer open)."""
        if self.draining or not self.is_open():
            return 0
        return max(0, self.bound - self.open_streams())

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            id=self.id,
            open=self.is_open(),
            draining=self.draining,
            streams=self.open_streams(),
            bound=self.bound,
            peer_max_streams=self.peer_max,
            streams_opened=self.opened,
        )


def endpoint_of(region: str, endpoint_uri: str | None) -> URI:
    """The Bedrock runtime endpoint: the override if given, else the Region's public endpoint."""
    text = endpoint_uri or f"https://bedrock-runtime.{region}.amazonaws.com"
    parts = urlsplit(text)
    return URI(scheme=parts.scheme or "https", host=parts.hostname or "", port=parts.port)


@final
class BedrockTransport(AWSCRTHTTPClient):
    """``AWSCRTHTTPClient`` with a pool of HTTP/2 connections and an optional private CA bundle.

    Args:
        ca_bundle: a PEM file of CA certificates trusted instead of the system store, for this
            client only; None keeps the system store.
        tcp_nodelay: set TCP_NODELAY on each new connection's socket.
        streams_per_connection: the most streams on one connection (lowered to the peer's
            SETTINGS_MAX_CONCURRENT_STREAMS once known).
        max_connections: the most accepting (not draining) connections per endpoint.
    """

    def __init__(
        self,
        ca_bundle: Path | None = None,
        *,
        tcp_nodelay: bool = True,
        streams_per_connection: int = 50,
        max_connections: int = 8,
    ) -> None:
        super().__init__(client_config=AWSCRTHTTPClientConfig(force_http_2=True))
        self._ca_bundle = ca_bundle
        if ca_bundle is not None:
            options = crt_io.TlsContextOptions()
            options.override_default_trust_store_from_path(None, str(ca_bundle))
            self._tls_ctx = crt_io.ClientTlsContext(options)
        socket_options = crt_io.SocketOptions()
        socket_options.connect_timeout_ms = 5000
        socket_options.keep_alive = True
        socket_options.keep_alive_timeout_secs = 30
        socket_options.keep_alive_interval_secs = 10
        socket_options.keep_alive_max_probes = 3
        self._socket_options = socket_options
        self._tcp_nodelay = tcp_nodelay
        self._streams_per_connection = streams_per_connection
        self._max_connections = max_connections
        self._pool: list[_Connection] = []
        self._build_lock = anyio.Lock()
        self.nodelay_sockets = 0
        #: Streams the CRT refused to create on a connection (GOAWAY and the like), each retried.
        self.refused_streams = 0
        #: Opens refused because ``max_connections`` connections were full.
        self.pool_full = 0

    # ---------------------------------------------------------------- the SDK's entry point

    async def send(
        self, request: HTTPRequest, *, request_config: HTTPRequestConfiguration | None = None
    ) -> AWSCRTHTTPResponse:
        """Open one HTTP/2 stream for ``request`` on the least-loaded pooled connection.

        Mirrors ``AWSCRTHTTPClient.send`` for HTTP/2 (the body streams from ``request.body``);
        blocks (asynchronously) for a connection build when every connection is full, then for the
        response headers.

        Raises:
            SonicRetryableError: ``connectionPoolFull`` (``max_connections`` connections full).
            AwsCrtError: connecting or the stream failed (map with ``classify_error``).
        """
        if self._closed:
            raise SmithyHTTPError("Cannot send a request after the HTTP client has been closed.")
        url = request.destination
        crt_request = self._marshal_request(request)
        refusal: AwsCrtError | None = None
        for _ in range(self._max_connections + 1):
            connection = await self._choose(url)
            body = self._create_body_generator(request.body)
            try:
                crt_stream = connection.crt.request(crt_request, request_body_generator=body)
            except RuntimeError as exc:
                refusal = _refusal(exc)
                if refusal is None:
                    raise
                # Nothing was sent: mark the connection and try the next one with this request.
                _drain(connection, refusal.name)
                self.refused_streams += 1
                await body.aclose()  # never started: request.body stays untouched
                continue
            connection.add_stream(crt_stream)
            _observe_body_writer(crt_stream)
            slot = _http_stream_slot.get()
            if slot is not None:
                slot.stream = crt_stream
            try:
                return await self._await_response(crt_stream)
            except AwsCrtError as exc:
                # The GOAWAY crossed our request (its stream id is above the peer's last one): the
                # stream fails unprocessed. Not retried here (its body may have started), but no
                # new stream goes to this connection.
                if exc.name == _GOAWAY:
                    _drain(connection, exc.name)
                raise
        assert refusal is not None
        raise refusal

    async def _choose(self, url: URILike) -> _Connection:
        key = (url.scheme, url.host, url.port)
        best = self._least_loaded(key)
        if best is not None:
            return best
        async with self._build_lock:
            best = self._least_loaded(key)  # another open may have built one meanwhile
            if best is not None:
                return best
            if self._accepting(key) >= self._max_connections:
                self.pool_full += 1
                raise SonicRetryableError(
                    "connectionPoolFull",
                    f"{self._max_connections} HTTP/2 connections with "
                    f"{self._streams_per_connection} streams each are full",
                )
            return await self._connect(url, key)

    def _least_loaded(self, key: _Key) -> _Connection | None:
        best: _Connection | None = None
        best_streams = 0
        for connection in self._pool:
            if connection.key != key or connection.draining or not connection.is_open():
                continue
            streams = connection.open_streams()
            if streams < connection.bound and (best is None or streams < best_streams):
                best, best_streams = connection, streams
        return best

    def _accepting(self, key: _Key) -> int:
        return sum(1 for c in self._pool if c.key == key and not c.draining and c.is_open())

    # ---------------------------------------------------------------- connections

    async def preconnect(self, endpoint: URI, *, room: int = 1) -> None:
        """Keep room for ``room`` more streams on open connections to ``endpoint``; no request.

        Opens connections (TCP + TLS + HTTP/2, nothing sent, nothing billed) until the room is
        there or ``max_connections`` are open; returns at once when the room is already there.

        Raises:
            AwsCrtError / SmithyHTTPError: connecting failed (map with ``classify_error``).
        """
        key = (endpoint.scheme, endpoint.host, endpoint.port)
        async with self._build_lock:
            while self.room(endpoint) < room and self._accepting(key) < self._max_connections:
                await self._connect(endpoint, key)

    def room(self, endpoint: URI) -> int:
        """Streams the open, accepting connections to ``endpoint`` take before a new one is needed."""
        key = (endpoint.scheme, endpoint.host, endpoint.port)
        return sum(c.room() for c in self._pool if c.key == key)

    async def retire(self) -> int:
        """Close draining connections whose last stream ended; forget closed ones. Returns how many.

        Blocks (asynchronously) for the CRT's connection shutdown, at most 2 s each.
        """
        keep: list[_Connection] = []
        done: list[_Connection] = []
        for connection in self._pool:
            if not connection.is_open() or (connection.draining and not connection.open_streams()):
                done.append(connection)
            else:
                keep.append(connection)
        self._pool = keep
        for connection in done:
            await _close_connection(connection)
        return len(done)

    def open_connections(self) -> int:
        """How many pooled connections are open now (draining ones included)."""
        return sum(1 for c in self._pool if c.is_open())

    def connection_statistics(self) -> tuple[ConnectionStatistics, ...]:
        """One entry per pooled connection, oldest first."""
        return tuple(c.statistics() for c in self._pool)

    async def _connect(self, url: URILike, key: _Key) -> _Connection:
        """Build, validate and pool one connection (caller holds the build lock)."""
        connection = _Connection(key, self._streams_per_connection)
        before = _socket_fds() if self._tcp_nodelay else set()
        # Shielded: cancelling awscrt's connect future makes the CRT thread fail to set its result
        # (InvalidStateError) and leaks the connection; the build is bounded by the socket's
        # connect timeout and the CRT's TLS timeout.
        with anyio.CancelScope(shield=True):
            connection.crt = await self._build_h2_connection(url, connection)
        if self._tcp_nodelay:
            port = url.port if url.port is not None else self._HTTPS_PORT
            self.nodelay_sockets += _set_nodelay(_socket_fds() - before, port)
        # The peer's SETTINGS_MAX_CONCURRENT_STREAMS comes in the server's preface, which arrives
        # after the CRT reports the connection up (about one more round trip); until then a burst
        # of opens could exceed it, so the connection is offered only once the preface is in.
        try:
            with anyio.move_on_after(_PREFACE_WAIT_S):
                await connection.preface.wait()
        except BaseException:
            await _close_connection(connection)
            raise
        self._pool.append(connection)
        _log.debug(
            "sonic.connection_opened", connection=connection.id, peer_max=connection.peer_max
        )
        return connection

    async def _build_h2_connection(self, url: URILike, connection: _Connection) -> Any:
        if url.scheme != "https":
            raise SmithyHTTPError(f"HTTP/2 needs TLS; unsupported URL scheme {url.scheme}")
        tls = self._tls_ctx.new_connection_options()
        tls.set_server_name(url.host)
        tls.set_alpn_list(["h2"])
        return await AIOHttp2ClientConnection.new(
            host_name=url.host,
            port=url.port if url.port is not None else self._HTTPS_PORT,
            bootstrap=self._client_bootstrap,
            socket_options=self._socket_options,
            tls_connection_options=tls,
            on_remote_settings_changed=connection.on_remote_settings,
        )

    async def close(self) -> None:
        """Close every pooled connection (streams still open on them fail)."""
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, []
        for connection in pool:
            await _close_connection(connection)

    def __deepcopy__(self, memo: Any) -> Self:
        # Share, never copy: see the module docstring.
        return self


def _drain(connection: _Connection, reason: str) -> None:
    if not connection.draining:
        connection.draining = True
        _log.info(
            "sonic.connection_draining",
            connection=connection.id,
            reason=reason,
            streams=connection.open_streams(),
        )


def _refusal(exc: RuntimeError) -> AwsCrtError | None:
    """The CRT's refusal to create a stream, as an ``AwsCrtError``; None for anything else."""
    match = _CRT_REFUSAL.match(str(exc))
    if match is None or not match.group(2).startswith("AWS_ERROR_HTTP_"):
        return None
    return AwsCrtError(int(match.group(1)), match.group(2), match.group(3).strip())


async def _close_connection(connection: _Connection) -> None:
    if connection.crt is None:
        return
    with anyio.move_on_after(2.0, shield=True):
        try:
            await connection.crt.close()
        except Exception:  # shutdown reports why the peer went away: nothing to do here
            return


def _socket_fds() -> set[int]:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return set()
    fds: set[int] = set()
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.add(int(name))
        except OSError:
            continue
    return fds


def _set_nodelay(fds: set[int], port: int) -> int:
    """Set TCP_NODELAY on the TCP sockets among ``fds`` connected to ``port``; return the count."""
    done = 0
    for fd in fds:
        try:
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            tcp = dup.type == socket.SOCK_STREAM and dup.family in (socket.AF_INET, socket.AF_INET6)
            if tcp and dup.getpeername()[1] == port:
                dup.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                done += 1
        except OSError:
            pass  # not connected (yet), or not TCP: leave it alone
        finally:
            dup.close()
    return done


def _observe_body_writer(crt_stream: Any) -> None:
    """Retrieve the outcome of awscrt's request-body task for ``crt_stream`` when it ends."""
    writer = getattr(crt_stream, "_writer", None)
    if isinstance(writer, asyncio.Future):
        writer.add_done_callback(_body_writer_done)


def _body_writer_done(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()  # retrieved: asyncio no longer reports it as lost
    if exc is not None:
        _log.debug("sonic.request_body_ended", error=repr(exc))


@final
class HttpStreamSlot:
    """Receives the CRT stream of the request sent inside :func:`capture_http_stream`."""

    __slots__ = ("stream",)

    def __init__(self) -> None:
        self.stream: Any = None


_http_stream_slot: Final = contextvars.ContextVar[HttpStreamSlot | None](
    "sonic_http_stream_slot", default=None
)


@contextlib.contextmanager
def capture_http_stream() -> Iterator[HttpStreamSlot]:
    """Within the block, the CRT stream the transport opens lands in the slot yielded."""
    slot = HttpStreamSlot()
    token = _http_stream_slot.set(slot)
    try:
        yield slot
    finally:
        _http_stream_slot.reset(token)


def end_pending_reads(crt_stream: Any) -> bool:
    """End the reads waiting on ``crt_stream``'s response as awscrt does when a stream completes
    (empty bytes: end of stream), so the reader returns by itself instead of being cancelled.

    Cancelling a waiting read instead leaves awscrt to resolve a cancelled future from its own
    thread later ("InvalidStateError" reported as unraisable). Returns False where awscrt offers no
    such call (the owner must then cancel).
    """
    resolve = getattr(crt_stream, "_resolve_pending_chunk_futures", None)
    if not callable(resolve):
        return False
    resolve()
    return True
