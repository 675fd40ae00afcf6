"""TwilioIngress gathers caller audio into Sonic's batch size before resampling, and loses none."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from actors.call.ports import CallIdentity
from actors.call.report import CallJournal
from actors.call.twilio_ingress import TwilioIngress
from actors.errors import BrokenByPeer
from actors.runtime import Mailbox, Overflow
from audiocodec import Resampler, ulaw_decode

if TYPE_CHECKING:
    from actors.call.protocol import CallerAudio

pytestmark = pytest.mark.anyio

SID = "MZ00000000000000000000000000000001"


class ScriptedSocket:
    """Hands out the given frames, then reports the peer gone."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = list(frames)

    async def receive(self) -> bytes:
        if not self._frames:
            raise BrokenByPeer("script ended")
        await anyio.lowlevel.checkpoint()
        return self._frames.pop(0)

    async def send(self, data: bytes) -> None:
        raise AssertionError("the ingress never sends")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def media(seq: int, payload: bytes) -> bytes:
    return msgspec.json.encode(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": SID,
            "media": {
                "track": "inbound",
                "chunk": str(seq - 2),
                "timestamp": str((seq - 3) * 20),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


@pytest.mark.parametrize("batch_ms", [20, 40, 60])
async def test_caller_audio_arrives_in_batches_equal_to_one_resampled_stream(batch_ms: int) -> None:
    payloads = [bytes([(i * 37 + j) % 256 for j in range(160)]) for i in range(13)]
    audio: Mailbox[CallerAudio] = Mailbox("sonic.audio", 64, Overflow.DROP_OLDEST)
    ingress = TwilioIngress(
        socket=ScriptedSocket([media(3 + i, p) for i, p in enumerate(payloads)]),
        identity=CallIdentity(
            call_sid="CA1", stream_sid=SID, account_sid="AC1", start_sequence_number=2
        ),
        input_rate=16000,
        batch_ms=batch_ms,
        sonic_audio=audio,
        sonic_control=Mailbox("sonic.control", 16, Overflow.BLOCK),
        turn_control=Mailbox("turn.control", 64, Overflow.BLOCK),
        playback_control=Mailbox("playback.control", 64, Overflow.BLOCK),
        journal=CallJournal(started_at=0.0),
    )
    await ingress.run()
    batches = []
    while True:
        try:
            batches.append(audio.receive_nowait())
        except anyio.WouldBlock:
            break
    frames_per_batch = batch_ms // 20
    # Only whole batches go out (the last partial batch waits for more audio).
    assert len(batches) == len(payloads) // frames_per_batch
    assert all(b.rate == 16000 for b in batches)
    # Batching changes the message boundaries, never the audio: one resampler over the whole stream.
    whole = Resampler(8000, 16000).process(
        b"".join(ulaw_decode(p) for p in payloads[: len(batches) * frames_per_batch])
    )
    assert b"".join(b.pcm for b in batches) == whole
