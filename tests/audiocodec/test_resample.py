"""Resampler: measured quality figures, streaming exactness, output accounting, properties.

Figures are measured on 1.2 s tones fed in 20 ms chunks; the analysis takes exactly one second of
steady-state output, where integer-Hz tones fall on exact DFT bins (no window, no leakage).
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiocodec import CLIP_MAX_FACTOR, Resampler, resample_clip

PAIRS = [(8000, 16000), (16000, 8000), (24000, 8000), (8000, 24000), (16000, 24000), (24000, 16000)]
AMPLITUDE = 16384.0  # -6 dBFS


def _tone(rate: int, freq: float, seconds: float = 1.2) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(AMPLITUDE * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def _stream(resampler: Resampler, pcm: bytes, chunk_bytes: int) -> npt.NDArray[np.float64]:
    parts = [resampler.process(pcm[i : i + chunk_bytes]) for i in range(0, len(pcm), chunk_bytes)]
    parts.append(resampler.flush())
    return np.frombuffer(b"".join(parts), dtype="<i2").astype(np.float64)


def _steady_second(resampler: Resampler, freq: float) -> npt.NDArray[np.float64]:
    rate_in, rate_out = resampler.in_rate, resampler.out_rate
    out = _stream(resampler, _tone(rate_in, freq), rate_in // 50 * 2)
    start = rate_out // 10  # skip the first 100 ms: the filter starts from silence
    return out[start : start + rate_out]


def _level_db(segment: npt.NDArray[np.float64], rate: int, freq: float) -> float:
    n = np.arange(len(segment))
    amplitude = 2.0 / len(segment) * abs(np.sum(segment * np.exp(-2j * np.pi * freq * n / rate)))
    return float(20 * np.log10(max(amplitude, 1e-12) / AMPLITUDE))


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
@pytest.mark.parametrize("freq", [1000.0, 3400.0])
def test_snr_at_least_85_db(rate_in: int, rate_out: int, freq: float) -> None:
    resampler = Resampler(rate_in, rate_out)
    segment = _steady_second(resampler, freq)
    # The ideal output is the same tone, time-aligned: the group delay is compensated.
    start = rate_out // 10
    ideal = AMPLITUDE * np.sin(2 * np.pi * freq * (np.arange(rate_out) + start) / rate_out)
    snr = 10 * np.log10(np.mean(ideal**2) / np.mean((segment - ideal) ** 2))
    assert snr >= 85.0, f"{rate_in}->{rate_out} at {freq} Hz: SNR {snr:.1f} dB"


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_passband_flat_to_3400_hz_within_0_1_db(rate_in: int, rate_out: int) -> None:
    for freq in (100.0, 300.0, 1000.0, 2000.0, 3000.0, 3400.0):
        gain = _level_db(_steady_second(Resampler(rate_in, rate_out), freq), rate_out, freq)
        assert abs(gain) <= 0.1, f"{rate_in}->{rate_out} at {freq} Hz: {gain:.3f} dB"


@pytest.mark.parametrize(("rate_in", "rate_out"), [(8000, 16000), (8000, 24000)])
@pytest.mark.parametrize("freq", [1000.0, 2000.0, 3000.0, 3400.0])
def test_upsampling_images_at_least_85_db_down(rate_in: int, rate_out: int, freq: float) -> None:
    # A tone f at 8 kHz has spectral images at k*8000 +/- f (>= 4.6 kHz for f <= 3.4 kHz).
    segment = _steady_second(Resampler(rate_in, rate_out), freq)
    images = [k * rate_in + s * freq for k in range(1, rate_out // rate_in) for s in (-1, 1)]
    for image in (f for f in images if f < rate_out / 2):
        level = _level_db(segment, rate_out, image)
        assert level <= -85.0, (
            f"{rate_in}->{rate_out}: image of {freq} at {image} Hz: {level:.1f} dB"
        )


@pytest.mark.parametrize(
    ("rate_in", "rate_out", "freq"),
    [
        *((24000, 8000, f) for f in (4600.0, 5000.0, 6000.0, 7000.0, 9000.0, 11000.0)),
        *((16000, 8000, f) for f in (4600.0, 5000.0, 6000.0, 7000.0)),
        *((24000, 16000, f) for f in (9200.0, 10000.0, 11000.0)),
    ],
)
def test_downsampling_aliases_at_least_85_db_down(rate_in: int, rate_out: int, freq: float) -> None:
    segment = _steady_second(Resampler(rate_in, rate_out), freq)
    alias = abs(freq - rate_out * round(freq / rate_out))  # where the tone folds to
    level = _level_db(segment, rate_out, alias)
    assert level <= -85.0, (
        f"{rate_in}->{rate_out}: {freq} Hz aliases to {alias} Hz at {level:.1f} dB"
    )


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_added_latency_at_most_3_ms(rate_in: int, rate_out: int) -> None:
    resampler = Resampler(rate_in, rate_out)
    assert resampler.latency_ms <= 3.0
    # Measured: what the first 20 ms call withholds is exactly the look-ahead.
    first = len(resampler.process(bytes(rate_in // 50 * 2))) // 2
    withheld_ms = 1000.0 * (rate_out // 50 - first) / rate_out
    assert withheld_ms <= 3.0
    assert withheld_ms == pytest.approx(resampler.latency_ms, abs=1000.0 * 3 / rate_out)


@pytest.mark.parametrize(("rate_in", "rate_out"), [*PAIRS, (8000, 8000)])
def test_20ms_chunks_equal_whole_signal_and_output_is_steady(rate_in: int, rate_out: int) -> None:
    rng = np.random.default_rng(1)
    # Full-scale noise: exercises clipping and every filter tap.
    pcm = rng.integers(-32768, 32768, rate_in, dtype=np.int16).astype("<i2").tobytes()
    chunk = rate_in // 50 * 2
    chunked = Resampler(rate_in, rate_out)
    sizes = [len(chunked.process(pcm[i : i + chunk])) // 2 for i in range(0, len(pcm), chunk)]
    assert set(sizes[1:]) == {rate_out // 50}  # after the first call: exactly 20 ms per call
    chunked.flush()
    a = _stream(Resampler(rate_in, rate_out), pcm, chunk)
    b = _stream(Resampler(rate_in, rate_out), pcm, len(pcm))
    assert len(a) == rate_out
    assert np.array_equal(a, b)


def test_flush_resets_for_a_new_stream() -> None:
    resampler = Resampler(8000, 16000)
    pcm = _tone(8000, 440.0, 0.1)
    first = resampler.process(pcm) + resampler.flush()
    second = resampler.process(pcm) + resampler.flush()
    assert first == second


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 8000)
    with pytest.raises(ValueError, match="even length"):
        Resampler(8000, 16000).process(b"\x00")


@settings(max_examples=50, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    samples=st.lists(st.integers(-32768, 32767), max_size=1500),
    cuts=st.lists(st.integers(0, 1500), max_size=8),
)
def test_random_chunking_equals_whole(
    pair: tuple[int, int], samples: list[int], cuts: list[int]
) -> None:
    rate_in, rate_out = pair
    pcm = np.array(samples, dtype="<i2").tobytes()
    bounds = sorted({0, len(samples), *(c for c in cuts if c <= len(samples))})
    resampler = Resampler(rate_in, rate_out)
    parts = [resampler.process(pcm[2 * a : 2 * b]) for a, b in itertools.pairwise(bounds)]
    parts.append(resampler.flush())
    chunked = b"".join(parts)
    whole_resampler = Resampler(rate_in, rate_out)
    whole = whole_resampler.process(pcm) + whole_resampler.flush()
    assert chunked == whole
    # Output length invariant: round-half-up of n * out / in.
    assert len(whole) // 2 == (2 * len(samples) * rate_out + rate_in) // (2 * rate_in)


@pytest.mark.parametrize("fs", [16000, 24000, 48000])
def test_prototype_stopband_is_at_least_94_db(fs: int) -> None:
    # Design-level check, finer than the int16 output allows (an 85 dB alias is < 1 LSB there).
    from audiocodec._filters import STOPBAND_DB, design_lowpass

    h = design_lowpass(fs, 3400.0, 4600.0, STOPBAND_DB)
    n = np.arange(len(h)) - (len(h) - 1) / 2
    freqs = np.linspace(4600.0, fs / 2, 2000)
    response = np.abs(np.exp(-2j * np.pi * np.outer(freqs, n) / fs) @ h)
    assert 20 * np.log10(response.max()) <= -94.0
    assert (len(h) - 1) / 2 / fs <= 0.003


# ---------------------------------------------------------------- whole clips, large ratios

CLIP_RATES = [11025, 22050, 32000, 44100, 48000, 96000]


@pytest.mark.parametrize("rate_in", CLIP_RATES)
@pytest.mark.parametrize("freq", [440.0, 1000.0, 3400.0])
def test_clip_tone_keeps_frequency_and_level(rate_in: int, freq: float) -> None:
    out = np.frombuffer(resample_clip(_tone(rate_in, freq), rate_in, 8000), dtype="<i2")
    assert len(out) == 9600  # 1.2 s at 8 kHz
    segment = out[800:8800].astype(np.float64)  # one steady second
    assert abs(_level_db(segment, 8000, freq)) <= 0.1
    spectrum = np.abs(np.fft.rfft(segment))
    assert int(np.argmax(spectrum)) == int(freq)  # 1 Hz bins: the peak is the tone's own bin
    ideal = AMPLITUDE * np.sin(2 * np.pi * freq * (np.arange(8000) + 800) / 8000)
    snr = 10 * np.log10(np.mean(ideal**2) / np.mean((segment - ideal) ** 2))
    assert snr >= 85.0, f"{rate_in} at {freq} Hz: SNR {snr:.1f} dB"


@pytest.mark.parametrize("rate_in", CLIP_RATES)
@pytest.mark.parametrize("freq", [4600.0, 5000.0, 6000.0, 9000.0, 15000.0])
def test_clip_content_above_the_telephone_band_does_not_alias(rate_in: int, freq: float) -> None:
    if freq >= rate_in / 2:
        pytest.skip("not representable at this rate")
    out = np.frombuffer(resample_clip(_tone(rate_in, freq), rate_in, 8000), dtype="<i2")
    segment = out[800:8800].astype(np.float64)
    # Whatever a tone above 4.6 kHz leaves behind (aliases included) is at least 85 dB down.
    rms_db = 10 * np.log10(max(np.mean(segment**2), 1e-12) / (AMPLITUDE**2 / 2))
    assert rms_db <= -85.0, f"{rate_in} at {freq} Hz: {rms_db:.1f} dB"


def test_clip_equals_streaming_and_rejects_huge_ratios() -> None:
    pcm = _tone(44100, 1000.0, 0.3)
    streaming = Resampler(44100, 8000, max_factor=CLIP_MAX_FACTOR)
    assert _stream(streaming, pcm, 882).astype("<i2").tobytes() == resample_clip(pcm, 44100, 8000)
    assert resample_clip(pcm[:200], 8000, 8000) == pcm[:200]
    with pytest.raises(ValueError, match="unsupported resampling ratio"):
        Resampler(44100, 8000)  # streaming keeps the small-ratio limit
    with pytest.raises(ValueError, match="unsupported resampling ratio"):
        resample_clip(pcm, 44057, 8000)
