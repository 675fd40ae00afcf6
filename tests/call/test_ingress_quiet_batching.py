"""TwilioIngress holds quiet caller audio back in batches, sends sound at once, and loses none."""

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
from audiocodec import Resampler, tone, ulaw_decode, ulaw_encode

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


class PacedSocket(ScriptedSocket):
    """Waits ``gap_s`` of real time before the frame at index ``before``."""

    def __init__(self, frames: list[bytes], *, before: int, gap_s: float) -> None:
        super().__init__(frames)
        self._count = 0
        self._before = before
        self._gap_s = gap_s

    async def receive(self) -> bytes:
        if self._count == self._before:
            await anyio.sleep(self._gap_s)
        self._count += 1
        return await super().receive()


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


QUIET = b"\xff" * 160  # μ-law digital silence, 20 ms
LOUD = ulaw_encode(tone(8000, 440.0, 20, dbfs=-12.0))


def mark(seq: int) -> bytes:
    return msgspec.json.encode(
        {"event": "mark", "sequenceNumber": str(seq), "streamSid": SID, "mark": {"name": "m"}}
    )


def ingress_for(
    frames: list[bytes | None],
    audio: Mailbox[CallerAudio],
    quiet_batch_ms: int,
    speech_batch_ms: int = 20,
    *,
    gap_before: int = -1,
    gap_s: float = 0.0,
) -> TwilioIngress:
    """An ingress reading ``frames`` as media payloads (None: a mark echo) in order, waiting
    ``gap_s`` of real time before the frame at index ``gap_before``."""
    messages = [mark(3 + i) if f is None else media(3 + i, f) for i, f in enumerate(frames)]
    return TwilioIngress(
        socket=PacedSocket(messages, before=gap_before, gap_s=gap_s),
        identity=CallIdentity(
            call_sid="CA1", stream_sid=SID, account_sid="AC1", start_sequence_number=2
        ),
        input_rate=16000,
        quiet_batch_ms=quiet_batch_ms,
        speech_batch_ms=speech_batch_ms,
        sonic_audio=audio,
        sonic_control=Mailbox("sonic.control", 16, Overflow.BLOCK),
        turn_control=Mailbox("turn.control", 64, Overflow.BLOCK),
        playback_control=Mailbox("playback.control", 64, Overflow.BLOCK),
        journal=CallJournal(started_at=0.0),
    )


async def released(
    frames: list[bytes | None], quiet_batch_ms: int, speech_batch_ms: int = 20
) -> list[CallerAudio]:
    audio: Mailbox[CallerAudio] = Mailbox("sonic.audio", 256, Overflow.DROP_OLDEST)
    await ingress_for(frames, audio, quiet_batch_ms, speech_batch_ms).run()
    out = []
    while True:
        try:
            out.append(audio.receive_nowait())
        except anyio.WouldBlock:
            return out


def frames_of(msg: CallerAudio) -> float:
    return len(msg.pcm) / 640  # 20 ms at 16 kHz, PCM16


@pytest.mark.parametrize("quiet_batch_ms", [20, 40, 60])
async def test_quiet_audio_goes_in_whole_batches_equal_to_one_resampled_stream(
    quiet_batch_ms: int,
) -> None:
    frames = [QUIET] * 13
    batches = await released(frames, quiet_batch_ms)
    per_batch = quiet_batch_ms // 20
    # Only whole batches go out (the rest waits for more audio).
    assert len(batches) == len(frames) // per_batch
    assert all(b.rate == 16000 for b in batches)
    whole = Resampler(8000, 16000).process(
        b"".join(ulaw_decode(p) for p in frames[: len(batches) * per_batch])
    )
    assert b"".join(b.pcm for b in batches) == whole


async def test_sound_releases_what_is_held_and_then_goes_frame_by_frame() -> None:
    frames = [QUIET] * 5 + [LOUD] * 6
    batches = await released(frames, 60)
    # Quiet frames 1-3 as one batch; 4-5 held until the first loud frame releases them with it;
    # then every loud frame on its own, as it arrives.
    # (round(): the resampler's look-ahead keeps ~2.5 ms of the first batch back.)
    sizes = [round(frames_of(b)) for b in batches]
    assert sizes == [3, 3, 1, 1, 1, 1, 1]
    whole = Resampler(8000, 16000).process(b"".join(ulaw_decode(p) for p in frames))
    assert b"".join(b.pcm for b in batches) == whole


