"""The emulator's HTTP/2 + TLS edge: a hypercorn ASGI app speaking Bedrock's bidirectional stream.

Theory of operation. :func:`run_emulator` makes TLS material (:mod:`gateway.emulator.tls`),
pre-binds a listening socket (so port 0 yields a known ephemeral port before serving starts) and
hands its file descriptor to hypercorn (``bind = ["fd://N"]``), then serves the ASGI app in a task
of its own task group until the context exits, which sets the shutdown trigger.

The ASGI app answers ``POST /model/{modelId}/invoke-with-bidirectional-stream`` with a 200
``application/vnd.amazon.eventstream`` response and runs one :class:`SessionRunner` per stream
(nova-sonic.md §9 handler shape): response start and an empty ``more_body`` chunk go out at once; a
writer task drains the session's bounded outbound channel into body chunks; the response ends only
after the request side ended. Other paths get 404, other methods 405, another content type 400.
A ``reset`` fault resets the HTTP/2 stream (RST_STREAM) through hypercorn's h2 connection, which
ASGI itself cannot express.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from typing import TYPE_CHECKING, Any, Final, Literal, final

import anyio
import structlog
from hypercorn.asyncio import serve
from hypercorn.config import Config

from gateway.emulator.session import EmulatedSession, ScriptCursor, SessionRunner
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.tls import make_tls_material

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from gateway.emulator.faults import Fault
    from gateway.emulator.script import ModelScript

__all__ = ["Emulator", "run_emulator", "serve_forever"]

_log = structlog.get_logger("gateway.emulator")
_PATH: Final = re.compile(r"^/model/(?P<model>[^/]+)/invoke-with-bidirectional-stream$")
_EVENTSTREAM: Final = b"application/vnd.amazon.eventstream"
_H2_INTERNAL_ERROR: Final = 2
_SHUTDOWN_GRACE_S: Final = 2.0

type Scope = dict[str, Any]
type Receive = Callable[[], Awaitable[dict[str, Any]]]
type Send = Callable[[dict[str, Any]], Awaitable[None]]


@final
class Emulator:
    """A running emulator: where it listens, how to trust it, what it saw, what to break next."""

    def __init__(self, settings: EmulatorSettings, *, port: int, ca_path: Path) -> None:
        self.settings = settings
        self.port = port
        self.ca_path = ca_path
        self.sessions: list[EmulatedSession] = []
        self._script: ModelScript | None = None
        self._cursor = ScriptCursor()
        self._next_faults: list[Fault] = []
        self._active: list[SessionRunner] = []
        self._rejected = 0

    @property
    def endpoint_uri(self) -> str:
        """``https://HOST:PORT``: the SDK's endpoint override."""
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    def use_script(self, script: ModelScript | None) -> None:
        """Script the sessions that start from now on (None: the default persona).

        The script's turns are consumed across sessions (a handover continues the conversation);
        a new script starts from its first turn.
        """
        self._script = script
        self._cursor = ScriptCursor()

    def inject_fault(self, fault: Fault, *, target: Literal["next", "current"] = "next") -> None:
        """Inject ``fault`` into the next session to start, or into every running session now.

        ``after_ms`` counts from the next session's response start, or from now for ``current``.
        """
        if target == "next":
            self._next_faults.append(fault)
            return
        for runner in self._active:
            runner.inject(fault)

    def statistics(self) -> dict[str, int]:
        """Counts: sessions seen, active, ended by reason, rejected requests, barge-ins."""
        stats = {
            "sessions": len(self.sessions),
            "active": len(self._active),
            "rejected_requests": self._rejected,
            "barge_ins": sum(s.barge_ins for s in self.sessions),
            "turns": sum(s.turns for s in self.sessions),
        }
        for session in self.sessions:
            if session.end_reason is not None:
                key = f"ended_{session.end_reason}"
                stats[key] = stats.get(key, 0) + 1
        return stats

    def shutdown_sessions(self) -> None:
        """Stop every running session (the emulator is going away)."""
        for runner in self._active:
            runner.shutdown()

    # ------------------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI application."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        match = _PATH.match(scope["path"])
        if match is None:
            await self._reject(send, 404, "UnknownOperationException", "Not Found")
            return
        if scope["method"] != "POST":
            await self._reject(send, 405, "MethodNotAllowedException", "Method Not Allowed")
            return
        headers = dict(scope["headers"])
        if headers.get(b"content-type", b"").split(b";")[0].strip() != _EVENTSTREAM:
            await self._reject(
                send,
                400,
                "ValidationException",
                "content-type must be application/vnd.amazon.eventstream",
            )
            return
        await self._stream(match["model"], receive, send)

    async def _reject(self, send: Send, status: int, error_type: str, message: str) -> None:
        self._rejected += 1
        body = b'{"message":"' + message.encode() + b'"}'
        headers = [
            (b"content-type", b"application/json"),
            (b"x-amzn-errortype", error_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 405:
            headers.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _stream(self, model_id: str, receive: Receive, send: Send) -> None:
        faults = [*self.settings.faults, *self._next_faults]
        self._next_faults = []
        script = self._script
        if script is not None:
            faults.extend(script.faults)
        record = EmulatedSession(
            number=len(self.sessions) + 1, model_id=model_id, started_at=anyio.current_time()
        )
        self.sessions.append(record)
        _log.info("emulator.session_started", session=record.number, model_id=model_id)
        delay = self.settings.first_byte_delay_s + sum(
            f.after_ms / 1000.0 for f in faults if f.kind == "slow_first_byte"
        )
        if delay > 0:
            record.faults.append("slow_first_byte")
            await anyio.sleep(delay)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", _EVENTSTREAM),
                    (b"x-amzn-requestid", record_request_id(record)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        out_send, out_recv = anyio.create_memory_object_stream[bytes](self.settings.outbound_frames)
        runner = SessionRunner(
            settings=self.settings, record=record, script=script, out=out_send, cursor=self._cursor
        )
        self._active.append(runner)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_write, out_recv, send)
                await runner.run(receive, faults)
                if runner.reset_requested:
                    tg.cancel_scope.cancel()
        finally:
            self._active.remove(runner)
        if runner.reset_requested:
            await _reset_stream(send)
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def record_request_id(record: EmulatedSession) -> bytes:
    """A request id header value for a session (stable, readable in logs)."""
    return f"emulator-{record.number:06d}".encode()


async def _write(frames: Any, send: Send) -> None:
    async with frames:
        async for frame in frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})


