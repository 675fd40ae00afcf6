"""Caller audio for replays: 8 kHz μ-law from files or generated speech-like sound.

Rules: synchronous, numpy only, no I/O except reading the named file. Files are raw μ-law
(``.ulaw``, exactly what Twilio streams) or PCM16 mono 8 kHz WAV (converted with
:func:`audiocodec.ulaw_encode`). Generated audio is deterministic for a seed: voiced "syllables"
(a 100-180 Hz glottal pulse train through three formant-like resonances, 120-260 ms, with short
gaps) so energy-based VAD and the model's end-of-speech logic see something speech-shaped.
"""

from __future__ import annotations

import wave
from typing import TYPE_CHECKING, Final

import numpy as np

from audiocodec import ulaw_encode

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FRAME_BYTES", "SAMPLE_RATE", "load_caller_audio", "speech_like_ulaw"]

SAMPLE_RATE: Final = 8000
FRAME_BYTES: Final = 160  # 20 ms of 8 kHz μ-law


def load_caller_audio(path: Path) -> bytes:
    """Read a caller clip as raw 8 kHz μ-law bytes.

    Raises:
        ValueError: a WAV file that is not 8 kHz mono PCM16, or an unknown extension.
        OSError: the file cannot be read.
    """
    suffix = path.suffix.lower()
    if suffix in {".ulaw", ".mulaw", ".ul"}:
        return path.read_bytes()
    if suffix == ".wav":
        with wave.open(str(path), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise ValueError(f"{path}: WAV must be 8000 Hz mono 16-bit PCM")
            return ulaw_encode(wav.readframes(wav.getnframes()))
    raise ValueError(f"{path}: caller audio must be .ulaw (raw μ-law) or .wav")


def speech_like_ulaw(ms: int, seed: int) -> bytes:
    """Return ``ms`` milliseconds of deterministic speech-like audio as 8 kHz μ-law."""
    rng = np.random.default_rng(seed)
    total = SAMPLE_RATE * ms // 1000
    out = np.zeros(total, dtype=np.float64)
    pos = 0
    while pos < total:
        syllable = int(SAMPLE_RATE * rng.uniform(0.12, 0.26))
        end = min(total, pos + syllable)
        n = end - pos
        t = np.arange(n) / SAMPLE_RATE
        pitch = rng.uniform(100.0, 180.0) * (1.0 + 0.08 * np.sin(2 * np.pi * 3.0 * t))
        phase = np.cumsum(pitch) / SAMPLE_RATE
        voice = np.zeros(n)
        for formant, gain in (
            (rng.uniform(300, 800), 1.0),
            (rng.uniform(900, 2200), 0.5),
            (2600.0, 0.25),
        ):
            harmonic = np.maximum(1, np.round(formant / pitch))
            voice += gain * np.sin(2 * np.pi * harmonic * phase)
        envelope = np.sin(np.pi * np.arange(n) / max(1, n)) ** 0.6
        out[pos:end] = voice * envelope * rng.uniform(0.5, 1.0)
        pos = end + int(SAMPLE_RATE * rng.uniform(0.02, 0.07))  # short inter-syllable gap
    peak = float(np.max(np.abs(out))) if total else 0.0
    pcm = (out / peak * 9000.0) if peak > 0 else out
    return ulaw_encode(pcm.astype("<i2").tobytes())