async def test_payloads_of_any_content_lose_nothing() -> None:
    payloads = [bytes([(i * 37 + j) % 256 for j in range(160)]) for i in range(13)]
    batches = await released(payloads, 60)
    whole = Resampler(8000, 16000).process(b"".join(ulaw_decode(p) for p in payloads))
    held = len(whole) - sum(len(b.pcm) for b in batches)
    assert b"".join(b.pcm for b in batches) == whole[: len(whole) - held]
    assert held < 3 * 640  # at most one quiet batch is still waiting


async def test_the_silence_that_ends_a_callers_turn_is_never_held() -> None:
    # Sound, then quiet: the model's end-of-turn pause runs on this quiet, so it goes frame by
    # frame (the test's clock does not reach the guard that would allow holding it).
    frames: list[bytes | None] = [LOUD] * 6 + [QUIET] * 30
    batches = await released(frames, 60)
    assert [round(frames_of(b)) for b in batches] == [1] * 36


async def test_quiet_while_the_assistant_plays_is_held() -> None:
    # A mark echo says the assistant's audio is playing: the caller's turn is over, and the
    # quiet after the caller's sound (once the VAD released it) goes three frames at a time.
    frames: list[bytes | None] = [LOUD] * 6 + [None] + [QUIET] * 30
    batches = await released(frames, 60)
    sizes = [round(frames_of(b)) for b in batches]
    singles = sizes.index(3)
    # Frame by frame until the VAD's 400 ms release (20 frames) ends the sound, then batches.
    assert 6 + 18 <= singles <= 6 + 20
    assert sizes == [1] * singles + [3] * ((36 - singles) // 3)
    audio = [f for f in frames if f is not None]
    whole = Resampler(8000, 16000).process(b"".join(ulaw_decode(f) for f in audio))
    assert b"".join(b.pcm for b in batches) == whole[: len(b"".join(b.pcm for b in batches))]


def resampled(frames: list[bytes | None]) -> bytes:
    audio = [f for f in frames if f is not None]
    return Resampler(8000, 16000).process(b"".join(ulaw_decode(f) for f in audio))


async def test_speech_in_the_callers_own_turn_goes_two_frames_at_a_time() -> None:
    frames: list[bytes | None] = [QUIET] * 5 + [LOUD] * 7
    batches = await released(frames, 60, speech_batch_ms=40)
    # Quiet 1-3 as a batch; the onset goes at once with quiet 4-5; then the speech in pairs.
    assert [round(frames_of(b)) for b in batches] == [3, 3, 2, 2, 2]
    assert b"".join(b.pcm for b in batches) == resampled(frames)


async def test_speech_over_an_answer_goes_frame_by_frame() -> None:
    # A mark echo: an answer is playing, so every loud frame may be a barge-in.
    frames: list[bytes | None] = [None] + [LOUD] * 6
    batches = await released(frames, 60, speech_batch_ms=40)
    assert [round(frames_of(b)) for b in batches] == [1] * 6


async def test_the_quiet_after_speech_releases_the_held_frame_at_once() -> None:
    frames: list[bytes | None] = [LOUD] * 4 + [QUIET] * 30
    batches = await released(frames, 60, speech_batch_ms=40)
    sizes = [round(frames_of(b)) for b in batches]
    # Onset alone, then pairs while the VAD still counts the sound (its 400 ms release), then
    # the end-of-turn quiet frame by frame: nothing is left waiting.
    assert sizes[0] == 1
    assert max(sizes) == 2
    assert sizes[-10:] == [1] * 10
    assert b"".join(b.pcm for b in batches) == resampled(frames)


async def test_quiet_after_the_answer_ended_is_held_until_the_caller_makes_a_sound() -> None:
    # Sound, silence until the VAD releases it, a mark (the answer), then quiet long after the
    # last mark echo: the assistant spoke last, so no turn of the caller's is waiting to end.
    frames: list[bytes | None] = [LOUD] * 6 + [QUIET] * 24 + [None] + [QUIET] * 9 + [LOUD]
    audio: Mailbox[CallerAudio] = Mailbox("sonic.audio", 256, Overflow.DROP_OLDEST)
    # More than the 0.5 s playing window passes after the mark echo.
    await ingress_for(frames, audio, 60, gap_before=31, gap_s=0.6).run()
    batches = []
    while True:
        try:
            batches.append(audio.receive_nowait())
        except anyio.WouldBlock:
            break
    sizes = [round(frames_of(b)) for b in batches]
    assert sizes[-4:] == [3, 3, 3, 1]  # the quiet in threes, then the sound at once
    assert b"".join(b.pcm for b in batches) == resampled(frames)
