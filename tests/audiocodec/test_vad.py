"""EnergyVad behaviour: silence, noise, onset bound, release, hysteresis, clicks, chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiocodec import EnergyVad, SpeechEnd, SpeechStart, VadEvent, speech_like, tone
from audiocodec.vad import window_levels, window_levels_exact

RATE = 8000


def _noise(ms: int, rms_dbfs: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(RATE * ms // 1000) * 32768 * 10 ** (rms_dbfs / 20)
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def _feed(vad: EnergyVad, pcm: bytes, chunk: int = 320) -> list[VadEvent]:
    events: list[VadEvent] = []
    for i in range(0, len(pcm), chunk):
        events.extend(vad.process(pcm[i : i + chunk]))
    return events


def test_silence_and_low_noise_never_trigger() -> None:
    vad = EnergyVad(RATE)
    assert _feed(vad, bytes(RATE * 2 * 3)) == []
    assert _feed(vad, _noise(5000, -50.0)) == []
    assert not vad.speaking


def test_tone_triggers_within_onset_plus_one_window() -> None:
    vad = EnergyVad(RATE, onset_ms=60)
    events = _feed(vad, bytes(RATE * 2 // 2) + tone(RATE, 440.0, 500, -20.0))
    assert isinstance(events[0], SpeechStart)
    assert 500.0 < events[0].at_ms <= 500.0 + 60.0 + 10.0
    assert events[0].began_ms == pytest.approx(500.0, abs=10.0)
    assert vad.speaking


def test_speech_like_triggers_within_onset_plus_one_window() -> None:
    vad = EnergyVad(RATE)
    events = _feed(vad, bytes(RATE * 2 // 5) + speech_like(RATE, 2000, seed=3))
    start = events[0]
    assert isinstance(start, SpeechStart)
    assert start.at_ms <= 200.0 + 60.0 + 10.0 + 20.0  # + the syllable's attack ramp


def test_release_after_release_ms_of_silence() -> None:
    vad = EnergyVad(RATE, release_ms=400)
    events = _feed(vad, tone(RATE, 440.0, 300, -20.0) + bytes(RATE * 2))
    assert [type(e).__name__ for e in events] == ["SpeechStart", "SpeechEnd"]
    end = events[1]
    assert isinstance(end, SpeechEnd)
    assert end.ended_ms == pytest.approx(300.0, abs=10.0)
    assert 300.0 + 400.0 <= end.at_ms <= 300.0 + 400.0 + 10.0
    assert not vad.speaking


def test_level_hovering_around_threshold_does_not_chatter() -> None:
    # Alternate 100 ms at -37 and -43 dBFS RMS around a -40 dBFS threshold (6 dB hysteresis).
    vad = EnergyVad(RATE, threshold_dbfs=-40.0, hysteresis_db=6.0, adaptive=False)
    parts = [_noise(100, -37.0 if i % 2 == 0 else -43.0, seed=i) for i in range(40)]
    events = _feed(vad, b"".join(parts))
    assert [type(e).__name__ for e in events] == ["SpeechStart"]


def test_short_click_does_not_trigger() -> None:
    vad = EnergyVad(RATE, onset_ms=60)
    # 40 ms loud burst, deliberately not aligned to the 10 ms windows.
    pcm = bytes(2 * 45) + tone(RATE, 1000.0, 40, -3.0) + bytes(RATE * 2)
    assert _feed(vad, pcm) == []


def test_chunk_size_does_not_change_events() -> None:
    pcm = bytes(3000) + speech_like(RATE, 3000, seed=5) + bytes(RATE)
    reference = _feed(EnergyVad(RATE), pcm, len(pcm))
    assert reference
    for chunk in (2, 38, 160, 320, 1000):
        assert _feed(EnergyVad(RATE), pcm, chunk) == reference


def test_now_ms_anchors_event_times() -> None:
    vad = EnergyVad(RATE)
    events = vad.process(tone(RATE, 440.0, 100, -20.0), now_ms=10_000.0)
    assert isinstance(events[0], SpeechStart)
    assert events[0].began_ms == 10_000.0
    assert events[0].at_ms == 10_060.0


def test_adaptive_floor_releases_and_ignores_steady_noise() -> None:
    # A steady hum (-38 dBFS RMS) starts "speech" while the floor is unknown; once the noise
    # window (2 s) has seen it, the floor rises to it, speech is released, and it stays released.
    vad = EnergyVad(RATE, adaptive=True)
    events = _feed(vad, tone(RATE, 120.0, 10_000, -35.0))
    assert [type(e).__name__ for e in events] == ["SpeechStart", "SpeechEnd"]
    assert events[1].at_ms <= 2000.0 + 400.0 + 250.0 + 10.0
    assert vad.noise_floor_dbfs == pytest.approx(-38.0, abs=1.5)  # 120 Hz in 10 ms windows
    # Speech (with its pauses) on top of the hum, 20 dB louder, still triggers.
    hum = np.frombuffer(tone(RATE, 120.0, 2000, -35.0), dtype="<i2").astype(np.int32)
    voice = np.frombuffer(speech_like(RATE, 2000, seed=2), dtype="<i2").astype(np.int32)
    mixed = np.clip(hum + voice, -32768, 32767).astype("<i2").tobytes()
    assert any(isinstance(e, SpeechStart) for e in _feed(vad, mixed))


def test_non_adaptive_floor_is_fixed() -> None:
    vad = EnergyVad(RATE, adaptive=False)
    _feed(vad, tone(RATE, 120.0, 3000, -35.0))
    assert vad.speaking
    assert vad.start_threshold_dbfs == -40.0


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        EnergyVad(RATE, window_ms=15)
    with pytest.raises(ValueError, match="even length"):
        EnergyVad(RATE).process(b"\x00")


def test_active_from_the_first_loud_window_until_release() -> None:
    vad = EnergyVad(RATE, onset_ms=60, release_ms=400)
    _feed(vad, bytes(RATE * 2 // 2), chunk=160)  # 500 ms of silence
    assert not vad.active
    vad.process(tone(RATE, 440.0, 10, -20.0))  # one loud window: an onset run, not speech yet
    assert vad.active
    assert not vad.speaking
    _feed(vad, tone(RATE, 440.0, 200, -20.0), chunk=160)
    assert vad.active
    assert vad.speaking
    _feed(vad, bytes(RATE * 2 * 300 // 1000), chunk=160)  # inside the release time
    assert vad.active
    _feed(vad, bytes(RATE * 2 * 200 // 1000), chunk=160)  # released
    assert not vad.active


def test_a_click_is_active_only_while_it_lasts() -> None:
    vad = EnergyVad(RATE, onset_ms=60)
    vad.process(tone(RATE, 440.0, 20, -20.0))
    assert vad.active
    vad.process(bytes(RATE * 2 * 20 // 1000))
    assert not vad.active


@settings(max_examples=300)
@given(
    pcm=st.binary(min_size=0, max_size=1200).map(lambda b: b[: len(b) - len(b) % 2]),
    window=st.sampled_from([80, 160]),
)
def test_window_levels_match_the_exact_computation(pcm: bytes, window: int) -> None:
    # audioop.rms truncates the RMS to a whole sample value: the level may be low by at most
    # 20*log10((r+1)/r) dB for RMS r, and a window of RMS 0 (true RMS < 1) reads -120 dBFS.
    fast = window_levels(pcm, window)
    exact = window_levels_exact(pcm, window)
    assert len(fast) == len(exact) == len(pcm) // (2 * window)
    for got, want in zip(fast, exact, strict=True):
        if got == -120.0:
            assert want < 20 * math.log10(1 / 32768) + 1e-9
            continue
        rms = round(32768 * 10 ** (got / 20))
        assert want - 20 * math.log10((rms + 1) / rms) - 1e-9 <= got <= want + 1e-9


def test_levels_near_the_threshold_are_within_a_tenth_of_a_db() -> None:
    for dbfs in (-45.0, -40.0, -30.0, -20.0):
        pcm = _noise(200, dbfs, seed=3)
        for got, want in zip(window_levels(pcm, 80), window_levels_exact(pcm, 80), strict=True):
            assert got == pytest.approx(want, abs=0.1)


def test_chunking_does_not_change_the_levels() -> None:
    pcm = _noise(500, -35.0, seed=4)
    whole = EnergyVad(RATE)
    whole.process(pcm)
    pieces = EnergyVad(RATE)
    for size in (2, 158, 320, 14, 1000):
        pieces.reset()
        for i in range(0, len(pcm), size):
            pieces.process(pcm[i : i + size])
        assert pieces.level_dbfs == whole.level_dbfs
        assert pieces.noise_floor_dbfs == whole.noise_floor_dbfs
