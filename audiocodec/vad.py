"""Energy voice-activity detector with hysteresis, for barge-in detection.

Theory of operation. PCM16 arrives in chunks of any size; it is cut into fixed analysis windows
(10 ms by default) and each window's RMS level is measured in dBFS (re 32768; a sine of peak
-6 dBFS measures -9 dB). A two-state machine turns levels into events:

* **silent -> speaking**: windows at or above the *start threshold* accumulate; once they cover
  ``onset_ms`` (consecutive, 60 ms = 6 windows by default) :class:`SpeechStart` is emitted.
  A window below the *stop threshold* (start - ``hysteresis_db``) resets the count; a window in
  between holds it. A 40 ms click touches at most 5 windows and never starts speech.
* **speaking -> silent**: windows below the stop threshold accumulate; after ``release_ms``
  (400 ms) of them :class:`SpeechEnd` is emitted. Any window at or above the stop threshold
  resets the count, so a level hovering around the start threshold does not chatter.
* **adaptive noise floor** (optional, on by default): minimum statistics. The floor is the
  lowest window level seen in the last ``noise_window_ms`` (2 s, kept as eight sub-block minima;
  "unknown" = -100 dBFS until the span has been seen once). Speech dips between syllables and
  words, so the floor stays at the noise; a steady hum or line noise does not dip, so the floor
  rises to it. The start threshold is ``max(threshold_dbfs, floor + noise_margin_db)``: steady
  noise that started "speech" is released within ~``noise_window_ms + release_ms`` and does not
  trigger again, while speech well above the noise still does.

Levels come from the C ``audioop.rms`` (the module :mod:`audiocodec.g711` uses; ``audioop-lts`` on
Python 3.13+), which returns the RMS truncated to a whole sample value: a level is at most
``20 * log10((r + 1) / r)`` dB low for an RMS of ``r`` (0.03 dB at the -40 dBFS default threshold,
0.8 dB at -70 dBFS). A window of RMS 0 measures -120 dBFS. Without ``audioop`` the exact numpy
computation is used (:func:`window_levels_exact`, also the reference the tests compare against).

Time is sample time: event times are milliseconds since the first sample fed (or anchored by the
caller through ``now_ms``). There is no clock and no I/O. Defaults suit 8-16 kHz telephone
speech: typical speech is -15 to -30 dBFS RMS, line noise -50 to -70.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, final

import msgspec
import numpy as np

from audiocodec.g711 import _audioop

__all__ = [
    "EnergyVad",
    "SpeechEnd",
    "SpeechStart",
    "VadEvent",
    "window_levels",
    "window_levels_exact",
]

_FULL_SCALE: Final = 32768.0
_FULL_SCALE_SQ: Final = _FULL_SCALE * _FULL_SCALE
_FLOOR_START_DB: Final = -100.0
_SILENT_DB: Final = -120.0  # the level of a window of RMS 0 (power 1e-12)
_NOISE_BLOCKS: Final = 8


def window_levels_exact(pcm: bytes, window: int) -> list[float]:
    """RMS level (dBFS) of each whole ``window``-sample window of PCM16 LE ``pcm``, exactly.

    The power is floored at 1e-12 (-120 dBFS). Trailing samples short of a window are ignored.
    """
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    windows = samples.shape[0] // window
    frames = samples[: windows * window].reshape(windows, window)
    power = np.einsum("ij,ij->i", frames, frames) / (window * _FULL_SCALE_SQ)
    levels: list[float] = (10.0 * np.log10(np.maximum(power, 1e-12))).tolist()
    return levels


if _audioop is not None:
    _rms: Final = _audioop.rms
    _log10: Final = math.log10

    def window_levels(pcm: bytes, window: int) -> list[float]:
        """RMS level (dBFS) of each whole window, from ``audioop.rms`` (see the module docstring).

        Per 20 ms frame this is two C calls instead of seven numpy calls and their arrays.
        """
        view = memoryview(pcm)
        step = 2 * window
        levels = []
        for start in range(0, len(pcm) - step + 1, step):
            rms = _rms(view[start : start + step], 2)
            levels.append(20.0 * _log10(rms / _FULL_SCALE) if rms else _SILENT_DB)
        return levels

else:  # pragma: no cover - audioop ships with 3.12 and as audioop-lts on 3.13+
    window_levels = window_levels_exact


class SpeechStart(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Speech confirmed: the level held above the start threshold for ``onset_ms``.

    Attributes:
        at_ms: when the decision was made (end of the confirming window), sample time.
        began_ms: start of the first window of the onset run (when speech began).
    """

    at_ms: float
    began_ms: float


