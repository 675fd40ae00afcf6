"""Test signals (tone, speech_like) and WAV reading/writing."""

from __future__ import annotations

import io
import wave
from typing import TYPE_CHECKING

import numpy as np
import pytest

from audiocodec import AudioFormatError, encode_wav, read_wav, speech_like, tone, write_wav

if TYPE_CHECKING:
    from pathlib import Path


def _samples(pcm: bytes) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def test_tone_level_and_length() -> None:
    x = _samples(tone(8000, 1000.0, 100, -6.0))
    assert len(x) == 800
    assert np.max(np.abs(x)) == pytest.approx(32767 * 10 ** (-6 / 20), abs=1.0)


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_speech_like_is_deterministic_and_about_minus_20_dbfs(rate: int) -> None:
    pcm = speech_like(rate, 3000, seed=7)
    assert pcm == speech_like(rate, 3000, seed=7)
    assert pcm != speech_like(rate, 3000, seed=8)
    x = _samples(pcm)
    assert len(x) == rate * 3
    rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)) / 32768)
    assert rms_db == pytest.approx(-20.0, abs=0.5)
    assert np.max(np.abs(x)) < 32767  # no clipping


def test_speech_like_has_syllables_pauses_and_a_band_limited_spectrum() -> None:
    rate = 16000
    x = _samples(speech_like(rate, 4000, seed=1))
    levels = 10 * np.log10(np.mean(x.reshape(-1, 160) ** 2, axis=1) + 1e-9)
    # Syllable-rate modulation: loud and quiet 10 ms windows both occur, with deep dips.
    assert np.percentile(levels, 90) - np.percentile(levels, 10) > 20.0
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    in_band = spectrum[(freqs >= 100) & (freqs <= 3400)].sum()
    assert in_band / spectrum.sum() > 0.95
    # Syllable envelope peaks near 4 Hz.
    envelope = np.abs(np.fft.rfft(levels - levels.mean()))
    env_freqs = np.fft.rfftfreq(len(levels), 0.01)
    peak = env_freqs[1:][np.argmax(envelope[1:])]
    assert 1.0 <= peak <= 8.0


def test_speech_like_empty() -> None:
    assert speech_like(8000, 0) == b""


def test_wav_round_trip(tmp_path: Path) -> None:
    pcm = speech_like(16000, 200, seed=2)
    path = tmp_path / "speech.wav"
    write_wav(path, pcm, 16000)
    assert read_wav(path) == (pcm, 16000)
    assert read_wav(encode_wav(pcm, 8000)) == (pcm, 8000)


def test_wav_stereo_is_mixed_to_mono() -> None:
    left = np.array([100, -100, 32767], dtype="<i2")
    right = np.array([300, -301, 32767], dtype="<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(np.stack([left, right], axis=1).tobytes())
    pcm, rate = read_wav(buffer.getvalue())
    assert rate == 8000
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [200, -201, 32767]


def test_wav_rejects_other_formats() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(8000)
        writer.writeframes(bytes(10))
    with pytest.raises(AudioFormatError, match="16-bit"):
        read_wav(buffer.getvalue())
    with pytest.raises(AudioFormatError, match="WAV"):
        read_wav(b"not a wav file at all")
    assert issubclass(AudioFormatError, ValueError)
