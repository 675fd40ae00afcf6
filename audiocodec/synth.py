"""Deterministic test signals: tones and a speech-like PCM16 generator.

:func:`speech_like` stands in for a voice wherever the project needs one without recordings: the
Nova Sonic emulator's assistant audio and the callers in call replays. It is built to look like
speech to an energy VAD, a resampler and a listener's ear, not to be intelligible:

* **source**: a harmonic series (glottal-like, amplitudes falling ~6 dB/octave) on a fundamental
  of ~100-220 Hz that glides within each syllable and drifts across phrases (intonation);
* **formants**: each syllable picks a vowel (F1/F2/F3 pairs from adult-speaker averages) and the
  harmonics are weighted by three resonance curves, so the spectrum has speech-like peaks;
* **rhythm**: syllables of 120-280 ms (~4 per second) with 15-30 ms attacks and decays, a short
  fricative-like noise burst on some onsets, 2-6 syllables per phrase, 150-450 ms pauses;
* **level**: scaled to -20 dBFS RMS over the whole signal (pauses included), peaks well below
  clipping; harmonics stop below 3.8 kHz and below 0.45 x the sample rate (no aliasing).

Everything comes from ``numpy.random.default_rng(seed)``: same arguments, same bytes.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["speech_like", "tone"]

_VOWELS: Final = (  # (F1, F2, F3) in Hz: /a/, /e/, /i/, /o/, /u/, schwa
    (730.0, 1090.0, 2440.0),
    (530.0, 1840.0, 2480.0),
    (270.0, 2290.0, 3010.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
    (500.0, 1500.0, 2500.0),
)
_FORMANT_BANDWIDTHS: Final = (90.0, 110.0, 170.0)
_TARGET_RMS_DBFS: Final = -20.0
_TOP_HZ: Final = 3800.0


def tone(rate: int, freq: float, ms: int, dbfs: float = -6.0) -> bytes:
    """A sine of peak level ``dbfs`` (re 32767), PCM16 LE, starting at phase 0.

    Args:
        rate: sample rate in Hz.
        freq: frequency in Hz.
        ms: duration in milliseconds.
        dbfs: peak level in dBFS.

    Returns:
        ``rate * ms // 1000`` samples.
    """
    n = rate * ms // 1000
    amplitude = 32767.0 * 10.0 ** (dbfs / 20.0)
    wave = amplitude * np.sin(2.0 * np.pi * freq * np.arange(n) / rate)
    return _to_pcm16(wave)


def speech_like(rate: int, ms: int, seed: int = 0) -> bytes:
    """Speech-like PCM16 LE mono, about -20 dBFS RMS; see the module docstring.

    Args:
        rate: sample rate in Hz (8000 or more).
        ms: duration in milliseconds.
        seed: selects the utterance; equal arguments give equal bytes.

    Returns:
        ``rate * ms // 1000`` samples. The signal starts with a syllable at t = 0.
    """
    rng = np.random.default_rng(seed)
    n = rate * ms // 1000
    if n <= 0:
        return b""
    envelope = np.zeros(n)
    f0 = np.zeros(n)
    formants = np.zeros((n, 3))
    noise_env = np.zeros(n)
    pos = 0
    base_f0 = float(rng.uniform(100.0, 200.0))
    while pos < n:
        for _ in range(int(rng.integers(2, 7))):
            length = int(rate * rng.uniform(0.12, 0.28))
            end = min(pos + length, n)
            span = end - pos
            if span <= 0:
                break
            t = np.arange(span) / rate
            attack, decay = rng.uniform(0.015, 0.03), rng.uniform(0.02, 0.04)
            shape = np.minimum(1.0, np.minimum(t / attack, (length / rate - t) / decay))
            envelope[pos:end] = np.clip(shape, 0.0, 1.0) ** 2 * rng.uniform(0.6, 1.0)
            glide = rng.uniform(-0.15, 0.1)
            f0[pos:end] = base_f0 * (1.0 + glide * t / (length / rate))
            formants[pos:end] = _VOWELS[int(rng.integers(len(_VOWELS)))]
            if rng.random() < 0.4:  # fricative-like onset burst
                burst = min(int(rate * 0.04), span)
                noise_env[pos : pos + burst] = np.linspace(0.3, 0.0, burst)
            pos = end
        base_f0 = float(np.clip(base_f0 * rng.uniform(0.85, 1.15), 90.0, 220.0))
        pause = int(rate * rng.uniform(0.15, 0.45))
        f0[pos : pos + pause] = base_f0
        pos += pause
    f0 = _smooth(f0, rate)
    formants = np.stack([_smooth(formants[:, i], rate) for i in range(3)], axis=1)
    voiced = _harmonics(rate, f0, formants) * _smooth(envelope, rate, 0.005)
    noise = np.diff(rng.standard_normal(n + 1)) * 0.15 * _smooth(noise_env, rate, 0.005)
    signal = voiced + noise
    rms = math.sqrt(float(np.mean(signal**2))) or 1.0
    return _to_pcm16(signal * (32768.0 * 10.0 ** (_TARGET_RMS_DBFS / 20.0) / rms))


def _harmonics(
    rate: int, f0: npt.NDArray[np.float64], formants: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    # Sum of harmonics k * f0(t); harmonic amplitude = source tilt x formant resonance gain.
    phase = 2.0 * np.pi * np.cumsum(f0) / rate
    top = min(_TOP_HZ, 0.45 * rate)
    out = np.zeros(f0.shape[0])
    for k in range(1, int(top / max(float(f0.min()), 60.0)) + 1):
        freq = k * f0
        gain = np.zeros_like(f0)
        for i, bandwidth in enumerate(_FORMANT_BANDWIDTHS):
            gain += 1.0 / np.sqrt(1.0 + ((freq - formants[:, i]) / bandwidth) ** 2) / (i + 1)
        gain *= (freq < top) / k
        out += gain * np.sin(k * phase)
    return out


def _smooth(
    x: npt.NDArray[np.float64], rate: int, seconds: float = 0.01
) -> npt.NDArray[np.float64]:
    # Moving average: removes steps between syllables (clicks) without shifting them much.
    width = max(1, int(rate * seconds))
    kernel = np.full(width, 1.0 / width)
    padded = np.concatenate(
        (np.full(width // 2, x[0] if x.size else 0.0), x, np.full(width, x[-1] if x.size else 0.0))
    )
    smoothed: npt.NDArray[np.float64] = np.convolve(padded, kernel, mode="valid")[: x.shape[0]]
    return smoothed


def _to_pcm16(wave: npt.NDArray[np.float64]) -> bytes:
    return np.clip(np.rint(wave), -32768, 32767).astype("<i2").tobytes()
