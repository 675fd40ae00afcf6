"""Streaming polyphase FIR resampler for PCM16 mono, exact across chunk boundaries.

Theory of operation (see :mod:`audiocodec._filters` for the filter design):

* One :class:`Resampler` per direction per call. It keeps the input samples the filter still
  needs (the history) in a preallocated float64 work buffer, so feeding a signal in 20 ms chunks
  gives exactly the samples of feeding it whole. There is no stateless per-chunk resampling.
* Work is done in blocks: each block turns ``M`` input samples into ``L`` output samples
  (``L/M = out_rate/in_rate`` reduced; 8->16 kHz is 1 -> 2, 24->8 kHz is 3 -> 1, 16<->24 kHz is
  2 <-> 3). All blocks whose input window is complete are computed in one matrix product on a strided
  view of the work buffer; the rest waits for the next call. A 20 ms chunk holds whole blocks for
  every supported pair, so after the first call each call returns exactly 20 ms (320 samples per
  160 in for 8->16 kHz, 160 per 480 for 24->8 kHz). For other chunk sizes the fractional
  leftover (< ``M`` input samples) stays in the buffer and is used by the next call.
* Time alignment: the linear-phase filter delays by ``(N - 1) / 2`` samples at the upsampled
  rate. That delay is compensated, not emitted: output sample ``j`` is time-aligned with input
  time ``j / out_rate``, so the first output corresponds to the first input. The price is
  look-ahead: outputs are returned only once the input they need has arrived, i.e. the first
  call returns :attr:`Resampler.latency_ms` (~2.5 ms) fewer samples, and that is the whole added
  latency. :meth:`Resampler.flush` pads with zeros to release the tail; the total output is
  then ``round_half_up(n_in * out_rate / in_rate)`` samples, and the resampler is reset.
* Output is rounded half-to-even and clipped to int16. Arithmetic is exact in float64 (see
  :mod:`audiocodec._filters`), so results do not depend on chunking or on summation order.

Supported: any pair of positive integer rates whose reduced ratio keeps the bank small (8, 16, 24
kHz in any direction, and equal rates as a pass-through). Not thread-safe; no I/O, no clock.

Whole clips loaded once at start (prompt files) go through :func:`resample_clip`, which allows
reduced ratios up to 1024:1 (44.1 kHz -> 8 kHz is 441 -> 80). The design is the same (band edges
from the lower rate, 95 dB Kaiser, coefficients on the 2**-30 grid), only the bank is larger: for
44.1 -> 8 kHz the prototype runs at 3.528 MHz and has ~17 800 taps, a (663, 80) bank. Sums stay
exact in float64 (int16 times 2**-30 multiples, bounded by 2**15 * sum|h| * 2**30 << 2**53).
"""

from __future__ import annotations

import math
from typing import Final, final

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from audiocodec._filters import polyphase_bank

# np.clip's Python wrapper costs ~3 µs per call and a pair of np.maximum/np.minimum with float
# bounds ~2 µs; the ufunc np.clip ends in, given 0-d array bounds, ~0.5 µs per 20 ms chunk
# (measured on this repository's reference machine, numpy 2.x). The result is the same.
_clip_ufunc: Final = getattr(getattr(getattr(np, "_core", None), "umath", None), "clip", None)
_INT16_MIN: Final = np.array(-32768.0)
_INT16_MAX: Final = np.array(32767.0)

__all__ = ["CLIP_MAX_FACTOR", "SUPPORTED_RATES", "Resampler", "resample_clip"]

SUPPORTED_RATES: Final = frozenset({8000, 16000, 24000})
"""Rates every pairing of which is designed and tested (others work if the ratio is small)."""

_MAX_FACTOR: Final = 12  # largest L or M accepted: keeps banks and delays small

CLIP_MAX_FACTOR: Final = 1024
"""Largest term of the reduced ratio :func:`resample_clip` accepts (every usual rate 8-192 kHz)."""
_INITIAL_CAPACITY_S: Final = 0.25  # work buffer sized for 250 ms chunks; grows if fed more


