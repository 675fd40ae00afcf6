"""Event-loop lag: how late the loop runs a timer, as a histogram and as an admission signal.

Theory of operation. A gateway whose event loop falls behind plays audio late, drops caller
audio in drop-oldest mailboxes and answers late, for every call at once; the only safe response is
to admit no more calls until it catches up. Lag is measured the way every loop monitor does it: a
task sleeps until an absolute deadline and records how late it woke (``current_time - deadline``).
That task is a timer, not a poll: it decides nothing and waits for nothing but its own deadline.

* :class:`LagHistogram` (sans-I/O) keeps cumulative counts in fixed buckets (Prometheus-style:
  upper bounds in ms, the last bucket open-ended), so a reader takes two snapshots and differences
  them to get any window's distribution.
* :class:`RecentLag` (sans-I/O) keeps the samples of the last ``window_s`` in a ring sized for
  that window, and answers "is the loop lagging now?" as a high quantile of that window, so one
  garbage-collection pause does not refuse calls but a sustained backlog does.
* :class:`LoopLagMonitor` is the async shell: ``run()`` samples every ``interval_s`` until
  cancelled (it belongs to the server's task group), ``overloaded()`` is the admission check the
  call registry calls synchronously.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Final, final

import anyio
import msgspec

__all__ = ["LAG_BOUNDS_MS", "LagHistogram", "LagSnapshot", "LoopLagMonitor", "RecentLag"]

LAG_BOUNDS_MS: Final[tuple[float, ...]] = (
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    50.0,
    75.0,
    100.0,
    200.0,
    500.0,
    1000.0,
)
"""Upper bounds (ms) of the histogram's buckets; one more bucket holds everything above."""


class LagSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Cumulative lag histogram since start: ``counts[i]`` samples were ``<= bounds_ms[i]``
    (and above the previous bound); the last count is above every bound."""

    bounds_ms: list[float]
    counts: list[int]
    count: int
    sum_ms: float
    max_ms: float


@final
class LagHistogram:
    """Cumulative, fixed-bucket histogram of lag samples (ms)."""

    __slots__ = ("_bounds", "_counts", "_max", "_n", "_sum")

    def __init__(self, bounds_ms: tuple[float, ...] = LAG_BOUNDS_MS) -> None:
        if list(bounds_ms) != sorted(bounds_ms) or not bounds_ms:
            raise ValueError("bounds must be a non-empty ascending sequence")
        self._bounds = bounds_ms
        self._counts = [0] * (len(bounds_ms) + 1)
        self._n = 0
        self._sum = 0.0
        self._max = 0.0

    def record(self, lag_ms: float) -> None:
        """Count one sample."""
        self._counts[bisect.bisect_left(self._bounds, lag_ms)] += 1
        self._n += 1
        self._sum += lag_ms
        self._max = max(self._max, lag_ms)

    def snapshot(self) -> LagSnapshot:
        """The counts so far (a copy)."""
        return LagSnapshot(
            bounds_ms=list(self._bounds),
            counts=list(self._counts),
            count=self._n,
            sum_ms=round(self._sum, 3),
            max_ms=round(self._max, 3),
        )

    @staticmethod
    def quantile(bounds_ms: list[float], counts: list[int], q: float) -> float:
        """The upper bound of the bucket holding quantile ``q`` of ``counts`` (inf above all).

        ``counts`` may be a difference of two snapshots (a window). Returns 0.0 for no samples.
        """
        total = sum(counts)
        if total == 0:
            return 0.0
        rank = q * total
        seen = 0
        for i, n in enumerate(counts):
            seen += n
            if seen >= rank:
                return bounds_ms[i] if i < len(bounds_ms) else math.inf
        return math.inf


@final
class RecentLag:
    """Lag samples of the last ``window`` samples; a quantile of them is the admission signal."""

    __slots__ = ("_q", "_samples")

    def __init__(self, window: int, quantile: float = 0.9) -> None:
        if window < 1 or not 0.0 < quantile <= 1.0:
            raise ValueError("window must be >= 1 and quantile in (0, 1]")
        self._samples: deque[float] = deque(maxlen=window)
        self._q = quantile

    def record(self, lag_ms: float) -> None:
        """Add one sample; the oldest falls out of the window."""
        self._samples.append(lag_ms)

    def value(self) -> float:
        """The window's quantile (0.0 before any sample)."""
        if not self._samples:
            return 0.0
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, math.ceil(self._q * len(ordered)) - 1)]


@final
class LoopLagMonitor:
    """Samples the running loop's lag; see the module docstring.

    Args:
        admit_below_ms: ``overloaded()`` is True while the recent lag quantile exceeds this;
            None never reports overload (the histogram is still kept).
        interval_s: time between samples (also the lag resolution below which lag is invisible).
        window_s: how much recent history the admission signal looks at.
    """

    __slots__ = ("_admit_below_ms", "_interval", "_recent", "histogram")

    def __init__(
        self,
        *,
        admit_below_ms: float | None = 25.0,
        interval_s: float = 0.025,
        window_s: float = 2.0,
    ) -> None:
        if interval_s <= 0 or window_s < interval_s:
            raise ValueError("interval_s must be positive and window_s at least one interval")
        self._admit_below_ms = admit_below_ms
        self._interval = interval_s
        self._recent = RecentLag(max(1, round(window_s / interval_s)))
        self.histogram = LagHistogram()

    def record(self, lag_ms: float) -> None:
        """Count one lag sample (the shell's; tests feed samples directly)."""
        self.histogram.record(lag_ms)
        self._recent.record(lag_ms)

    def recent_ms(self) -> float:
        """The admission signal: a high quantile of the recent samples, in ms."""
        return self._recent.value()

    def overloaded(self) -> bool:
        """True while new calls should be refused because the loop is behind."""
        limit = self._admit_below_ms
        return limit is not None and self._recent.value() > limit

    async def run(self) -> None:
        """Sample until cancelled; blocks forever."""
        deadline = anyio.current_time()
        while True:
            deadline += self._interval
            await anyio.sleep_until(deadline)
            now = anyio.current_time()
            self.record(max(0.0, (now - deadline) * 1000.0))
            if now - deadline > self._interval:
                deadline = now  # a long stall counts once, not as a burst of catch-up samples
