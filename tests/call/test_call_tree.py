"""The whole per-call actor tree over an in-memory Twilio socket, with the REAL Sonic client
talking to the REAL emulator (TLS + HTTP/2 on loopback).

The Twilio side is a small test double of the socket seam (two bounded anyio streams) driven by a
peer that behaves like Twilio: inbound frames encoded as Twilio does, real-time caller audio, and a
playback buffer (gateway.replay's sans-I/O model) that plays outbound audio in real time, echoes
marks when their audio has played, and on ``clear`` drops its buffer and echoes every pending mark.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import msgspec
import pytest

import audiocodec
from actors.call import Call, CallDeps, CallIdentity, CallReport, load_greeting
from actors.errors import BrokenByPeer, ClosedByUs
from actors.runtime import ActorSnapshot, SupervisorSnapshot
from actors.sonic import PoolSettings, SonicConnector, SonicSettings, StaticCredentials
from actors.wire import (
    MarkPayload,
    MediaPayload,
    StopMetadata,
    TwilioMark,
    TwilioMedia,
    TwilioOutboundClear,
    TwilioOutboundMark,
    TwilioOutboundMedia,
    TwilioStop,
    decode_twilio_outbound,
    encode_twilio_inbound,
)
from gateway.emulator import EmulatorSettings, run_emulator
from gateway.replay.playback import MarkDone, PlaybackBuffer
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors.wire import TwilioOutbound
    from gateway.emulator import Emulator

pytestmark = pytest.mark.anyio

SID = "MZ00000000000000000000000000000001"
FAST = {"think_ms": 30, "answer_ms": 600, "end_of_turn_silence_ms": 300.0}
SHORT_GREETING = b"\xff" * 1600  # 200 ms of μ-law silence: keeps tests short
FRAME = 160  # 20 ms of 8 kHz μ-law


class MemoryTwilioSocket:
    """The call's side of an in-memory Twilio WebSocket (implements ``TwilioSocket``)."""

    def __init__(self) -> None:
        self.in_tx, self._in_rx = anyio.create_memory_object_stream[bytes](512)
        self._out_tx, self.out_rx = anyio.create_memory_object_stream[bytes](1024)
        self.closed_with: tuple[int, str] | None = None

    async def receive(self) -> bytes:
        if self.closed_with is not None:
            raise ClosedByUs("socket closed")
        try:
            return await self._in_rx.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
            raise BrokenByPeer("peer hung up") from exc

    async def send(self, data: bytes) -> None:
        if self.closed_with is not None:
            raise ClosedByUs("socket closed")
        try:
            await self._out_tx.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise BrokenByPeer("peer gone") from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed_with is None:
            self.closed_with = (code, reason)
            self._out_tx.close()
            self._in_rx.close()

    def dispose(self) -> None:
        """Close every end (the test's too)."""
        for end in (self.in_tx, self._in_rx, self._out_tx, self.out_rx):
            end.close()


