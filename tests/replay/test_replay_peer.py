"""The simulated Twilio peer against a small REAL websockets server that acts like a gateway.

Bounds are generous (a noisy 2-core CI machine): these tests check behaviour, not latency targets.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from websockets.asyncio.server import ServerConnection, serve

from actors.wire import encode_twilio_clear, encode_twilio_mark, encode_twilio_media
from gateway.replay.audio import speech_like_ulaw
from gateway.replay.peer import PeerResult, TwilioPeer
from gateway.replay.scenario import BargeIn, Pause, PeerSettings, Say, WaitForAnswer
from gateway.signature import compute_signature

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from websockets.http11 import Response

    from gateway.replay.scenario import CallerStep

pytestmark = pytest.mark.anyio

TOKEN = "test-auth-token"
PUBLIC_URL = "wss://voice.example.com/twilio/media"
SILENCE = b"\xff" * 160


def audio_for(step: Say | BargeIn) -> bytes:
    assert step.ms is not None
    return speech_like_ulaw(step.ms, step.seed)


class FakeGateway:
    """Records what the peer sent; ``behaviour`` plays the gateway's part after ``start``."""

    def __init__(
        self, behaviour: Callable[[FakeGateway, ServerConnection], Awaitable[None]]
    ) -> None:
        self.behaviour = behaviour
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.signature: str | None = None
        self.stream_sid = ""
        self.mark_echoes: dict[str, float] = {}
        self.mark_sent: dict[str, float] = {}
        self.speech_at: float | None = None
        self.speech_seen = anyio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        self.signature = ws.request.headers.get("X-Twilio-Signature") if ws.request else None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.reader, ws, tg.cancel_scope)
            await self.wait_started()
            await self.behaviour(self, ws)

    async def reader(self, ws: ServerConnection, scope: anyio.CancelScope) -> None:
        async for data in ws:
            assert isinstance(data, str)
            frame = msgspec.json.decode(data)
            now = anyio.current_time()
            self.frames.append((now, frame))
            if frame["event"] == "start":
                self.stream_sid = frame["streamSid"]
                self._started.set()
            elif frame["event"] == "mark":
                self.mark_echoes[frame["mark"]["name"]] = now
            elif frame["event"] == "media" and self.speech_at is None:
                if base64.b64decode(frame["media"]["payload"]) != SILENCE:
                    self.speech_at = now
                    self.speech_seen.set()
            elif frame["event"] == "stop":
                break
        await ws.close()
        scope.cancel()

    _started = anyio.Event()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def send_answer(self, ws: ServerConnection, chunks: int, generation: int = 0) -> None:
        """Send ``chunks`` × 100 ms of audio, each followed by a mark, as fast as possible."""
        for seq in range(chunks):
            await ws.send(encode_twilio_media(self.stream_sid, b"\x10" * 800), text=True)
            name = f"{generation}:{seq}"
            self.mark_sent[name] = anyio.current_time()
            await ws.send(encode_twilio_mark(self.stream_sid, name), text=True)

    def events(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, f) for t, f in self.frames if f["event"] == kind]


