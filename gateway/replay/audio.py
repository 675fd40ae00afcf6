"""Caller audio for replays: 8 kHz μ-law from files or generated speech-like sound.

Rules: synchronous, numpy only, no I/O except reading the named file. Files are raw μ-law
(``.ulaw``, exactly what Twilio streams) or PCM16 mono 8 kHz WAV (converted with
:func:`audiocodec.ulaw_encode`). Generated audio is :func:`audiocodec.speech_like`,
deterministic for a seed, so energy-based VAD and the model's end-of-speech logic see something
speech-shaped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from audiocodec import read_wav, speech_like, ulaw_encode

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
        pcm, rate = read_wav(path)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path}: WAV must be 8000 Hz 16-bit PCM (got {rate} Hz)")
        return ulaw_encode(pcm)
    raise ValueError(f"{path}: caller audio must be .ulaw (raw μ-law) or .wav")


def speech_like_ulaw(ms: int, seed: int) -> bytes:
    """Return ``ms`` milliseconds of deterministic speech-like audio as 8 kHz μ-law.

    The signal is :func:`audiocodec.speech_like` (the same generator the emulator speaks with),
    so the gateway's VAD and the emulator's turn detection hear what they were tuned on.
    """
    return ulaw_encode(speech_like(SAMPLE_RATE, ms, seed))
