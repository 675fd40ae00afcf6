"""The emulator's own lateness: a fixed-bucket histogram of how late paced audio went out.

Theory of operation. Each paced ``audioOutput`` chunk has a due time (the reply's start plus its
audio offset divided by ``realtime_factor``); the session records ``actual - due`` when the chunk
is handed to its HTTP/2 stream. A late chunk means the emulator's event loop was busy (or starved
of CPU), the failure that would make the emulator the bottleneck of a load benchmark. Counts are
cumulative since start, so a reader in another process can difference two snapshots for a window;
percentiles are the upper bound of the bucket holding them (coarse by design: cheap to record,
stable to compare).
"""

from __future__ import annotations

import bisect
from typing import Final, final

__all__ = ["LATENESS_BOUNDS_MS", "LatenessHistogram"]

LATENESS_BOUNDS_MS: Final[tuple[float, ...]] = (
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
    150.0,
    200.0,
    300.0,
    500.0,
    1000.0,
)
"""Bucket upper bounds in ms; one more bucket holds everything above the last."""


@final
class LatenessHistogram:
    """Lateness samples in fixed buckets, plus the exact maximum."""

    __slots__ = ("_counts", "_max_ms")

    def __init__(self) -> None:
        self._counts = [0] * (len(LATENESS_BOUNDS_MS) + 1)
        self._max_ms = 0.0

    def add(self, late_s: float) -> None:
        """Record one sample (seconds; early counts as 0)."""
        late_ms = max(0.0, late_s * 1000.0)
        self._counts[bisect.bisect_left(LATENESS_BOUNDS_MS, late_ms)] += 1
        self._max_ms = max(self._max_ms, late_ms)

    @property
    def count(self) -> int:
        """Samples recorded."""
        return sum(self._counts)

    def percentile_ms(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` (0..1); None without samples.

        The last bucket has no bound: its quantiles report the exact maximum.
        """
        total = self.count
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self._counts):
            seen += count
            if seen >= rank and count:
                if index < len(LATENESS_BOUNDS_MS):
                    return min(LATENESS_BOUNDS_MS[index], self._max_ms)
                return self._max_ms
        return self._max_ms

    def snapshot(self) -> dict[str, object]:
        """JSON-ready: count, p50/p99/max in ms, and the per-bucket counts (``le_<bound>``)."""
        buckets = {
            f"le_{bound:g}": n
            for bound, n in zip(LATENESS_BOUNDS_MS, self._counts[:-1], strict=True)
        }
        buckets["gt_last"] = self._counts[-1]
        return {
            "count": self.count,
            "p50": self.percentile_ms(0.5),
            "p99": self.percentile_ms(0.99),
            "max": round(self._max_ms, 3),
            "buckets": buckets,
        }