async def _reset_stream(send: Send) -> None:
    """Reset the HTTP/2 stream behind an ASGI ``send`` (hypercorn 0.18 internals).

    ``send`` is ``HTTPStream.app_send``; its ``send`` is ``H2Protocol.stream_send``, whose protocol
    owns the h2 connection. Resetting there sends RST_STREAM(INTERNAL_ERROR). If the internals are
    not where expected (another hypercorn, HTTP/1.1), the stream is abandoned unfinished instead.
    """
    stream = getattr(send, "__self__", None)
    protocol = getattr(getattr(stream, "send", None), "__self__", None)
    connection = getattr(protocol, "connection", None)
    stream_id = getattr(stream, "stream_id", None)
    if connection is None or stream_id is None or not hasattr(connection, "reset_stream"):
        _log.warning("emulator.reset_unsupported")
        return
    with contextlib.suppress(Exception):
        connection.reset_stream(stream_id, error_code=_H2_INTERNAL_ERROR)
        await protocol._flush()  # type: ignore[union-attr]
    # Mark the ASGI stream closed so hypercorn does not try to finish it.
    stream.closed = True  # type: ignore[union-attr]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def run_emulator(
    settings: EmulatorSettings | None = None, script: ModelScript | None = None
) -> AsyncIterator[Emulator]:
    """Run an emulator for the duration of the ``async with`` block.

    Blocks on entry until the socket is bound and hypercorn serves; on exit stops the sessions,
    stops hypercorn and removes the TLS files.
    """
    settings = settings or EmulatorSettings()
    with make_tls_material() as tls:
        sock = _listen_socket(settings.host, settings.port)
        port: int = sock.getsockname()[1]
        emulator = Emulator(settings, port=port, ca_path=tls.ca_path)
        emulator.use_script(script)
        config = Config()
        config.certfile = str(tls.cert_path)
        config.keyfile = str(tls.key_path)
        config.alpn_protocols = ["h2", "http/1.1"]
        config.graceful_timeout = _SHUTDOWN_GRACE_S
        config.accesslog = None
        config.errorlog = None
        # hypercorn adopts the descriptor (and closes it when it stops serving).
        config.bind = [f"fd://{sock.detach()}"]
        stop = anyio.Event()

        async def trigger() -> None:
            await stop.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(_serve, emulator, config, trigger)
            _log.info("emulator.started", endpoint=emulator.endpoint_uri, ca_path=str(tls.ca_path))
            try:
                yield emulator
            finally:
                emulator.shutdown_sessions()
                stop.set()


async def _serve(app: Emulator, config: Config, trigger: Callable[[], Awaitable[None]]) -> None:
    try:
        asgi_app: Any = app  # hypercorn's ASGI TypedDicts vs our plain-dict signature
        await serve(asgi_app, config, shutdown_trigger=trigger, mode="asgi")
    except* (ssl.SSLError, ConnectionError) as group:
        # A client still holding its pooled connection when we close TLS makes hypercorn's
        # shutdown see "application data after close notify": harmless at this point.
        _log.info("emulator.unclean_connection_close", error=str(group.exceptions[0]))


async def serve_forever(
    settings: EmulatorSettings,
    *,
    on_ready: Callable[[Emulator], None],
    script: ModelScript | None = None,
) -> None:
    """Run the emulator until cancelled (the CLI's ``sonic-gateway emulator``)."""
    async with run_emulator(settings, script) as emulator:
        on_ready(emulator)
        await anyio.sleep_forever()
