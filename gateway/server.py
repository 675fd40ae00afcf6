"""Run the gateway app under uvicorn, inside an anyio task group.

Theory of operation: :func:`serve_gateway` binds the listening socket itself (so port 0 yields a
real port before anything runs, and the caller learns it without polling), then runs
``uvicorn.Server.serve(sockets=[sock])`` as a task of its own task group. The kernel queues
connections on the bound socket until uvicorn accepts them, so :attr:`RunningGateway.base_url` is
usable as soon as the context is entered.

A :class:`~gateway.loop_lag.LoopLagMonitor` runs beside the server in the same task group: it
feeds ``/debug/load`` and refuses new calls while the loop lags (``limits.admission_loop_lag_ms``).

Stopping: :meth:`RunningGateway.request_drain` (SIGTERM/SIGINT under :func:`run_gateway`) begins a
:class:`~gateway.drain.Drain` (readiness 503, new calls refused, live calls go on up to
``limits.drain_timeout_s``, then a goodbye and close 1001 for the rest); when it has finished the
server is told to stop. uvicorn does NOT handle signals here (:class:`_GatewayServer`): its own
handler would close every WebSocket with 1012 at once and re-raise the signal after serving, which
kills the process before ``finally`` blocks (the emulator's temporary CA directory) run.

Leaving the context without a drain asks uvicorn for a plain graceful stop (``should_exit``: stop
accepting, close open WebSockets with 1012, wait up to ``shutdown_timeout_s`` for calls to end,
then cancel them) and waits for it. Cancellation of the enclosing scope cancels the server task
outright. The bound socket is closed on every exit path. ``gateway.stopped`` is logged with the
drain's counts.

uvicorn settings: WebSockets through :class:`~gateway.ws_protocol.MediaWebSocketProtocol`, uvicorn's
``websockets-sansio`` implementation without its reader pause/resume per message (uvicorn +
websockets measured 90 µs/message against 178 µs for wsproto; the sans-I/O flavour is the one
websockets keeps maintaining), ``ws_max_size`` from ``limits.ws_max_message_bytes``, lifespan on,
``log_config=None`` so structlog (gateway.logs) owns the output, access log per config.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from typing import TYPE_CHECKING, Final, final

import anyio
import structlog
import uvicorn

from gateway.app import create_app
from gateway.drain import Drain, DrainResult
from gateway.loop_lag import LoopLagMonitor
from gateway.ws_protocol import MediaWebSocketProtocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from starlette.applications import Starlette

    from gateway.config import GatewayConfig
    from gateway.debug import DebugSources
    from gateway.registry import CallFactory

__all__ = ["STOP_SIGNALS", "RunningGateway", "bind_socket", "run_gateway", "serve_gateway"]

SHUTDOWN_TIMEOUT_S: Final = 5.0

_log = structlog.get_logger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (TCP; IPv6 when ``host`` is an IPv6 literal).

    Raises:
        OSError: the address is in use or not available.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


class _GatewayServer(uvicorn.Server):
    """uvicorn without its signal handling: the gateway installs its own and drains first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(app: Starlette, config: GatewayConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        ws=MediaWebSocketProtocol,
        ws_max_size=config.limits.ws_max_message_bytes,
        lifespan="on",
        log_config=None,
        access_log=config.logging.access_log,
        timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_S),
        server_header=False,
    )


@final
class RunningGateway:
    """A gateway being served; see :func:`serve_gateway`.

    Attributes:
        app: the ASGI app (its state is ``app.state.gateway``).
        host: the bound host.
        port: the bound port (the real one when 0 was asked for).
    """

    __slots__ = ("_drain", "_server", "_stopped", "app", "host", "port")

    def __init__(
        self, app: Starlette, server: uvicorn.Server, host: str, port: int, drain: Drain
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server = server
        self._drain = drain
        self._stopped = anyio.Event()

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the listening socket."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port`` of the listening socket."""
        return "ws" + self.base_url.removeprefix("http")

    def request_drain(self) -> None:
        """A stop request (one per signal): the first begins the drain, the second shortens it,
        the third ends it; the server stops once the drain is over. Returns at once."""
        self._drain.request()

    def stop_nowait(self) -> None:
        """Ask the server to stop gracefully; returns at once."""
        self._server.should_exit = True

    async def wait_stopped(self) -> None:
        """Block until the server has stopped (a signal, :meth:`stop_nowait`, or an error)."""
        await self._stopped.wait()


@contextlib.asynccontextmanager
async def serve_gateway(
    config: GatewayConfig, call_factory: CallFactory, *, debug_sources: DebugSources | None = None
) -> AsyncIterator[RunningGateway]:
    """Serve the gateway on ``config.server.host:port`` for the duration of the block.

    Use port 0 for a free port; read it from ``running.port`` / ``running.base_url``.

    Raises:
        OSError: the address cannot be bound.
    """
    if config.twilio.auth_token is None:
        _log.warning(
            "twilio.signature_check_disabled",
            hint="set twilio.auth_token (SONIC_GATEWAY_TWILIO__AUTH_TOKEN) in production",
        )
    monitor = LoopLagMonitor(admit_below_ms=config.limits.admission_loop_lag_ms)
    app = create_app(
        config, call_factory=call_factory, loop_monitor=monitor, debug_sources=debug_sources
    )
    sock = bind_socket(config.server.host, config.server.port)
    try:
        port = int(sock.getsockname()[1])
        server = _GatewayServer(_uvicorn_config(app, config))
        drain = Drain(app.state.gateway.registry, config.limits.drain_timeout_s)
        running = RunningGateway(app, server, config.server.host, port, drain)
        result = DrainResult(drained=0, cut=0, hurried=False)

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                running._stopped.set()

        async def drain_then_stop() -> None:
            nonlocal result
            await drain.wait_requested()
            result = await drain.run()
            running.stop_nowait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            tg.start_soon(monitor.run)
            tg.start_soon(drain_then_stop)
            _log.info("gateway.listening", host=config.server.host, port=port)
            try:
                yield running
            finally:
                running.stop_nowait()
            await running.wait_stopped()
            tg.cancel_scope.cancel()  # the monitor and the drain run until the server is gone
    finally:
        sock.close()
    _log.info(
        "gateway.stopped",
        drained=drain.requested,
        calls_drained=result.drained,
        calls_cut=result.cut,
        hurried=result.hurried,
    )


STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


async def _forward_signals(running: RunningGateway) -> None:
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            _log.info("gateway.signal", signal=signal.Signals(signum).name)
            running.request_drain()


async def run_gateway(
    config: GatewayConfig, call_factory: CallFactory, *, debug_sources: DebugSources | None = None
) -> None:
    """Serve until SIGTERM/SIGINT and the drain that follows have stopped the server; blocks.

    Must run in the main thread (signal handlers). Returns normally after a drain.
    """
    async with (
        serve_gateway(config, call_factory, debug_sources=debug_sources) as running,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_forward_signals, running)
        await running.wait_stopped()
        tg.cancel_scope.cancel()
