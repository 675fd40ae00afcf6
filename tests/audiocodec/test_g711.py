"""G.711 μ-law: both implementations against an independent scalar reference, plus properties.

The reference below is written out from Sun Microsystems' public-domain ``g711.c`` (the code the
ITU-T G.711 tables come from and that CPython's ``audioop`` uses): one sample at a time, with the
classic bias 0x84 and a segment search, sharing nothing with the numpy tables under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import audiocodec
from audiocodec.g711 import ulaw_decode_lut, ulaw_encode_lut

_BIAS = 0x84  # 132: added to the 16-bit magnitude (33 in 14-bit units)
_CLIP = 8159  # largest 14-bit magnitude before the bias
_SEG_END_14 = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def ref_ulaw_encode_sample(sample: int) -> int:
    """G.711 μ-law code of one signed 16-bit sample (14-bit magnitude, as g711.c / audioop)."""
    value = sample >> 2  # keep the top 14 bits; Python's >> floors like C's arithmetic shift
    if value < 0:
        value = -value
        mask = 0x7F
    else:
        mask = 0xFF
    value = min(value, _CLIP) + (_BIAS >> 2)
    segment = 0
    while segment < 8 and value > _SEG_END_14[segment]:
        segment += 1
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def ref_ulaw_decode_code(code: int) -> int:
    """Signed 16-bit sample of one μ-law code."""
    code = ~code & 0xFF
    t = ((code & 0x0F) << 3) + _BIAS
    t <<= (code & 0x70) >> 4
    return _BIAS - t if code & 0x80 else t - _BIAS


ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()
REF_DECODED = np.array([ref_ulaw_decode_code(c) for c in range(256)], dtype="<i2").tobytes()
REF_ENCODED = bytes(ref_ulaw_encode_sample(s) for s in range(-32768, 32768))


def test_reference_spot_values() -> None:
    # Anchors from the G.711 table, so the reference itself is pinned down.
    assert ref_ulaw_decode_code(0xFF) == 0
    assert ref_ulaw_decode_code(0x7F) == 0
    assert ref_ulaw_decode_code(0x80) == 32124
    assert ref_ulaw_decode_code(0x00) == -32124
    assert ref_ulaw_encode_sample(0) == 0xFF
    assert ref_ulaw_encode_sample(32767) == 0x80
    assert ref_ulaw_encode_sample(-32768) == 0x00


@pytest.mark.parametrize("decode", [audiocodec.ulaw_decode, ulaw_decode_lut])
def test_decode_all_256_codes(decode: object) -> None:
    assert callable(decode)
    assert decode(ALL_CODES) == REF_DECODED


@pytest.mark.parametrize("encode", [audiocodec.ulaw_encode, ulaw_encode_lut])
def test_encode_all_65536_values(encode: object) -> None:
    assert callable(encode)
    assert encode(ALL_PCM) == REF_ENCODED


def test_audioop_in_use_on_this_interpreter() -> None:
    # 3.12 ships audioop; 3.13+ gets it from audioop-lts (a declared dependency).
    assert audiocodec.has_audioop()


@pytest.mark.parametrize("encode", [audiocodec.ulaw_encode, ulaw_encode_lut])
def test_encode_rejects_odd_length(encode: object) -> None:
    assert callable(encode)
    with pytest.raises(ValueError, match="even length"):
        encode(b"\x00\x01\x02")


def test_empty_input() -> None:
    assert audiocodec.ulaw_decode(b"") == b""
    assert audiocodec.ulaw_encode(b"") == b""
    assert ulaw_decode_lut(b"") == b""
    assert ulaw_encode_lut(b"") == b""


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_decode_encode_decode_is_idempotent(codes: bytes) -> None:
    decoded = audiocodec.ulaw_decode(codes)
    assert len(decoded) == 2 * len(codes)
    assert audiocodec.ulaw_decode(audiocodec.ulaw_encode(decoded)) == decoded


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-32768, 32767), max_size=200))
def test_encode_length_and_agreement(samples: list[int]) -> None:
    pcm = np.array(samples, dtype="<i2").tobytes()
    encoded = audiocodec.ulaw_encode(pcm)
    assert len(encoded) == len(samples)
    assert encoded == ulaw_encode_lut(pcm)
    # Quantisation error stays within half a step of the segment (<= 1/16 of the magnitude + 4 LSB).
    back = np.frombuffer(audiocodec.ulaw_decode(encoded), dtype="<i2").astype(np.int64)
    original = np.array(samples, dtype=np.int64)
    assert np.all(np.abs(back - original) <= np.abs(original) // 16 + 132)
