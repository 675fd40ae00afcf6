"""The Sonic connector: one SDK client, resolved config and credentials, connections, a warm pool.

Theory of operation. A call should not pay for config and credential resolution, TLS
and HTTP/2 set-up, or stream opening when the connector can pay ahead:

* Entering :class:`SonicConnector` resolves the SDK config once (every field that would read files
  is given explicitly), builds the client on a :class:`BedrockTransport`, and loads credentials in
  a worker thread (:class:`CredentialCache`).
* Streams spread over a pool of HTTP/2 connections kept by the transport: each new stream goes to
  the accepting connection with the fewest open streams under ``streams_per_connection`` (and the
  peer's SETTINGS_MAX_CONCURRENT_STREAMS); a connection that received GOAWAY takes no new stream
  while its open ones finish; up to ``max_connections`` (see transport.py).
* Pool level ``"connect"`` (the default, and the safe one): a background task keeps open
  connections with room for ``size`` more streams (:meth:`BedrockTransport.preconnect`; no
  Bedrock request, nothing billed), so the call after the one that fills a connection does not pay
  for TLS; re-checked after every take and every ``max_idle_s``. An open is a *hit* when a
  connection with room was already up.
* Pool level ``"stream"``: up to ``size`` streams are pre-opened (invoke, prelude sent,
  ``await_output()`` resolved: everything before history and audio), handed out by
  :meth:`open_stream`, refilled in the background, and closed and replaced before ``max_idle_s``.
  Whether the service keeps such an idle stream alive and bills it is undocumented; each one also
  starts its 8-minute clock (and its credential pin) when opened, not when taken.
* :meth:`open_stream` takes from the pool (hit) or opens cold (miss); :meth:`statistics` counts.
  A conversation may bring its own settings (a call's route: another system prompt, voice or
  tools) for the same endpoint; pre-opened streams carry the connector's own prelude, so such a
  conversation always opens cold.

The same background task closes draining connections once their last stream ended (checked after
every take and every ``max_idle_s``, also with the warm pool disabled). All background work runs in
the connector's own task group; leaving the connector closes pooled streams in order, then the
client and its connections.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final, Self, final

import anyio
import msgspec
import structlog
from aws_sdk_bedrock_runtime.client import (  # type: ignore[import-untyped]  # no py.typed in 0.12
    AsyncBedrockRuntimeClient,
)
from aws_sdk_bedrock_runtime.config import (  # type: ignore[import-untyped]
    AsyncBedrockRuntimeConfig,
)
from smithy_aws_core.identity import AWSCredentialsIdentity, AWSIdentityProperties
from smithy_core.aio.interfaces.identity import IdentityResolver

from actors.errors import ClosedByUs, SonicError
from actors.sonic.classify import classify_error
from actors.sonic.conversation import SonicConversation
from actors.sonic.credentials import CredentialCache
from actors.sonic.settings import PoolSettings
from actors.sonic.stream import SonicStream
from actors.sonic.transport import BedrockTransport, ConnectionStatistics, endpoint_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import TracebackType

    from anyio.abc import TaskGroup

    from actors.sonic.credentials import CredentialsProvider
    from actors.sonic.history import ConversationHistory, HistoryTurn
    from actors.sonic.settings import SonicSettings

__all__ = ["ConnectorStatistics", "SonicConnector"]

_log = structlog.get_logger("actors.sonic.connector")
_MAX_FILL_BACKOFF_S: Final = 30.0


class ConnectorStatistics(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the connector did so far, and its HTTP/2 connections now.

    Attributes:
        open_connections: connections open now (draining ones included).
        draining_connections: open connections that take no new stream (GOAWAY received).
        connections: one entry per pooled connection (streams on it, bound, draining).
        refused_streams: streams the CRT refused on a connection (GOAWAY), retried on another.
        pool_full: opens refused because ``max_connections`` connections were full.
    """

    level: str
    hits: int
    misses: int
    pooled: int
    pre_opened: int
    recycled: int
    fill_failures: int
    open_connections: int
    draining_connections: int
    nodelay_sockets: int
    refused_streams: int
    pool_full: int
    connections: tuple[ConnectionStatistics, ...]


def _transport_error(err: SonicError) -> SonicError | None:
    """A :class:`SonicError` raised by the transport under ``err`` (through the SDK's wrapping)."""
    seen: set[int] = set()
    current = err.__cause__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SonicError):
            return current
        current = current.__cause__
    return None


@final
class _CachedIdentityResolver(IdentityResolver[AWSCredentialsIdentity, AWSIdentityProperties]):
    """The client-wide resolver (streams pin their own); never lets the SDK walk its own chain."""

    def __init__(self, cache: CredentialCache) -> None:
        self._cache = cache

    async def get_identity(self, *, properties: AWSIdentityProperties) -> AWSCredentialsIdentity:
        return await self._cache.get()