class ScriptedTwilio:
    """Twilio's behaviour on the other end of a :class:`MemoryTwilioSocket`."""

    def __init__(self, socket: MemoryTwilioSocket) -> None:
        self.socket = socket
        self.buffer = PlaybackBuffer()
        self.seq = 1  # ``start`` was sequenceNumber 1 (read by the gateway)
        self.chunk = 0
        self.frames: list[tuple[float, TwilioOutbound]] = []
        self.max_queued_ms = 0.0
        self.echoed: list[MarkDone] = []
        self.t0 = anyio.current_time()

    def _send(self, msg: Any) -> None:
        self.socket.in_tx.send_nowait(encode_twilio_inbound(msg))

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def media(self, ulaw: bytes) -> None:
        self.chunk += 1
        self._send(
            TwilioMedia(
                sequence_number=self._next_seq(),
                stream_sid=SID,
                media=MediaPayload(
                    track="inbound", chunk=self.chunk, timestamp=20 * self.chunk, payload=ulaw
                ),
            )
        )

    def stop(self) -> None:
        self._send(
            TwilioStop(
                sequence_number=self._next_seq(),
                stream_sid=SID,
                stop=StopMetadata(account_sid="AC1", call_sid="CA1"),
            )
        )

    def raw(self, data: bytes) -> None:
        self.socket.in_tx.send_nowait(data)

    async def speak(self, ulaw: bytes) -> None:
        """Send caller audio in real time (absolute 20 ms schedule)."""
        start = anyio.current_time()
        for i in range(0, len(ulaw) - FRAME + 1, FRAME):
            self.media(ulaw[i : i + FRAME])
            await anyio.sleep_until(start + (i // FRAME + 1) * 0.02)

    async def silence_until(self, event: anyio.Event, limit_s: float) -> None:
        """Caller silence in real time until ``event`` (or ``limit_s``)."""
        with anyio.move_on_after(limit_s):
            start = anyio.current_time()
            n = 0
            while not event.is_set():
                n += 1
                self.media(b"\xff" * FRAME)
                await anyio.sleep_until(start + n * 0.02)

    def _handle(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, MarkDone):
                self.echoed.append(ev)
                self._send(
                    TwilioMark(
                        sequence_number=self._next_seq(),
                        stream_sid=SID,
                        mark=MarkPayload(name=ev.name),
                    )
                )

    async def playout(self) -> None:
        """Read everything the call sends; play it in real time; echo marks. Runs until closed."""
        while True:
            wake = self.buffer.next_wakeup()
            if self.buffer.busy:  # the buffer model wants a 20 ms tick while audio plays
                wake = anyio.current_time() + 0.02
            data: bytes | None = None
            try:
                if wake is None:
                    data = await self.socket.out_rx.receive()
                else:
                    with anyio.move_on_at(wake):
                        data = await self.socket.out_rx.receive()
            except anyio.EndOfStream:
                return
            now = anyio.current_time()
            self._handle(self.buffer.advance(now))
            if data is None:
                continue
            frame = decode_twilio_outbound(data)
            self.frames.append((now, frame))
            match frame:
                case TwilioOutboundMedia(media=media):
                    self._handle(self.buffer.enqueue_audio(len(media.payload), now))
                    self.max_queued_ms = max(
                        self.max_queued_ms, self.buffer.ms(self.buffer.queued_bytes)
                    )
                case TwilioOutboundMark(mark=mark):
                    self._handle(self.buffer.enqueue_mark(mark.name, now))
                case TwilioOutboundClear():
                    self._handle(self.buffer.clear(now))

    def media_frames(self) -> list[tuple[float, TwilioOutboundMedia]]:
        return [(t, f) for t, f in self.frames if isinstance(f, TwilioOutboundMedia)]

    def kinds(self) -> list[str]:
        return [type(f).__name__ for _, f in self.frames]


def _playbacks(call: Call) -> list[Any]:
    # Test-only peek at the journal: which turns finished playing.
    return list(call._journal.playbacks.values())


def caller_speech(ms: int, seed: int) -> bytes:
    return audiocodec.ulaw_encode(audiocodec.speech_like(8000, ms, seed))


@contextlib.asynccontextmanager
async def call_env(
    emulator: dict[str, Any] | None = None,
    *,
    call_sid: str = "CA1",
    sonic: dict[str, Any] | None = None,
    **deps: Any,
) -> AsyncIterator[tuple[Emulator, Call, ScriptedTwilio, list[CallReport]]]:
    async with run_emulator(EmulatorSettings(**(FAST | (emulator or {})))) as emu:
        settings = SonicSettings(
            endpoint_uri=emu.endpoint_uri, ca_bundle=Path(emu.ca_path), **(sonic or {})
        )
        async with SonicConnector(
            settings, credentials=StaticCredentials(), pool=PoolSettings(size=0)
        ) as connector:
            socket = MemoryTwilioSocket()
            reports: list[CallReport] = []
            identity = CallIdentity(
                call_sid=call_sid,
                stream_sid=SID,
                account_sid="AC1",
                started_at=anyio.current_time(),
            )
            call_deps = CallDeps(
                connector=connector,
                sonic_settings=settings,
                on_finished=reports.append,
                **({"greeting_ulaw": SHORT_GREETING} | deps),
            )
            call = Call(socket, identity, call_deps)
            peer = ScriptedTwilio(socket)
            try:
                yield emu, call, peer, reports
            finally:
                socket.dispose()


def live_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if not t.done()}


async def test_greeting_first_then_a_turn_paced_within_lead_then_hangup_cleans_up() -> None:
    before = live_tasks()
    async with call_env(greeting_ulaw=load_greeting()) as (emu, call, peer, reports):
        ended = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def run_call() -> None:
                await call.run()
                ended.set()

            tg.start_soon(peer.playout)
            tg.start_soon(run_call)
            # The greeting goes out before anything else, without waiting for Sonic.
            await wait_for(lambda: peer.frames, 5)
            assert isinstance(peer.frames[0][1], TwilioOutboundMedia)
            greeting_ms = (peer.frames[0][0] - call.identity.started_at) * 1000
            # Let the greeting play out, so the turn's gateway time is not time queued behind it.
            await wait_for(lambda: 0 in {p.turn_id for p in _playbacks(call)}, 5)
            # A caller turn: speech, then silence until the assistant's answer has played.
            answered = anyio.Event()

            def answer_done() -> bool:
                # The turn played to its end (not a gap between chunks on a busy machine).
                played = {p.turn_id for p in _playbacks(call)}
                return any(t >= 1 for t in played) and not peer.buffer.busy

            await peer.speak(caller_speech(900, 1))
            async with anyio.create_task_group() as inner:
                inner.start_soon(peer.silence_until, answered, 15)
                await wait_for(lambda: any(t.turn_id >= 1 for t in call.report().turns), 15)
                await wait_for(answer_done, 15)
                answered.set()
            snapshot = call.statistics()
            # Hang up: every actor stops within 1 s and the Sonic stream closes in order.
            stopped_at = anyio.current_time()
            peer.stop()
            with anyio.fail_after(1.0):
                await ended.wait()
            stop_s = anyio.current_time() - stopped_at
            tg.cancel_scope.cancel()
        record = emu.sessions[0]
        assert record.input_events[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
        assert record.end_reason == "closed"
    # Nothing leaks: the call, the connector and the emulator are all gone.
    await anyio.sleep(0.05)
    assert live_tasks() - before == set()

    report = reports[0]
    assert report.end_reason == "caller_hangup"
    assert call.report() == report
    assert report.greeting_ms is not None
    assert report.greeting_ms <= greeting_ms + 1
    turn = next(t for t in report.turns if t.turn_id == 1)
    assert turn.end_of_speech in ("vad", "transcript")
    assert turn.model_ms is not None
    assert turn.gateway_ms is not None
    assert 0 <= turn.gateway_ms < 50
    assert [line.role for line in report.transcript][:2] == ["USER", "ASSISTANT"]
    # Paced: Twilio never held more than the lead plus one chunk (the defaults).
    defaults = attrs.fields(CallDeps)
    assert (
        peer.max_queued_ms
        <= defaults.playback_lead_ms.default + defaults.playback_chunk_ms.default + 1
    )
    # Every mark echoed as played (no clear): heard = everything sent, greeting included.
    assert report.heard_ms > 1000
    assert all(not m.cleared for m in peer.echoed)
    # The snapshot tree: four children, each with its mailboxes' statistics.
    assert isinstance(snapshot, SupervisorSnapshot)
    assert [c.name for c in snapshot.children] == [
        "playback_egress",
        "turn_taker",
        "sonic_session",
        "twilio_ingress",
    ]
    by_name = {c.name: c for c in snapshot.children}
    assert {m.name for m in by_name["playback_egress"].mailboxes} == {
        "playback.control",
        "playback.data",
    }
    assert {m.name for m in by_name["sonic_session"].mailboxes} == {"sonic.control", "sonic.audio"}
    assert by_name["twilio_ingress"].mailboxes == ()
    decoded = msgspec.json.decode(
        msgspec.json.encode(snapshot), type=SupervisorSnapshot | ActorSnapshot
    )
    assert isinstance(decoded, SupervisorSnapshot)
    assert b'"counters"' in msgspec.json.encode(snapshot)
    print(f"greeting first media {greeting_ms:.1f} ms; turn {turn}; stop {stop_s * 1000:.0f} ms")


async def test_barge_in_clears_drops_queue_ignores_stale_marks_and_reports_heard() -> None:
    async with call_env({"answer_ms": 4000}) as (emu, call, peer, reports):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.playout)
            tg.start_soon(call.run)
            await peer.speak(caller_speech(900, 2))
            playing = anyio.Event()
            async with anyio.create_task_group() as inner:
                inner.start_soon(peer.silence_until, playing, 15)
                await wait_for(lambda: any(t.turn_id >= 1 for t in call.report().turns), 15)
                playing.set()
            await anyio.sleep(0.5)  # part of the answer plays
            # The caller talks over the assistant: the emulator detects it and signals barge-in.
            await peer.speak(caller_speech(700, 3))
            await wait_for(lambda: call.report().barge_ins, 10)
            await wait_for(lambda: call.report().barge_ins[0].heard_ms is not None, 5)
            stats = {c.name: c for c in call.statistics().children}
            peer.stop()
            await wait_for(lambda: reports, 2)
            tg.cancel_scope.cancel()
        assert emu.statistics()["barge_ins"] >= 1
    report = reports[0]
    barge = report.barge_ins[0]
    assert barge.source in ("sonic_marker", "sonic_interrupted")
    assert barge.turn_id == 1
    assert barge.stop_ms is not None
    assert barge.stop_ms < 50  # signal -> clear sent: in-process hops only
    assert barge.heard_ms is not None
    assert 0 < barge.heard_ms < 4000
    # A clear went out; after it, no media/mark of the old generation.
    kinds = peer.kinds()
    assert "TwilioOutboundClear" in kinds
    after = [f for _, f in peer.frames[kinds.index("TwilioOutboundClear") + 1 :]]
    assert all(f.mark.name.startswith("1:") for f in after if isinstance(f, TwilioOutboundMark))
    # The marks Twilio echoed because of the clear were not counted as heard.
    assert any(m.cleared for m in peer.echoed)
    egress = stats["playback_egress"]
    assert isinstance(egress, ActorSnapshot)
    counters = msgspec.to_builtins(egress)["counters"]
    assert counters["clears"] == 1
    assert counters["marks_stale"] >= 1
    assert counters["ms_dropped_by_clear"] > 0
    # The heard position never exceeds what was sent of the turn.
    assert barge.heard_ms <= counters["ms_sent"]
    truncated = [line for line in report.transcript if line.role == "ASSISTANT"]
    assert not truncated or truncated[0].truncated or truncated[0].text == ""


async def test_malformed_frame_ends_the_call_with_a_reason() -> None:
    async with call_env() as (_emu, call, peer, reports), anyio.create_task_group() as tg:
        tg.start_soon(peer.playout)
        tg.start_soon(call.run)
        await wait_for(lambda: peer.frames, 5)
        peer.media(b"\xff" * FRAME)
        peer.raw(b'{"event": "media", "sequenceNumber": "9", "streamSid": "MZ"}')
        await wait_for(lambda: reports, 2)
        tg.cancel_scope.cancel()
    assert reports[0].end_reason.startswith("protocol_error")
    assert peer.socket.closed_with is not None
    assert peer.socket.closed_with[0] == 1008


async def test_local_vad_barge_in_interrupts_the_greeting() -> None:
    async with (
        call_env(
            greeting_ulaw=load_greeting(), local_vad_barge_in=True, min_barge_in_speech_ms=200
        ) as (_emu, call, peer, reports),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(peer.playout)
        tg.start_soon(call.run)
        await wait_for(lambda: peer.frames, 5)
        await peer.speak(caller_speech(600, 4))
        await wait_for(lambda: call.report().barge_ins, 5)
        peer.stop()
        await wait_for(lambda: reports, 2)
        tg.cancel_scope.cancel()
    barge = reports[0].barge_ins[0]
    assert barge.source == "local_vad"
    assert barge.turn_id == 0
    assert "TwilioOutboundClear" in peer.kinds()


async def test_without_a_greeting_the_first_words_clear_nothing() -> None:
    # No greeting: no turn 0 is open, so the local VAD's first speech is not a barge-in.
    async with (
        call_env(greeting_ulaw=b"", local_vad_barge_in=True, min_barge_in_speech_ms=200) as (
            _emu,
            call,
            peer,
            reports,
        ),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(peer.playout)
        tg.start_soon(call.run)
        await peer.speak(caller_speech(900, 7))
        answered = anyio.Event()
        async with anyio.create_task_group() as inner:
            inner.start_soon(peer.silence_until, answered, 15)
            await wait_for(lambda: any(t.turn_id >= 1 for t in call.report().turns), 15)
            answered.set()
        peer.stop()
        await wait_for(lambda: reports, 2)
        tg.cancel_scope.cancel()
    assert reports[0].barge_ins == []
    assert "TwilioOutboundClear" not in peer.kinds()


async def test_hangup_mid_answer_stops_everything_within_a_second_and_closes_sonic_in_order() -> (
    None
):
    before = live_tasks()
    async with call_env({"answer_ms": 4000}) as (emu, call, peer, reports):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.playout)
            tg.start_soon(call.run)
            await peer.speak(caller_speech(900, 5))
            playing = anyio.Event()
            async with anyio.create_task_group() as inner:
                inner.start_soon(peer.silence_until, playing, 15)
                await wait_for(lambda: any(t.turn_id >= 1 for t in call.report().turns), 15)
                playing.set()
            await anyio.sleep(0.3)
            stopped_at = anyio.current_time()
            peer.stop()
            await wait_for(lambda: reports, 1.0)
            stop_s = anyio.current_time() - stopped_at
            tg.cancel_scope.cancel()
        record = emu.sessions[0]
        assert record.input_events[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
        assert record.end_reason == "closed"
    await anyio.sleep(0.05)
    assert live_tasks() - before == set()
    assert reports[0].end_reason == "caller_hangup"
    assert {c.state for c in call.statistics().children} <= {"stopped", "cancelled"}
    print(f"hang-up mid-answer: call ended {stop_s * 1000:.0f} ms after stop")
