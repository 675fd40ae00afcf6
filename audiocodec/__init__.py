"""G.711 μ-law, streaming resampling, framing, voice activity detection, test signals, WAV.

Synchronous, sans-I/O, numpy (+ audioop) only: nothing here awaits, imports anyio or imports
the ``actors`` package. Audio travels as ``bytes`` of PCM16 little-endian mono or μ-law.
"""

from __future__ import annotations

from audiocodec.framing import (
    FRAME_MS,
    PCM8K_FRAME_BYTES,
    PCM16K_FRAME_BYTES,
    PCM24K_FRAME_BYTES,
    ULAW_FRAME_BYTES,
    ULAW_RATE,
    Framer,
    duration_ms,
    frame_bytes,
    join_frames,
    silence_pcm,
    silence_ulaw,
    split_frames,
)
from audiocodec.g711 import (
    ULAW_SILENCE,
    has_audioop,
    ulaw_decode,
    ulaw_decode_lut,
    ulaw_encode,
    ulaw_encode_lut,
)
from audiocodec.resample import CLIP_MAX_FACTOR, SUPPORTED_RATES, Resampler, resample_clip
from audiocodec.synth import speech_like, tone
from audiocodec.vad import EnergyVad, SpeechEnd, SpeechStart, VadEvent
from audiocodec.wav import AudioFormatError, encode_wav, read_wav, read_wav_mono, write_wav

__all__ = [
    "CLIP_MAX_FACTOR",
    "FRAME_MS",
    "PCM8K_FRAME_BYTES",
    "PCM16K_FRAME_BYTES",
    "PCM24K_FRAME_BYTES",
    "SUPPORTED_RATES",
    "ULAW_FRAME_BYTES",
    "ULAW_RATE",
    "ULAW_SILENCE",
    "AudioFormatError",
    "EnergyVad",
    "Framer",
    "Resampler",
    "SpeechEnd",
    "SpeechStart",
    "VadEvent",
    "duration_ms",
    "encode_wav",
    "frame_bytes",
    "has_audioop",
    "join_frames",
    "read_wav",
    "read_wav_mono",
    "resample_clip",
    "silence_pcm",
    "silence_ulaw",
    "speech_like",
    "split_frames",
    "tone",
    "ulaw_decode",
    "ulaw_decode_lut",
    "ulaw_encode",
    "ulaw_encode_lut",
    "write_wav",
]