@final
class SonicConnector:
    """Opens Sonic streams for conversations; owns the SDK client and the warm pool.

    Args:
        settings: the Sonic settings every stream of this connector uses.
        credentials: where AWS credentials come from (``BotocoreCredentials()`` for AWS,
            ``StaticCredentials()`` for the emulator).
        pool: warm-pool and connection-pool settings (level ``"connect"``, size 2, 50 streams
            per connection, 8 connections by default).
    """

    def __init__(
        self,
        settings: SonicSettings,
        *,
        credentials: CredentialsProvider,
        pool: PoolSettings | None = None,
    ) -> None:
        self._settings = settings
        self._pool_settings = pool if pool is not None else PoolSettings()
        self._cache = CredentialCache(
            credentials, refresh_margin_s=settings.credential_refresh_margin_s
        )
        self._endpoint = endpoint_of(settings.region, settings.endpoint_uri)
        self._transport: BedrockTransport | None = None
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._tg: TaskGroup | None = None
        self._pooled: list[SonicStream] = []
        self._refill_tx, self._refill_rx = anyio.create_memory_object_stream[None](1)
        self._closed = False
        self._hits = 0
        self._misses = 0
        self._pre_opened = 0
        self._recycled = 0
        self._fill_failures = 0
        self._warm = anyio.Event()

    @property
    def settings(self) -> SonicSettings:
        """The settings of every stream this connector opens."""
        return self._settings

    async def __aenter__(self) -> Self:
        """Resolve config and credentials, build the client, start warming the pool.

        Raises:
            SonicFatalError: credentials could not be resolved, or the config is unusable.
        """
        try:
            self._transport = BedrockTransport(
                self._settings.ca_bundle,
                tcp_nodelay=self._settings.tcp_nodelay,
                streams_per_connection=self._pool_settings.streams_per_connection,
                max_connections=self._pool_settings.max_connections,
            )
            await self._cache.get()
            config = await AsyncBedrockRuntimeConfig.resolve(
                region=self._settings.region,
                endpoint_uri=self._endpoint_text(),
                transport=self._transport,
                aws_credentials_identity_resolver=_CachedIdentityResolver(self._cache),
                retry_mode="standard",
                max_attempts=1,
                sdk_ua_app_id=None,
                user_agent_extra="sonic-gateway",
            )
            self._client = AsyncBedrockRuntimeClient(config=config)
        except SonicError:
            await self._close_transport()
            raise
        except Exception as exc:
            await self._close_transport()
            raise classify_error(exc) from exc
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._tg.start_soon(self._fill)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the pool, close pooled streams in order, close the client (bounded, shielded)."""
        self._closed = True
        try:
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            pooled, self._pooled = self._pooled, []
            for stream in pooled:
                await stream.close()
            await self._close_transport()
            self._refill_tx.close()
            self._refill_rx.close()

    def conversation(
        self,
        *,
        events_capacity: int = 256,
        history: Sequence[HistoryTurn] = (),
        settings: SonicSettings | None = None,
        shared_history: ConversationHistory | None = None,
    ) -> SonicConversation:
        """A new conversation on this connector (enter it with ``async with``).

        Args:
            events_capacity: bound of the event channel to the consumer.
            history: text turns of the same call to continue from (a restarted session); the
                first session sends them after the system prompt, shaped like any history.
            settings: the conversation's own settings (same region, endpoint and CA as the
                connector's); None: the connector's.
            shared_history: the call's history to continue and keep up to date (it outlives the
                conversation); None: the conversation keeps its own, seeded with ``history``.

        Raises:
            ValueError: ``settings`` name another region, endpoint or CA bundle.
        """
        if settings is not None:
            self._check_same_endpoint(settings)
        return SonicConversation(
            self,
            events_capacity=events_capacity,
            history=history,
            settings=settings,
            shared_history=shared_history,
        )

    async def open_stream(
        self, *, turn_ids: Iterator[int] | None = None, settings: SonicSettings | None = None
    ) -> SonicStream:
        """A ready stream (prelude sent, ``await_output()`` resolved): pooled if possible, else cold.

        ``settings`` other than the connector's (a call's route) always open cold: pooled
        streams were opened with the connector's prelude. Blocks (asynchronously) for a cold
        open, at most ``open_timeout_s``.

        Raises:
            SonicError: the open failed (classified).
            ClosedByUs: the connector is closed.
        """
        if self._closed or self._client is None:
            raise ClosedByUs("sonic connector is closed")
        if settings is None:
            settings = self._settings
        level = self._pool_settings.level
        if level == "stream" and settings is not self._settings and settings != self._settings:
            self._misses += 1
            return await self._open_cold(turn_ids, settings)
        if level == "stream":
            now = anyio.current_time()
            while self._pooled:
                stream = self._pooled.pop(0)
                if stream.usable and stream.age(now) < self._pool_settings.max_idle_s:
                    self._hits += 1
                    self._signal_refill()
                    if turn_ids is not None:
                        stream.protocol.attach_turn_ids(turn_ids)
                    return stream
                await stream.close()
                self._recycled += 1
            self._misses += 1
            self._signal_refill()
            return await self._open_cold(turn_ids, settings)
        assert self._transport is not None
        warm = self._pool_settings.size > 0 and self._transport.room(self._endpoint) > 0
        if warm:
            self._hits += 1
        else:
            self._misses += 1
        stream = await self._open_cold(turn_ids, settings)
        self._signal_refill()
        return stream

    def statistics(self) -> ConnectorStatistics:
        """Pool hits and misses, pooled and recycled streams, connections and their streams."""
        transport = self._transport
        connections = () if transport is None else transport.connection_statistics()
        return ConnectorStatistics(
            level=self._pool_settings.level,
            hits=self._hits,
            misses=self._misses,
            pooled=len(self._pooled),
            pre_opened=self._pre_opened,
            recycled=self._recycled,
            fill_failures=self._fill_failures,
            open_connections=sum(1 for c in connections if c.open),
            draining_connections=sum(1 for c in connections if c.open and c.draining),
            nodelay_sockets=0 if transport is None else transport.nodelay_sockets,
            refused_streams=0 if transport is None else transport.refused_streams,
            pool_full=0 if transport is None else transport.pool_full,
            connections=connections,
        )

    async def wait_warm(self) -> None:
        """Block until the pool is full (stream level) or connections have room (connect level).

        Returns at once when the pool is disabled. For start-up code and benchmarks.
        """
        if self._pool_settings.size > 0:
            await self._warm.wait()

    # ---------------------------------------------------------------- internals

    def _endpoint_text(self) -> str:
        port = "" if self._endpoint.port is None else f":{self._endpoint.port}"
        return f"{self._endpoint.scheme}://{self._endpoint.host}{port}"

    def _check_same_endpoint(self, settings: SonicSettings) -> None:
        mine = self._settings
        if (settings.region, settings.endpoint_uri, settings.ca_bundle) != (
            mine.region,
            mine.endpoint_uri,
            mine.ca_bundle,
        ):
            raise ValueError("a conversation's settings must use the connector's endpoint")

    async def _open_cold(
        self, turn_ids: Iterator[int] | None, settings: SonicSettings | None = None
    ) -> SonicStream:
        identity = await self._cache.get()
        settings = self._settings if settings is None else settings
        try:
            return await SonicStream.open(self._client, settings, identity, turn_ids=turn_ids)
        except SonicError as err:
            # The SDK wraps what the transport raised in a SmithyError ("unexpected" to
            # classify_error); the transport's own SonicError (connectionPoolFull) is the truth.
            own = _transport_error(err)
            if own is None:
                raise
            raise own from err

    def _signal_refill(self) -> None:
        with contextlib.suppress(
            anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            self._refill_tx.send_nowait(None)

    async def _fill(self) -> None:
        assert self._transport is not None
        failures = 0
        filled_once = False
        while True:
            await self._transport.retire()
            if self._pool_settings.size == 0:
                ok = True
            elif self._pool_settings.level == "stream":
                ok = await self._fill_streams(filled_once)
            else:
                ok = await self._fill_connection()
            filled_once = True
            if ok:
                failures = 0
                self._warm.set()
                timeout = self._next_recycle_in()
            else:
                failures += 1
                self._fill_failures += 1
                timeout = min(_MAX_FILL_BACKOFF_S, self._settings.reopen_backoff_s * 2**failures)
            with anyio.move_on_after(timeout):
                await self._refill_rx.receive()
            self._recycle_old()

    async def _fill_connection(self) -> bool:
        assert self._transport is not None
        try:
            await self._cache.get()
            await self._transport.preconnect(self._endpoint, room=self._pool_settings.size)
        except Exception as exc:
            _log.info("sonic.pool_connect_failed", kind=classify_error(exc).kind)
            return False
        return True

    async def _fill_streams(self, filled_once: bool) -> bool:
        if filled_once and not self._pool_settings.refill:
            return True
        while len(self._pooled) < self._pool_settings.size:
            try:
                stream = await self._open_cold(None)
            except SonicError as err:
                _log.info("sonic.pool_open_failed", kind=err.kind)
                return False
            if self._closed:
                await stream.close()
                return True
            self._pooled.append(stream)
            self._pre_opened += 1
        return True

    def _next_recycle_in(self) -> float:
        max_idle = self._pool_settings.max_idle_s
        if self._pool_settings.level != "stream" or not self._pooled:
            return max_idle
        now = anyio.current_time()
        return max(0.0, min(s.opened_at + max_idle for s in self._pooled) - now)

    def _recycle_old(self) -> None:
        now = anyio.current_time()
        keep: list[SonicStream] = []
        for stream in self._pooled:
            if stream.age(now) >= self._pool_settings.max_idle_s or not stream.usable:
                assert self._tg is not None
                self._tg.start_soon(stream.close)
                self._recycled += 1
            else:
                keep.append(stream)
        self._pooled = keep

    async def _close_transport(self) -> None:
        with anyio.move_on_after(2.0, shield=True):
            if self._client is not None:
                with contextlib.suppress(Exception):
                    await self._client.close()
            if self._transport is not None:
                with contextlib.suppress(Exception):
                    await self._transport.close()
