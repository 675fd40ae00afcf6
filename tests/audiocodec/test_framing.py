"""Framing helpers and the streaming Framer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import audiocodec
from audiocodec import Framer, frame_bytes, join_frames, split_frames


def test_frame_constants() -> None:
    assert audiocodec.FRAME_MS == 20
    assert audiocodec.ULAW_FRAME_BYTES == frame_bytes(8000, 20, 1) == 160
    assert audiocodec.PCM8K_FRAME_BYTES == frame_bytes(8000) == 320
    assert audiocodec.PCM16K_FRAME_BYTES == frame_bytes(16000) == 640
    assert audiocodec.PCM24K_FRAME_BYTES == frame_bytes(24000) == 960


def test_frame_bytes_rejects_fractional_samples() -> None:
    with pytest.raises(ValueError, match="whole number"):
        frame_bytes(22050, 1)


def test_silence_and_duration() -> None:
    assert audiocodec.silence_ulaw(20) == b"\xff" * 160
    assert audiocodec.ulaw_decode(audiocodec.silence_ulaw(20)) == bytes(320)
    assert audiocodec.silence_pcm(16000, 20) == bytes(640)
    assert audiocodec.duration_ms(640, 16000) == 20.0
    assert audiocodec.duration_ms(160, 8000, 1) == 20.0


def test_split_frames_remainder() -> None:
    frames, rest = split_frames(bytes(range(10)), 4)
    assert frames == [bytes([0, 1, 2, 3]), bytes([4, 5, 6, 7])]
    assert rest == bytes([8, 9])


def test_framer_cuts_exact_frames_and_pads_with_fill() -> None:
    framer = Framer(160, fill=audiocodec.ULAW_SILENCE)
    assert framer.feed(b"\x01" * 100) == []
    assert framer.pending == 100
    frames = framer.feed(b"\x02" * 300)
    assert frames == [b"\x01" * 100 + b"\x02" * 60, b"\x02" * 160]
    assert framer.pending == 80
    assert framer.flush(pad=True) == b"\x02" * 80 + b"\xff" * 80
    assert framer.pending == 0
    assert framer.flush(pad=True) == b""


def test_framer_whole_frame_fast_path() -> None:
    framer = Framer(160)
    frame = bytes(160)
    assert framer.feed(frame) == [frame]
    assert framer.flush() == b""


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 400))
def test_join_split_is_identity(data: bytes, size: int) -> None:
    frames, rest = split_frames(data, size)
    assert all(len(f) == size for f in frames)
    assert len(rest) < size
    assert join_frames([*frames, rest]) == data


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=500), max_size=20), st.integers(1, 400))
def test_framer_equals_split_of_the_whole(chunks: list[bytes], size: int) -> None:
    framer = Framer(size)
    frames = [frame for chunk in chunks for frame in framer.feed(chunk)]
    rest = framer.flush()
    assert (frames, rest) == split_frames(b"".join(chunks), size)