async def run_peer(
    gateway: FakeGateway, steps: list[CallerStep], *, token: str | None = TOKEN
) -> PeerResult:
    gateway._started = anyio.Event()
    async with serve(gateway.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        peer = TwilioPeer(
            url=f"ws://127.0.0.1:{port}/twilio/media",
            public_url=PUBLIC_URL,
            auth_token=token,
            steps=steps,
            audio_for=audio_for,
            settings=PeerSettings(custom_parameters={"tenant": "acme"}),
        )
        with anyio.fail_after(20):
            return await peer.run()


async def test_greeting_plays_in_real_time_marks_echo_after_their_audio_and_frames_are_paced() -> (
    None
):
    async def greet(gw: FakeGateway, ws: ServerConnection) -> None:
        await gw.send_answer(ws, chunks=5)  # 500 ms, sent at once
        await anyio.sleep_forever()

    gateway = FakeGateway(greet)
    result = await run_peer(gateway, [WaitForAnswer(until="end"), Say(ms=300), Pause(ms=200)])

    assert result.error is None
    assert gateway.signature == compute_signature(TOKEN, PUBLIC_URL)
    # Twilio's opening: connected, start (with our parameters), then media.
    kinds = [f["event"] for _, f in gateway.frames]
    assert kinds[:2] == ["connected", "start"]
    start = gateway.frames[1][1]
    assert start["start"]["customParameters"] == {"tenant": "acme"}
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    assert kinds[-1] == "stop"
    # Numbers as strings, counting up without gaps.
    seqs = [f["sequenceNumber"] for _, f in gateway.frames if "sequenceNumber" in f]
    assert all(isinstance(s, str) for s in seqs)
    assert [int(s) for s in seqs] == list(range(1, len(seqs) + 1))
    media = gateway.events("media")
    chunks = [int(f["media"]["chunk"]) for _, f in media]
    assert chunks == list(range(1, len(media) + 1))
    assert [f["media"]["timestamp"] for _, f in media] == [str((c - 1) * 20) for c in chunks]
    assert all(len(base64.b64decode(f["media"]["payload"])) == 160 for _, f in media)
    # Real-time pacing: on average one frame per 20 ms (generous bounds).
    elapsed = media[-1][0] - media[0][0]
    mean_interval = elapsed / (len(media) - 1)
    assert 0.017 < mean_interval < 0.030, mean_interval
    # Each mark echoes once its audio has played: mark i after ~(i + 1) × 100 ms.
    sent0 = gateway.mark_sent["0:0"]
    for seq in range(5):
        delay = gateway.mark_echoes[f"0:{seq}"] - sent0
        assert (seq + 1) * 0.1 - 0.01 < delay < (seq + 1) * 0.1 + 0.25, (seq, delay)
    # The greeting was heard in full and the turn waited for it.
    assert result.answers[0].heard_bytes == 4000
    assert not result.answers[0].interrupted
    assert result.marks_echoed == 5
    assert result.marks_cleared == 0
    assert result.closed_by == "peer"
    assert result.close_code == 1000
    timeline = [e.kind for e in result.timeline]
    for kind in (
        "connect",
        "upgraded",
        "start sent",
        "first media received",
        "answer start",
        "answer end",
        "say",
        "speech end",
        "stop sent",
        "closed",
    ):
        assert kind in timeline, kind
    say_at = next(e.at_ms for e in result.timeline if e.kind == "say")
    greeting_end = next(e.at_ms for e in result.timeline if e.kind == "answer end")
    assert say_at >= greeting_end


async def test_clear_drops_the_buffer_and_echoes_every_pending_mark() -> None:
    async def answer_then_clear_on_speech(gw: FakeGateway, ws: ServerConnection) -> None:
        await gw.send_answer(ws, chunks=20)  # 2 s
        await gw.speech_seen.wait()
        await ws.send(encode_twilio_clear(gw.stream_sid), text=True)
        gw.mark_sent["clear"] = anyio.current_time()
        await anyio.sleep_forever()

    gateway = FakeGateway(answer_then_clear_on_speech)
    result = await run_peer(gateway, [BargeIn(at_ms=300, ms=200)], token=None)

    assert result.error is None
    assert gateway.signature is None
    assert len(gateway.mark_echoes) == 20  # every mark came back: played or cleared
    cleared_at = gateway.mark_sent["clear"]
    late = [name for name, at in gateway.mark_echoes.items() if at > cleared_at]
    assert late, "pending marks must be echoed after the clear"
    assert all(gateway.mark_echoes[name] - cleared_at < 0.5 for name in late)
    assert result.marks_cleared == len(late) or result.marks_cleared >= len(late) - 1
    answer = result.answers[0]
    assert answer.interrupted
    assert 0.25 * 8000 <= answer.heard_bytes <= 1.2 * 8000
    assert answer.heard_bytes + answer.cleared_bytes == 16000
    barge = result.barge_ins[0]
    assert barge.clear is not None
    assert 0 <= barge.clear - barge.signal < 1.0
    assert any(e.kind == "clear received" for e in result.timeline)


async def test_refused_upgrade_is_recorded_as_rejected() -> None:
    async def never(gw: FakeGateway, ws: ServerConnection) -> None:
        raise AssertionError("no call may start")

    gateway = FakeGateway(never)

    def refuse(connection: ServerConnection, request: object) -> Response:
        return connection.respond(403, "Forbidden\n")

    async with serve(gateway.handler, "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        peer = TwilioPeer(
            url=f"ws://127.0.0.1:{port}/twilio/media",
            public_url=PUBLIC_URL,
            auth_token=None,
            steps=[Say(ms=100)],
            audio_for=audio_for,
        )
        result = await peer.run()
    assert result.rejected_status == 403
    assert not result.connected
    assert [e.kind for e in result.timeline] == ["connect", "rejected"]
