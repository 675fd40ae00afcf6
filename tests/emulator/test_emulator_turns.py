"""TurnDetector: speech onset and end of turn, in audio time."""

from __future__ import annotations

import numpy as np
import pytest

from audiocodec import speech_like
from gateway.emulator.turns import SpeechOnset, TurnDetector, TurnEnded


def noise(rate: int, ms: int, amplitude: float = 4000.0) -> bytes:
    rng = np.random.default_rng(7)
    return (rng.standard_normal(rate * ms // 1000) * amplitude).astype("<i2").tobytes()


def silence(rate: int, ms: int) -> bytes:
    return bytes(2 * (rate * ms // 1000))


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_speech_then_silence_is_one_turn(rate: int) -> None:
    detector = TurnDetector(rate, end_of_turn_silence_ms=600)
    events = detector.feed(silence(rate, 200) + noise(rate, 500))
    assert events == [SpeechOnset(audio_ms=200.0)]
    assert detector.feed(silence(rate, 580)) == []
    events = detector.feed(silence(rate, 40))
    assert len(events) == 1
    assert isinstance(events[0], TurnEnded)
    assert events[0].audio_ms == pytest.approx(1300.0)
    assert events[0].speech_ms == pytest.approx(500.0)
    assert not detector.in_speech


def test_tiny_chunks_give_the_same_events_as_one_big_chunk() -> None:
    audio = silence(16000, 100) + noise(16000, 300) + silence(16000, 700)
    whole = TurnDetector(16000).feed(audio)
    detector = TurnDetector(16000)
    pieces = [e for i in range(0, len(audio), 34) for e in detector.feed(audio[i : i + 34])]
    assert pieces == whole
    assert [type(e) for e in whole] == [SpeechOnset, TurnEnded]


def test_blocks_give_the_same_events_at_the_same_audio_times() -> None:
    audio = silence(16000, 100) + noise(16000, 300) + silence(16000, 700) + noise(16000, 200)
    whole = TurnDetector(16000).feed(audio)
    blocked = TurnDetector(16000, block_ms=100)
    out: list[object] = []
    fed_ms: list[int] = []
    for i in range(0, len(audio), 640):  # 20 ms events
        events = blocked.feed(audio[i : i + 640])
        out.extend(events)
        fed_ms.extend([(i + 640) // 32] * len(events))
    assert out == whole
    assert all(ms % 100 == 0 for ms in fed_ms)  # decided only at block ends
    assert blocked.samples_received == len(audio) // 2


def test_short_clicks_and_quiet_noise_are_not_speech() -> None:
    detector = TurnDetector(16000, onset_ms=60)
    assert detector.feed(noise(16000, 40) + silence(16000, 1000)) == []
    assert detector.feed(noise(16000, 500, amplitude=50.0)) == []


def test_the_persona_audio_counts_as_speech() -> None:
    detector = TurnDetector(24000)
    events = detector.feed(speech_like(24000, 500, seed=1) + silence(24000, 700))
    assert [type(e) for e in events] == [SpeechOnset, TurnEnded]


def test_pauses_shorter_than_the_silence_keep_the_turn() -> None:
    detector = TurnDetector(8000, end_of_turn_silence_ms=300)
    events = detector.feed(
        noise(8000, 200) + silence(8000, 200) + noise(8000, 200) + silence(8000, 320)
    )
    assert [type(e) for e in events] == [SpeechOnset, TurnEnded]