@final
class Resampler:
    """Stateful streaming resampler ``in_rate -> out_rate`` for PCM16 LE mono.

    Args:
        in_rate: input sample rate in Hz.
        out_rate: output sample rate in Hz; equal rates make a pass-through.
        max_factor: largest term of the reduced ratio ``L/M`` accepted. The default keeps the
            bank and per-call memory small for streaming; :func:`resample_clip` passes
            :data:`CLIP_MAX_FACTOR` for one-shot conversions.

    Raises:
        ValueError: a rate is not positive, or a term of the reduced ratio is over ``max_factor``.
    """

    __slots__ = (
        "_bank",
        "_capacity",
        "_down",
        "_fill",
        "_history",
        "_in_place",
        "_in_rate",
        "_in_total",
        "_out_rate",
        "_out_total",
        "_passthrough",
        "_up",
        "_width",
        "_windows",
        "_work",
    )

    def __init__(self, in_rate: int, out_rate: int, *, max_factor: int = _MAX_FACTOR) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self._in_rate = in_rate
        self._out_rate = out_rate
        self._passthrough = in_rate == out_rate
        self._in_total = 0
        self._out_total = 0
        if self._passthrough:
            self._up = self._down = 1
            self._width = 1
            self._history = 0
            self._bank: npt.NDArray[np.float64] = np.ones((1, 1))
        else:
            g = math.gcd(in_rate, out_rate)
            if max(in_rate, out_rate) // g > max_factor:
                # Checked before the design: a huge ratio would build a huge bank first.
                raise ValueError(f"unsupported resampling ratio {in_rate} -> {out_rate}")
            spec = polyphase_bank(in_rate, out_rate)
            self._up, self._down = spec.up, spec.down
            self._width = spec.width
            self._history = -spec.offset  # zeros standing for the time before the stream
            self._bank = spec.bank
        self._in_place = self._up > self._down
        self._capacity = 0
        self._work: npt.NDArray[np.float64] = np.zeros(0)
        self._windows: npt.NDArray[np.float64] = np.zeros((0, self._width))
        self._grow(int(in_rate * _INITIAL_CAPACITY_S))
        self._fill = self._history

    @property
    def in_rate(self) -> int:
        """Input sample rate in Hz."""
        return self._in_rate

    @property
    def out_rate(self) -> int:
        """Output sample rate in Hz."""
        return self._out_rate

    @property
    def latency_ms(self) -> float:
        """Added latency: the filter's look-ahead (group delay), 0 for a pass-through."""
        if self._passthrough:
            return 0.0
        spec = polyphase_bank(self._in_rate, self._out_rate)
        return 1000.0 * spec.delay / (self._in_rate * self._up)

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk; returns every output sample whose input is complete.

        Args:
            pcm: PCM16 LE mono, any even length (including 0).

        Returns:
            PCM16 LE at ``out_rate``; see the module docstring for how many samples.

        Raises:
            ValueError: ``pcm`` has an odd number of bytes.
        """
        if len(pcm) % 2:
            raise ValueError(f"PCM16 data must have an even length, got {len(pcm)} bytes")
        count = len(pcm) // 2
        self._in_total += count
        if self._passthrough:
            self._out_total += count
            return bytes(pcm)
        if self._fill + count > self._capacity:
            self._grow(self._fill + count)
        self._work[self._fill : self._fill + count] = np.frombuffer(pcm, dtype="<i2")
        self._fill += count
        return self._run().tobytes()

    def flush(self) -> bytes:
        """Release the tail (zero-padded past the end of input) and reset for a new stream.

        Returns:
            The remaining PCM16 LE samples, so that everything returned since construction (or
            the last flush) totals ``round_half_up(n_in * out_rate / in_rate)`` samples.
        """
        target = (2 * self._in_total * self._up + self._down) // (2 * self._down)
        missing = target - self._out_total
        tail = b""
        if missing > 0 and not self._passthrough:
            blocks = -(-missing // self._up)
            pad = self._width + blocks * self._down
            if self._fill + pad > self._capacity:
                self._grow(self._fill + pad)
            self._work[self._fill : self._fill + pad] = 0.0
            self._fill += pad
            tail = self._run()[:missing].tobytes()
        self._reset()
        return tail

    def _run(self) -> npt.NDArray[np.int16]:
        # Compute every complete block; keep the unconsumed input (history + leftover) in front.
        available = self._fill - self._width
        if available < 0:
            return np.zeros(0, dtype=np.int16)
        blocks = available // self._down + 1
        windows = self._windows[:blocks]
        # The sum is exact either way (module docstring); only the speed differs. On this
        # overlapping strided view dot copies the windows and calls BLAS, and both release the
        # GIL: under load each release hands the GIL to awscrt's waiting thread and back.
        # matmul's own loop reads the view in place; on a 20 ms chunk the whole call keeps the
        # GIL. It is as fast as dot for upsampling (short windows) and over 2x slower for
        # downsampling (long windows), where BLAS is worth it (scripts/bench_codecs.py --kernels).
        if self._in_place:
            out = np.matmul(windows, self._bank).ravel()
        else:
            out = np.dot(windows, self._bank).ravel()
        consumed = blocks * self._down
        self._work[: self._fill - consumed] = self._work[consumed : self._fill]
        self._fill -= consumed
        self._out_total += out.shape[0]
        np.rint(out, out=out)
        if _clip_ufunc is not None:
            _clip_ufunc(out, _INT16_MIN, _INT16_MAX, out=out)
        else:  # pragma: no cover - a numpy without the clip ufunc
            np.maximum(out, _INT16_MIN, out=out)
            np.minimum(out, _INT16_MAX, out=out)
        samples: npt.NDArray[np.int16] = out.astype("<i2")
        return samples

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self._capacity, self._width + self._history + 1)
        work = np.zeros(capacity, dtype=np.float64)
        work[: self._capacity] = self._work
        self._work = work
        self._capacity = capacity
        # Row b of the view is block b's input window; rows overlap (a strided, read-only view).
        rows = (capacity - self._width) // self._down + 1
        item = work.itemsize
        self._windows = as_strided(
            work, shape=(rows, self._width), strides=(self._down * item, item), writeable=False
        )

    def _reset(self) -> None:
        self._work[:] = 0.0
        self._fill = self._history
        self._in_total = 0
        self._out_total = 0


def resample_clip(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """Resample a whole PCM16 LE mono clip in one go (start-up loading, not per-call streaming).

    Same filter design and accounting as :class:`Resampler` (output time-aligned with the input,
    ``round_half_up(n_in * out_rate / in_rate)`` samples), but reduced ratios up to
    :data:`CLIP_MAX_FACTOR` are accepted, so 44.1 kHz, 22.05 kHz or 48 kHz files reach 8 kHz in
    one exact polyphase stage.

    Raises:
        ValueError: a rate is not positive, the ratio is too large, or ``pcm`` has an odd length.
    """
    resampler = Resampler(in_rate, out_rate, max_factor=CLIP_MAX_FACTOR)
    return resampler.process(pcm) + resampler.flush()