class SpeechEnd(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Speech over: the level stayed below the stop threshold for ``release_ms``.

    Attributes:
        at_ms: when the decision was made, sample time.
        ended_ms: end of the last window at or above the stop threshold.
    """

    at_ms: float
    ended_ms: float


VadEvent = SpeechStart | SpeechEnd


@final
class EnergyVad:
    """Streaming energy VAD; see the module docstring for the state machine.

    Args:
        sample_rate: PCM16 mono sample rate in Hz.
        onset_ms: speech must last this long before :class:`SpeechStart` (rounded up to windows).
        release_ms: silence must last this long before :class:`SpeechEnd`.
        threshold_dbfs: fixed start threshold, RMS dBFS.
        hysteresis_db: stop threshold is this far below the start threshold.
        window_ms: analysis window (10 or 20 ms).
        adaptive: track the noise floor and raise the start threshold above it.
        noise_margin_db: start threshold is at least this far above the noise floor.
        noise_window_ms: span of the noise-floor minimum (>= 8 windows).

    Raises:
        ValueError: an argument is out of range.
    """

    __slots__ = (
        "_adaptive",
        "_block_count",
        "_block_min",
        "_block_windows",
        "_blocks_min",
        "_floor_db",
        "_hysteresis_db",
        "_level_db",
        "_margin_db",
        "_minima",
        "_onset_windows",
        "_origin_ms",
        "_pending",
        "_release_windows",
        "_run",
        "_run_start",
        "_sample_rate",
        "_samples_done",
        "_samples_fed",
        "_speaking",
        "_threshold_db",
        "_window",
    )

    def __init__(
        self,
        sample_rate: int,
        onset_ms: int = 60,
        release_ms: int = 400,
        threshold_dbfs: float = -40.0,
        hysteresis_db: float = 6.0,
        *,
        window_ms: int = 10,
        adaptive: bool = True,
        noise_margin_db: float = 15.0,
        noise_window_ms: int = 2000,
    ) -> None:
        if sample_rate <= 0 or (sample_rate * window_ms) % 1000:
            raise ValueError(f"{window_ms} ms is not a whole number of samples at {sample_rate} Hz")
        if window_ms not in (10, 20):
            raise ValueError(f"window_ms must be 10 or 20, got {window_ms}")
        if onset_ms <= 0 or release_ms <= 0 or hysteresis_db < 0:
            raise ValueError("onset_ms and release_ms must be positive, hysteresis_db >= 0")
        self._sample_rate = sample_rate
        self._window = sample_rate * window_ms // 1000
        self._onset_windows = math.ceil(onset_ms / window_ms)
        self._release_windows = math.ceil(release_ms / window_ms)
        self._threshold_db = threshold_dbfs
        self._hysteresis_db = hysteresis_db
        self._adaptive = adaptive
        self._margin_db = noise_margin_db
        self._block_windows = max(1, noise_window_ms // (window_ms * _NOISE_BLOCKS))
        self._pending = b""
        self._origin_ms = 0.0
        self._samples_fed = 0
        self._samples_done = 0
        self._speaking = False
        self._run = 0  # windows in the current onset (silent) or release (speaking) run
        self._run_start = 0.0
        self._floor_db = _FLOOR_START_DB
        self._minima: deque[float] = deque([_FLOOR_START_DB] * _NOISE_BLOCKS, maxlen=_NOISE_BLOCKS)
        self._block_min = math.inf
        self._blocks_min = _FLOOR_START_DB
        self._block_count = 0
        self._level_db = -math.inf

    @property
    def speaking(self) -> bool:
        """Whether speech is in progress (between SpeechStart and SpeechEnd)."""
        return self._speaking

    @property
    def active(self) -> bool:
        """Speech is in progress, or windows at the start threshold have begun an onset run.

        True from the first loud window on, before :class:`SpeechStart` is confirmed: a shell that
        holds quiet audio back can send everything at once when sound begins.
        """
        return self._speaking or self._run > 0

    @property
    def level_dbfs(self) -> float:
        """RMS level of the last analysis window (-inf before the first)."""
        return self._level_db

    @property
    def noise_floor_dbfs(self) -> float:
        """Adaptive noise floor: minimum level over the noise window (-100 = not known yet)."""
        return self._floor_db

    @property
    def start_threshold_dbfs(self) -> float:
        """The threshold a window must reach to count towards onset."""
        if self._adaptive:
            return max(self._threshold_db, self._floor_db + self._margin_db)
        return self._threshold_db

    def process(self, pcm: bytes, now_ms: float | None = None) -> list[VadEvent]:
        """Analyse a chunk of PCM16 LE mono of any length.

        Args:
            pcm: the samples.
            now_ms: optional time of the chunk's first sample; re-anchors sample time so event
                times are on the caller's clock. Without it, time continues from the samples fed.

        Returns:
            Events completed by this chunk, in order (usually none).
        """
        if len(pcm) % 2:
            raise ValueError(f"PCM16 data must have an even length, got {len(pcm)} bytes")
        if now_ms is not None:
            self._origin_ms = now_ms - 1000.0 * self._samples_fed / self._sample_rate
        self._samples_fed += len(pcm) // 2
        if self._pending:
            pcm = self._pending + pcm
        step = 2 * self._window
        whole = len(pcm) - len(pcm) % step
        self._pending = bytes(pcm[whole:]) if whole < len(pcm) else b""
        if not whole:
            return []
        events: list[VadEvent] = []
        for level in window_levels(pcm, self._window):
            event = self._step(level)
            if event is not None:
                events.append(event)
        return events

    def reset(self) -> None:
        """Forget everything: silent, floor and sample time back to the start."""
        self._pending = b""
        self._origin_ms = 0.0
        self._samples_fed = 0
        self._samples_done = 0
        self._speaking = False
        self._run = 0
        self._run_start = 0.0
        self._floor_db = _FLOOR_START_DB
        self._minima = deque([_FLOOR_START_DB] * _NOISE_BLOCKS, maxlen=_NOISE_BLOCKS)
        self._block_min = math.inf
        self._blocks_min = _FLOOR_START_DB
        self._block_count = 0
        self._level_db = -math.inf

    def _step(self, level: float) -> VadEvent | None:
        start_ms = self._origin_ms + 1000.0 * self._samples_done / self._sample_rate
        self._samples_done += self._window
        end_ms = self._origin_ms + 1000.0 * self._samples_done / self._sample_rate
        self._level_db = level
        self._track_floor(level)
        start_threshold = self.start_threshold_dbfs
        stop_threshold = start_threshold - self._hysteresis_db
        if not self._speaking:
            if level >= start_threshold:
                if self._run == 0:
                    self._run_start = start_ms
                self._run += 1
                if self._run >= self._onset_windows:
                    began = self._run_start
                    self._speaking = True
                    self._run = 0
                    self._run_start = end_ms  # from here on: the last voiced moment
                    return SpeechStart(at_ms=end_ms, began_ms=began)
            elif level < stop_threshold:
                self._run = 0
            return None
        if level >= stop_threshold:
            self._run = 0
            self._run_start = end_ms  # last voiced moment so far
            return None
        self._run += 1
        if self._run >= self._release_windows:
            self._speaking = False
            self._run = 0
            return SpeechEnd(at_ms=end_ms, ended_ms=self._run_start)
        return None

    def _track_floor(self, level: float) -> None:
        if not self._adaptive:
            return
        self._block_min = min(self._block_min, level)
        self._block_count += 1
        if self._block_count == self._block_windows:
            self._minima.append(self._block_min)
            self._blocks_min = min(self._minima)  # once per block, not per window
            self._block_min = math.inf
            self._block_count = 0
        self._floor_db = min(self._blocks_min, self._block_min)
