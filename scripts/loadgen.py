"""Load generator: N simulated Twilio calls against a gateway from one process and one timer.

Run by ``scripts/bench_load.py``, which drives it over a line protocol::

    .venv/bin/python scripts/loadgen.py --url ws://127.0.0.1:8080/twilio/media --calls 20

Commands on stdin, one per line: ``go`` (ramp the calls in), ``window`` and ``end`` (the measured
window starts and ends: pacing lateness is reported for it), ``stop`` (every call hangs up; end of
input does the same).
Events on stdout, one JSON object per line: ``ready`` (after the warm-up call), ``ramped`` (every
call has connected or failed), ``result`` (everything observed, see ``CallResult``). Times are
``time.monotonic()`` seconds, the system-wide monotonic clock, so the bench can line them up with
its own samples of the gateway.

How it stays cheap (the generator must never be the bottleneck): every call is an
``asyncio.Protocol`` on uvloop (when installed); the WebSocket upgrade goes through the
``websockets`` sans-I/O client, everything after it through ``loadgen_core`` (pre-rendered
templates, precomputed base64 audio, one fixed masking key per call: one ``transport.write`` per
frame). ONE pacing timer drives all calls: the 20 ms period is cut into ``--slots`` slots, calls are
spread over the slots (as real calls arrive out of phase), and each tick sends the next frame of
every call in its slot, on an absolute schedule; a late tick catches up with every overdue slot, so
each call still sends 50 frames a second. How late each tick ran is the generator's own lateness.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import struct
import sys
import time
from typing import TYPE_CHECKING, Final, cast, final

import anyio
import msgspec
from loadgen_core import (
    MAX_MESSAGE_BYTES,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    Caller,
    CallMessages,
    CallResult,
    FrameReader,
    GatewayMessage,
    Phase,
    WireError,
    encode_b64_frames,
    parse_gateway_message,
)
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame
from websockets.protocol import State
from websockets.uri import parse_uri

from audiocodec import speech_like, ulaw_encode

if TYPE_CHECKING:
    from anyio.abc import ObjectSendStream

FRAME_S: Final = 0.020
ACCOUNT_SID: Final = "AC" + "0" * 32
CONNECT_TIMEOUT_S: Final = 10.0
HANGUP_TIMEOUT_S: Final = 5.0
RESYNC_AFTER_S: Final = 1.0  # a tick later than this skips frames instead of bursting them
SILENCE_B64: Final = encode_b64_frames(b"\xff" * 160)[0]

clock = time.monotonic


class Lateness(msgspec.Struct, kw_only=True):
    """Pacing lateness in the window (ms): how late each tick's last send was vs its schedule."""

    count: int
    p50: float | None
    p99: float | None
    max: float | None


class GcPauses(msgspec.Struct, kw_only=True):
    """Garbage-collector pauses in the window (ms): a long one shows up as lateness."""

    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0


class Result(msgspec.Struct, kw_only=True):
    """The ``result`` event."""

    event: str = "result"
    calls: int
    window: tuple[float, float] | None
    lateness_ms: Lateness
    gc_pauses: GcPauses
    skipped_frames: int
    unknown_messages: int
    results: list[CallResult]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _emit(obj: object) -> None:
    sys.stdout.buffer.write(msgspec.json.encode(obj) + b"\n")
    sys.stdout.buffer.flush()


