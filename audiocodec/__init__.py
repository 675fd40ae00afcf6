"""G.711 μ-law, streaming resampling, framing and voice activity detection.

Synchronous, sans-I/O, numpy only: nothing here awaits or imports anyio.
"""

from __future__ import annotations

from audiocodec.g711 import (
    ULAW_SILENCE,
    has_audioop,
    ulaw_decode,
    ulaw_decode_lut,
    ulaw_encode,
    ulaw_encode_lut,
)
from audiocodec.resample import SUPPORTED_RATES, Resampler

__all__ = [
    "SUPPORTED_RATES",
    "ULAW_SILENCE",
    "Resampler",
    "has_audioop",
    "ulaw_decode",
    "ulaw_decode_lut",
    "ulaw_encode",
    "ulaw_encode_lut",
]
