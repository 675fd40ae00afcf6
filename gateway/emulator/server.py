"""The emulator's HTTP/2 + TLS edge: Bedrock's bidirectional stream on a lean h2 server.

Theory of operation. :func:`run_emulator` makes TLS material (:mod:`gateway.emulator.tls`), binds
a listening socket (so port 0 yields a known ephemeral port before serving starts) and serves it
with :class:`~gateway.emulator.h2server.H2ServerConnection` (one asyncio protocol per connection)
inside its own task group until the context exits.

Requests are answered when they arrive, in the connection's callback: ``POST
/model/{modelId}/invoke-with-bidirectional-stream`` with ``application/vnd.amazon.eventstream``, a
valid SigV4 signature (:mod:`gateway.emulator.auth`) and a Nova Sonic model id gets a
:class:`SessionRunner` plugged into the stream as its input sink at once (request bytes are
processed as they arrive, each frame's signature checked in turn), and a task in the emulator's
task group that sends the 200 response headers (after ``first_byte_delay_s`` and any
``slow_first_byte`` fault), runs the session, and ends the response only after the request side
ended (the SDK fails a stream whose response ends first). Errors, in the order checked: another
path 404, another method 405, authentication 403 (400 for a malformed ``Authorization``), another
content type 400, another model id 400 ``ValidationException`` "The provided model identifier is
invalid." (what Bedrock answers, e.g. langchain-ai/langchain-aws issue 252); each is a JSON body
with ``x-amzn-ErrorType``. A ``reset`` fault resets the HTTP/2 stream (RST_STREAM
INTERNAL_ERROR).

Memory is bounded: the records of ended sessions are kept in a deque of
``finished_sessions_kept`` (:attr:`Emulator.sessions` lists them with the running ones), the
statistics are running counts, and each session's input event log is run-length encoded
(:class:`~gateway.emulator.session.EventLog`).

Connections are numbered from 1 in accept order (``EmulatedSession.connection``);
:meth:`Emulator.inject_connection_fault` sends GOAWAY on, or drops, the connection carrying a given
session. Nothing recycles a connection after a number of requests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import socket
import ssl
import time
import urllib.parse
from typing import TYPE_CHECKING, Final, Literal, final

import anyio
import msgspec
import structlog

from gateway.emulator.auth import ErrorResponse, RequestAuthenticator
from gateway.emulator.h2server import (
    H2_REFUSED_STREAM,
    H2ServerConnection,
    H2ServerSettings,
    Request,
    ServerStream,
)
from gateway.emulator.session import EmulatedSession, EventLog, ScriptCursor, SessionRunner
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.stats import lateness_histogram, lateness_report
from gateway.emulator.tls import make_tls_material
from gateway.emulator.voice import UTTERANCES, VoiceCache, chunk_bytes_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from anyio.abc import TaskGroup

    from gateway.emulator.faults import Fault
    from gateway.emulator.script import ModelScript

__all__ = [
    "INVALID_MODEL_MESSAGE",
    "ConnectionFaultKind",
    "Emulator",
    "record_request_id",
    "run_emulator",
    "serve_forever",
]

_log = structlog.get_logger("gateway.emulator")
_PATH: Final = re.compile(r"^/model/(?P<model>[^/]+)/invoke-with-bidirectional-stream$")
_EVENTSTREAM: Final = b"application/vnd.amazon.eventstream"
INVALID_MODEL_MESSAGE: Final = "The provided model identifier is invalid."
_SHUTDOWN_GRACE_S: Final = 2.0
_BACKLOG: Final = 1024

type ConnectionFaultKind = Literal["goaway", "drop"]


@final
class Emulator:
    """A running emulator: where it listens, how to trust it, what it saw, what to break next."""

    def __init__(self, settings: EmulatorSettings, *, port: int, ca_path: Path) -> None:
        self.settings = settings
        self.port = port
        self.ca_path = ca_path
        self._finished: collections.deque[EmulatedSession] = collections.deque(
            maxlen=settings.finished_sessions_kept
        )
        self._sessions_started = 0
        self._ended: collections.Counter[str] = collections.Counter()
        self._finished_barge_ins = 0
        self._finished_turns = 0
        self._authenticator = (
            RequestAuthenticator(settings.credentials, region=settings.region)
            if settings.verify_signatures
            else None
        )
        self._model_ids = frozenset(settings.model_ids) | {
            f"arn:aws:bedrock:{settings.region}::foundation-model/{m}" for m in settings.model_ids
        }
        self._script: ModelScript | None = None
        self._cursor = ScriptCursor()
        self._next_faults: list[Fault] = []
        self._active: list[SessionRunner] = []
        self._rejected = 0
        self._tg: TaskGroup | None = None
        self._closing = False
        self._connections: dict[int, H2ServerConnection] = {}
        self._connections_opened = 0
        self._goaways = 0
        self._goaways_received_closed = 0
        self._drops = 0
        self._idle = anyio.Event()
        """Set while no session runs (shutdown waits for it)."""
        self._idle.set()
        self._disconnected = anyio.Event()
        """Set while no connection is open (shutdown waits for it)."""
        self._disconnected.set()
        self._voices = VoiceCache()
        self._lateness = lateness_histogram()
        self._tls: ssl.SSLContext | None = None

    @property
    def sessions(self) -> list[EmulatedSession]:
        """The records of the running sessions and of the last ``finished_sessions_kept`` ended
        ones, in start order."""
        running = [runner.record for runner in self._active]
        return sorted([*self._finished, *running], key=lambda record: record.number)

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

    def inject_connection_fault(self, kind: ConnectionFaultKind, *, session: int) -> None:
        """Act now on the HTTP/2 connection carrying session number ``session`` (1-based).

        ``goaway``: GOAWAY(NO_ERROR, last-stream-id = the highest stream id accepted so far): the
        client opens no new stream there, open streams run to their end, then the connection
        closes. ``drop``: close the TCP connection at once; every stream on it dies with no frame.
        A connection already closed is left alone.

        Raises:
            LookupError: no session has that number (or its record is no longer kept).
        """
        record = next((r for r in self.sessions if r.number == session), None)
        if record is None:
            raise LookupError(f"no emulated session number {session}")
        conn = self._connections.get(record.connection)
        if conn is None or not conn.is_open:
            return
        _log.info("emulator.connection_fault", kind=kind, connection=conn.number, session=session)
        if kind == "goaway":
            if not conn.goaway_sent:
                self._goaways += 1
                conn.goaway()
        elif kind == "drop":
            self._drops += 1
            conn.drop()

    def statistics(self) -> dict[str, int]:
        """Counts: sessions (seen, active, ended by reason), rejected requests, barge-ins, turns;
        connections opened and open now, GOAWAYs sent, graceful GOAWAYs received, drops."""
        running = [runner.record for runner in self._active]
        stats = {
            "sessions": self._sessions_started,
            "active": len(self._active),
            "rejected_requests": self._rejected,
            "barge_ins": self._finished_barge_ins + sum(s.barge_ins for s in running),
            "turns": self._finished_turns + sum(s.turns for s in running),
            "connections_opened": self._connections_opened,
            "connections_open": len(self._connections),
            "goaways_sent": self._goaways,
            "goaways_received": self._goaways_received_closed
            + sum(1 for c in self._connections.values() if c.goaway_received),
            "drops": self._drops,
        }
        ended = self._ended.copy()
        ended.update(s.end_reason for s in running if s.end_reason is not None)
        for reason, count in ended.items():
            stats[f"ended_{reason}"] = count
        return stats

    def reply_lateness(self) -> dict[str, object]:
        """How late paced reply audio went out against its schedule, since start.

        ``{"count", "p50", "p99", "max", "buckets"}`` in milliseconds (percentiles are bucket
        upper bounds, see :mod:`gateway.emulator.stats`); measured when each ``audioOutput`` chunk
        is handed to its stream, so it shows the emulator's own delays, not the client's.
        """
        return lateness_report(self._lateness)

    def snapshot(self) -> dict[str, object]:
        """:meth:`statistics` plus ``reply_lateness_ms`` and ``replies_rendered`` (JSON-ready)."""
        return {
            **self.statistics(),
            "replies_rendered": self._voices.renders,
            "reply_lateness_ms": self.reply_lateness(),
        }

    async def prerender(self, rate: int = 24_000) -> None:
        """Render the default persona's reply audio at ``rate`` now (one utterance at a time).

        A load test's first turns then find their audio ready instead of waiting for renders;
        the CLI runs this in the background at start (about 1 s of one core at 24 kHz).
        """
        chunk_bytes = chunk_bytes_for(rate, self.settings.output_chunk_ms)
        for seed in range(UTTERANCES):
            await self._voices.get(rate, self.settings.answer_ms, seed, chunk_bytes)

    def shutdown_sessions(self) -> None:
        """Stop every running session and refuse new ones (the emulator is going away)."""
        self._closing = True
        for runner in self._active:
            runner.shutdown()

    # ------------------------------------------------------------------------------ HTTP/2

    def _connection_factory(self) -> H2ServerConnection:
        assert self._tls is not None
        self._connections_opened += 1
        number = self._connections_opened
        conn = H2ServerConnection(
            number=number,
            settings=H2ServerSettings(
                max_concurrent_streams=self.settings.max_concurrent_streams,
                high_water_frames=self.settings.outbound_frames,
            ),
            tls=self._tls,
            on_request=self._on_request,
            on_closed=self._on_connection_closed,
        )
        self._connections[number] = conn
        if self._disconnected.is_set():
            self._disconnected = anyio.Event()
        return conn

    def _on_connection_closed(self, conn: H2ServerConnection) -> None:
        self._connections.pop(conn.number, None)
        if conn.goaway_received:
            self._goaways_received_closed += 1
        if not self._connections:
            self._disconnected.set()

    def _on_request(self, stream: ServerStream, request: Request) -> None:
        """A new stream (called from the connection's callback: nothing here awaits)."""
        if self._closing or self._tg is None:
            stream.reset(H2_REFUSED_STREAM)
            return
        match = _PATH.match(request.raw_path)
        if match is None:
            self._reject(stream, ErrorResponse(404, "UnknownOperationException", "Not Found"))
            return
        if request.method != "POST":
            self._reject(
                stream, ErrorResponse(405, "MethodNotAllowedException", "Method Not Allowed")
            )
            return
        verifier = None
        if self._authenticator is not None:
            verdict = self._authenticator.check(
                method=request.method,
                raw_path=request.raw_path,
                query=request.query,
                headers=request.headers,
                authority=request.authority,
                now_s=time.time(),  # SigV4 signs wall-clock time
            )
            if isinstance(verdict, ErrorResponse):
                _log.info("emulator.auth_failed", error=verdict.error_type, status=verdict.status)
                self._reject(stream, verdict)
                return
            verifier = verdict
        content_type = request.headers.get(b"content-type", b"").split(b";")[0].strip()
        if content_type != _EVENTSTREAM:
            message = "content-type must be application/vnd.amazon.eventstream"
            self._reject(stream, ErrorResponse(400, "ValidationException", message))
            return
        model_id = urllib.parse.unquote(match["model"])
        if model_id not in self._model_ids:
            self._reject(stream, ErrorResponse(400, "ValidationException", INVALID_MODEL_MESSAGE))
            return
        faults = [*self.settings.faults, *self._next_faults]
        self._next_faults = []
        script = self._script
        if script is not None:
            faults.extend(script.faults)
        self._sessions_started += 1
        record = EmulatedSession(
            number=self._sessions_started,
            model_id=model_id,
            started_at=anyio.current_time(),
            connection=stream.connection.number,
            input_events=EventLog(self.settings.input_event_runs_kept),
        )
        runner = SessionRunner(
            settings=self.settings,
            record=record,
            script=script,
            out=stream,
            cursor=self._cursor,
            voices=self._voices,
            lateness=self._lateness,
            verifier=verifier,
        )
        # Plugged in before this callback returns: request bytes in the same read reach it.
        stream.sink = runner
        self._active.append(runner)
        if self._idle.is_set():
            self._idle = anyio.Event()
        _log.info(
            "emulator.session_started",
            session=record.number,
            model_id=record.model_id,
            connection=record.connection,
        )
        self._tg.start_soon(self._serve_session, stream, runner, faults)

    def _reject(self, stream: ServerStream, error: ErrorResponse) -> None:
        self._rejected += 1
        body = error.body()
        headers = [
            (b"content-type", b"application/json"),
            (b"x-amzn-errortype", error.error_type_header()),
            (b"content-length", str(len(body)).encode()),
        ]
        if error.status == 405:
            headers.append((b"allow", b"POST"))
        stream.respond(error.status, headers)
        stream.send_nowait(body)
        stream.end()

    def _session_ended(self, record: EmulatedSession) -> None:
        self._finished.append(record)
        self._finished_barge_ins += record.barge_ins
        self._finished_turns += record.turns
        if record.end_reason is not None:
            self._ended[record.end_reason] += 1

    async def _serve_session(
        self, stream: ServerStream, runner: SessionRunner, faults: list[Fault]
    ) -> None:
        record = runner.record
        try:
            delay = self.settings.first_byte_delay_s + sum(
                f.after_ms / 1000.0 for f in faults if f.kind == "slow_first_byte"
            )
            if delay > 0:
                record.faults.append("slow_first_byte")
                await anyio.sleep(delay)
            stream.respond(
                200,
                [(b"content-type", _EVENTSTREAM), (b"x-amzn-requestid", record_request_id(record))],
            )
            await runner.run(faults)
        finally:
            self._active.remove(runner)
            self._session_ended(record)
            if not self._active:
                self._idle.set()
            if runner.reset_requested:
                stream.reset()
            else:
                stream.end()


def record_request_id(record: EmulatedSession) -> bytes:
    """A request id header value for a session (stable, readable in logs)."""
    return f"emulator-{record.number:06d}".encode()


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _tls_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    # The bidirectional stream is HTTP/2 only (the SDK's CRT transport negotiates h2).
    context.set_alpn_protocols(["h2"])
    return context


@contextlib.asynccontextmanager
async def run_emulator(
    settings: EmulatorSettings | None = None, script: ModelScript | None = None
) -> AsyncIterator[Emulator]:
    """Run an emulator for the duration of the ``async with`` block.

    Blocks on entry until the socket listens; on exit stops the sessions (their streams end or
    reset), closes the connections (aborting those still open after a short grace) and removes
    the TLS files.
    """
    settings = settings or EmulatorSettings()
    with make_tls_material() as tls:
        context = _tls_context(tls.cert_path, tls.key_path)
        sock = _listen_socket(settings.host, settings.port)
        port: int = sock.getsockname()[1]
        emulator = Emulator(settings, port=port, ca_path=tls.ca_path)
        emulator.use_script(script)
        emulator._tls = context
        loop = asyncio.get_running_loop()
        try:
            # Plain TCP: each connection runs its own TLS (gateway.emulator.tls_bio).
            server = await loop.create_server(
                emulator._connection_factory, sock=sock, backlog=_BACKLOG
            )
        except BaseException:
            sock.close()
            raise
        async with anyio.create_task_group() as tg:
            emulator._tg = tg
            _log.info("emulator.started", endpoint=emulator.endpoint_uri, ca_path=str(tls.ca_path))
            try:
                yield emulator
            finally:
                emulator.shutdown_sessions()
                server.close()
                with anyio.CancelScope(shield=True):
                    await _close_connections(emulator)


async def _close_connections(emulator: Emulator) -> None:
    # Sessions end their streams first; then every connection closes (GOAWAY, TLS close), and
    # the ones still open after the grace are aborted (a client that stopped reading would hold
    # the TLS close forever).
    with anyio.move_on_after(_SHUTDOWN_GRACE_S):
        await emulator._idle.wait()
    for conn in list(emulator._connections.values()):
        conn.close()
    with anyio.move_on_after(_SHUTDOWN_GRACE_S):
        await emulator._disconnected.wait()
    for conn in list(emulator._connections.values()):
        conn.drop()


async def serve_forever(
    settings: EmulatorSettings,
    *,
    on_ready: Callable[[Emulator], None],
    script: ModelScript | None = None,
    stats_file: Path | None = None,
    stats_interval_s: float = 1.0,
) -> None:
    """Run the emulator until cancelled (the CLI's ``sonic-gateway emulator``).

    The default persona's 24 kHz reply audio renders in the background from the start
    (:meth:`Emulator.prerender`).

    With ``stats_file``, :meth:`Emulator.snapshot` is written there as one JSON object every
    ``stats_interval_s`` and once more on the way out; each write replaces the file whole (a
    temporary file renamed over it), so a reader in another process never sees half of one. The
    object carries ``at``, the writer's ``time.monotonic()`` (system-wide, comparable across
    processes on the same host).
    """
    async with run_emulator(settings, script) as emulator, anyio.create_task_group() as tg:
        on_ready(emulator)
        tg.start_soon(emulator.prerender)
        if stats_file is None:
            await anyio.sleep_forever()
            return
        try:
            while True:
                await _write_stats(emulator, stats_file)
                await anyio.sleep(stats_interval_s)
        finally:
            with anyio.CancelScope(shield=True):
                await _write_stats(emulator, stats_file)


async def _write_stats(emulator: Emulator, path: Path) -> None:
    data = msgspec.json.encode({"at": time.monotonic(), **emulator.snapshot()})
    await anyio.to_thread.run_sync(_replace_file, path, data)


def _replace_file(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data + b"\n")
    os.replace(temporary, path)