@final
class Pacer:
    """One timer for every call: slot ``k % slots`` is due at ``t0 + k * period / slots``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, slots: int) -> None:
        self._loop = loop
        self._slots: list[list[CallConnection]] = [[] for _ in range(slots)]
        self._slot_s = FRAME_S / slots
        self._t0 = clock()
        self._k = 0
        self._handle: asyncio.TimerHandle | None = None
        self.lateness: list[float] = []
        self.skipped_frames = 0
        self.recent_late = 0.0
        self._recent_at = 0.0

    def add(self, conn: CallConnection) -> None:
        """Join the least loaded slot; the call's first frame goes out at that slot's next tick."""
        if self._handle is None:  # the schedule starts with the first call
            self._t0 = clock()
            self._k = 0
            self._schedule()
        slot = min(range(len(self._slots)), key=lambda s: len(self._slots[s]))
        self._slots[slot].append(conn)
        conn.slot = slot

    def remove(self, conn: CallConnection) -> None:
        """Stop ticking ``conn``; idempotent."""
        if conn.slot >= 0:
            self._slots[conn.slot].remove(conn)
            conn.slot = -1

    def close(self) -> None:
        """Cancel the timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        delay = self._t0 + self._k * self._slot_s - clock()
        # Loop timers have 1 ms resolution: round up so a tick never fires before its time.
        self._handle = self._loop.call_later(max(0.0, math.ceil(delay * 1000) / 1000), self._tick)

    def _tick(self) -> None:
        slots = self._slots
        count = len(slots)
        now = clock()
        while True:
            due = self._t0 + self._k * self._slot_s
            if due > now:
                break
            if now - due > RESYNC_AFTER_S:
                behind = math.floor((now - due) / self._slot_s)
                self.skipped_frames += sum(len(s) for s in slots) * (behind // count)
                self._k += behind
                continue
            members = slots[self._k % count]
            self._k += 1
            if not members:
                continue
            for conn in tuple(members):
                conn.on_tick(now)
            now = clock()
            late = now - due
            self.lateness.append(late)
            if late >= self.recent_late or now - self._recent_at > 0.1:
                self.recent_late = late
                self._recent_at = now
        self._schedule()


@final
class CallConnection(asyncio.Protocol):
    """One call's socket: upgrade through ``websockets``, then frames through ``loadgen_core``."""

    def __init__(
        self,
        gen: LoadGenerator,
        uri: str,
        messages: CallMessages,
        caller: Caller,
    ) -> None:
        self._gen = gen
        self._messages = messages
        self.caller = caller
        self.result = caller.result
        self._handshake: ClientProtocol | None = ClientProtocol(
            parse_uri(uri), max_size=MAX_MESSAGE_BYTES
        )
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None
        self._open = False  # frames may be sent (after the upgrade, before stop)
        self._hung_up = False
        self.slot = -1
        self.opened = anyio.Event()
        self.greeted = anyio.Event()
        self.closed = anyio.Event()

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast("asyncio.Transport", transport)
        self._transport = transport
        assert self._handshake is not None
        self._handshake.send_request(self._handshake.connect())
        transport.write(b"".join(self._handshake.data_to_send()))

    def data_received(self, data: bytes) -> None:
        if self._handshake is not None:
            self._upgrade(data)
            return
        now = clock()
        try:
            messages = self._reader.feed(data)
            out: list[bytes] = []
            for opcode, payload in messages:
                if opcode == OP_TEXT:
                    self._text(payload, now, out)
                elif opcode == OP_CLOSE:
                    self._peer_closed(payload)
                    return
                elif opcode == OP_PING and self._open:
                    out.append(self._messages.pong(payload))
        except WireError as exc:
            self._fail(f"wire: {exc}")
            return
        if out and self._open:
            assert self._transport is not None
            self._transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        self._gen.pacer.remove(self)
        result = self.result
        result.ended_at = clock()
        if not self._hung_up and result.error is None:
            result.error = f"gateway closed the call (code {result.close_code})"
        self._finish_counts()
        self.opened.set()
        self.closed.set()

    # ---------------------------------------------------------------- pacing

    def on_tick(self, now: float) -> None:
        """Send this call's next 20 ms frame and the mark echoes that are due."""
        if not self._open:
            return
        caller = self.caller
        index = caller.next_frame(now)
        if caller.phase is not Phase.GREETING and not self.greeted.is_set():
            self.greeted.set()
        frame = self._messages.media(self._gen.speech[index] if index >= 0 else SILENCE_B64)
        transport = self._transport
        assert transport is not None
        echoes = caller.due_marks(now)
        if echoes:
            marks = [self._messages.mark(name) for name in echoes]
            self.result.marks_echoed += len(marks)
            transport.write(b"".join((frame, *marks)))
        else:
            transport.write(frame)

    # ---------------------------------------------------------------- control

    def hang_up(self) -> None:
        """Send ``stop`` and a close frame (the gateway closes next); abort before the upgrade."""
        self._hung_up = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not self._open:
            transport.abort()
            return
        self._open = False
        self._gen.pacer.remove(self)
        transport.write(self._messages.stop() + self._messages.close(1000))

    def abort(self) -> None:
        """Drop the connection now."""
        self._hung_up = True
        if self._transport is not None:
            self._transport.abort()

    def give_up(self, error: str) -> None:
        """The connection could not be made: record why and count the call as over."""
        if self.result.error is None:
            self.result.error = error
        if self._transport is not None:
            self._transport.abort()  # connection_lost follows
        else:
            self.result.ended_at = clock()
            self.opened.set()
            self.closed.set()

    # ---------------------------------------------------------------- internals

    def _upgrade(self, data: bytes) -> None:
        hs = self._handshake
        assert hs is not None
        assert self._transport is not None
        hs.receive_data(data)
        early = [ev for ev in hs.events_received() if isinstance(ev, Frame)]
        if hs.handshake_exc is not None:
            exc = hs.handshake_exc
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
            self._fail(f"upgrade refused: HTTP {status}" if status else f"upgrade failed: {exc}")
            return
        if hs.state is not State.OPEN:
            return
        if early or hs.reader.buffer:
            # The gateway speaks only after ``start``, which is sent below.
            self._fail("frames before start")
            return
        self._handshake = None
        now = clock()
        self._transport.write(self._messages.connected() + self._messages.start())
        self._open = True
        self.caller.started(now)
        self._gen.pacer.add(self)
        self.opened.set()

    def _text(self, payload: bytes, now: float, out: list[bytes]) -> None:
        kind, nbytes, name = parse_gateway_message(payload)
        if not self._open:
            return  # after stop, Twilio plays and echoes nothing
        caller = self.caller
        if kind is GatewayMessage.MEDIA:
            caller.on_media(nbytes, now, self._gen.pacer.recent_late)
        elif kind is GatewayMessage.MARK:
            echoes = caller.on_mark(name, now)
            out.extend(self._messages.mark(n) for n in echoes)
            self.result.marks_echoed += len(echoes)
        elif kind is GatewayMessage.CLEAR:
            echoes = caller.on_clear(now)
            out.extend(self._messages.mark(n) for n in echoes)
            self.result.marks_echoed += len(echoes)
        else:
            self._gen.unknown_messages += 1

    def _peer_closed(self, payload: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if len(payload) >= 2:
            self.result.close_code = struct.unpack("!H", payload[:2])[0]
        if not self._hung_up:
            self._open = False
            transport.write(self._messages.close(1000))
        transport.close()

    def _fail(self, error: str) -> None:
        if self.result.error is None:
            self.result.error = error
        self.abort()

    def _finish_counts(self) -> None:
        result = self.result
        listener = self.caller.listener
        result.frames_sent = self._messages.frames_sent
        result.media_received = listener.media_messages
        result.media_bytes = listener.media_bytes
        result.clears = listener.clears


@final
class LoadGenerator:
    """Places and paces the calls; see the module docstring."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pacer = Pacer(asyncio.get_running_loop(), slots=args.slots)
        ulaw = ulaw_encode(speech_like(8000, args.utterance_ms, seed=args.seed))
        self.speech = encode_b64_frames(ulaw)
        self.unknown_messages = 0
        self.calls: list[CallConnection] = []
        self.window: tuple[float, float] | None = None
        self._window_start: float | None = None
        self._window_lateness: list[float] = []
        self._gc = GcPauses()
        self._gc_started = 0.0
        self._gc_on = False
        gc.callbacks.append(self._on_gc)
        self._settled = 0
        self.all_settled = anyio.Event()

    def _connection(self, call_sid: str) -> CallConnection:
        args = self.args
        index = len(self.calls)
        stream_sid = "MZ" + call_sid[2:]
        messages = CallMessages(
            call_sid=call_sid,
            stream_sid=stream_sid,
            account_sid=ACCOUNT_SID,
            custom_parameters={
                "callSid": call_sid,
                "accountSid": ACCOUNT_SID,
                "from": "+15550100",
                "to": "+15550199",
            },
            key=struct.pack("!I", (0x9E3779B1 * (index + 1)) & 0xFFFFFFFF or 1),
        )
        caller = Caller(
            CallResult(call_sid=call_sid, connect_at=clock()),
            speech_frames=len(self.speech),
            answer_end_idle_s=args.answer_end_idle_ms / 1000,
            pause_s=args.pause_ms / 1000,
            answer_timeout_s=args.answer_timeout_s,
            greeting_timeout_s=args.answer_timeout_s,
            underrun_gap_s=args.underrun_gap_ms / 1000,
        )
        conn = CallConnection(self, self.args.url, messages, caller)
        self.calls.append(conn)
        return conn

    async def _connect(self, conn: CallConnection) -> bool:
        """Open the socket and upgrade; False (error recorded) when that failed."""
        url = parse_uri(self.args.url)
        loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_S):
                await loop.create_connection(lambda: conn, url.host, url.port)
                await conn.opened.wait()
        except (OSError, TimeoutError) as exc:
            conn.give_up(f"connect failed: {exc!r}")
            return False
        return conn.result.error is None

    async def warm_up(self) -> None:
        """One call that hears the greeting and hangs up: the gateway's lazy set-up happens here,
        not in the first measured call."""
        conn = self._connection(f"CA{'f' * 8}{0:024x}")
        if await self._connect(conn):
            with anyio.move_on_after(self.args.answer_timeout_s):
                await conn.greeted.wait()
        conn.hang_up()
        with anyio.move_on_after(HANGUP_TIMEOUT_S):
            await conn.closed.wait()
        conn.abort()
        self.calls.clear()

    async def place(self, index: int, at: float) -> None:
        """Call ``index``: connect at ``at`` (monotonic), then live until hung up."""
        await anyio.sleep(max(0.0, at - clock()))
        conn = self._connection(f"CA{self.args.run_id:08x}{index:024x}")
        connected = await self._connect(conn)
        self._settled += 1
        if self._settled == self.args.calls:
            self.all_settled.set()
        if connected:
            await conn.closed.wait()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        del info
        if phase == "start":
            self._gc_started = clock()
        elif self._gc_on:
            pause = (clock() - self._gc_started) * 1000
            self._gc.count += 1
            self._gc.total_ms += pause
            self._gc.max_ms = max(self._gc.max_ms, pause)

    def start_window(self) -> None:
        """The measured window starts now: lateness restarts."""
        self._window_start = clock()
        self.pacer.lateness = []
        self._gc_on = True

    def end_window(self) -> None:
        """The measured window ends now: lateness stops being recorded."""
        if self._window_start is not None and self.window is None:
            self.window = (self._window_start, clock())
            self._window_lateness = self.pacer.lateness
            self.pacer.lateness = []
            self._gc_on = False

    def hang_up_all(self) -> None:
        """Every call hangs up; ends the window if it is still open."""
        self.end_window()
        for conn in self.calls:
            conn.hang_up()

    def abort_all(self) -> None:
        """Drop every connection still open."""
        for conn in self.calls:
            conn.abort()

    def result(self) -> Result:
        """The ``result`` event."""
        late = [x * 1000 for x in self._window_lateness]
        return Result(
            calls=self.args.calls,
            window=self.window,
            lateness_ms=Lateness(
                count=len(late),
                p50=_percentile(late, 0.50),
                p99=_percentile(late, 0.99),
                max=max(late) if late else None,
            ),
            gc_pauses=GcPauses(
                count=self._gc.count,
                total_ms=round(self._gc.total_ms, 2),
                max_ms=round(self._gc.max_ms, 2),
            ),
            skipped_frames=self.pacer.skipped_frames,
            unknown_messages=self.unknown_messages,
            results=[conn.result for conn in self.calls],
        )


async def _commands(send: ObjectSendStream[str]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        async with send:
            while line := await reader.readline():
                await send.send(line.decode().strip())
    finally:
        transport.close()


async def _main(args: argparse.Namespace) -> None:
    gen = LoadGenerator(args)
    send, receive = anyio.create_memory_object_stream[str](4)
    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(_commands, send)
        if args.warmup:
            await gen.warm_up()
        _emit({"event": "ready", "at": clock()})
        async for command in receive:
            if command == "go":
                break
        else:
            tg.cancel_scope.cancel()
            return
        with anyio.move_on_after(args.max_s):
            async with anyio.create_task_group() as calls:
                t0 = clock()
                for i in range(args.calls):
                    calls.start_soon(gen.place, i, t0 + i * args.ramp_s / max(1, args.calls))

                async def announce_ramped() -> None:
                    await gen.all_settled.wait()
                    _emit({"event": "ramped", "at": clock()})

                calls.start_soon(announce_ramped)
                async for command in receive:
                    if command == "window":
                        gen.start_window()
                        _emit({"event": "window", "at": clock()})
                    elif command == "end":
                        gen.end_window()
                        _emit({"event": "end", "at": clock()})
                    elif command == "stop":
                        break
                gen.hang_up_all()
                with anyio.move_on_after(HANGUP_TIMEOUT_S):
                    for conn in gen.calls:
                        await conn.closed.wait()
                gen.abort_all()
                calls.cancel_scope.cancel()  # calls still waiting for their start time
        gen.hang_up_all()
        gen.abort_all()
        gen.pacer.close()
        _emit(gen.result())
        tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run until ``stop``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="ws://host:port/twilio/media")
    parser.add_argument("--calls", type=int, required=True, help="number of calls")
    parser.add_argument("--ramp-s", type=float, default=5.0, help="calls start over this long")
    parser.add_argument("--max-s", type=float, default=600.0, help="hang up after this long")
    parser.add_argument("--slots", type=int, default=10, help="pacing slots per 20 ms")
    parser.add_argument("--utterance-ms", type=int, default=1500, help="caller utterance")
    parser.add_argument("--pause-ms", type=int, default=1000, help="pause after an answer")
    parser.add_argument("--answer-end-idle-ms", type=int, default=400, help="answer over after")
    parser.add_argument("--answer-timeout-s", type=float, default=10.0, help="give up waiting")
    parser.add_argument("--underrun-gap-ms", type=float, default=40.0, help="gap = underrun")
    parser.add_argument("--seed", type=int, default=7, help="speech_like seed")
    parser.add_argument("--run-id", type=lambda s: int(s, 0), default=0, help="in CallSids")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    args = parser.parse_args(argv)
    try:
        anyio.run(_main, args, backend="asyncio", backend_options={"use_uvloop": True})
    except ModuleNotFoundError as exc:  # uvloop not installed
        if exc.name != "uvloop":
            raise
        anyio.run(_main, args, backend="asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
