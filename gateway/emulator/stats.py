"""The emulator's own lateness: how late paced audio went out, as a fixed-bucket histogram.

Theory of operation. Each paced ``audioOutput`` chunk has a due time (the reply's start plus its
audio offset divided by ``realtime_factor``); the session records ``actual - due`` when the chunk
is handed to its HTTP/2 stream. A late chunk means the emulator's event loop was busy (or starved
of CPU), the failure that would make the emulator the bottleneck of a load benchmark. Counts are
cumulative since start, so a reader in another process can difference two snapshots for a window;
percentiles are the upper bound of the bucket holding them (coarse by design: cheap to record,
stable to compare). The histogram is the gateway's own :class:`~gateway.loop_lag.LagHistogram`
(the same concept: how late a loop ran something) with this module's bounds; :func:`lateness_report`
is the JSON shape the emulator's ``--stats-file`` has always written.
"""

from __future__ import annotations

from typing import Final

from gateway.loop_lag import LAG_BOUNDS_MS, LagHistogram

__all__ = ["LATENESS_BOUNDS_MS", "lateness_histogram", "lateness_report"]

LATENESS_BOUNDS_MS: Final = LAG_BOUNDS_MS
"""Bucket upper bounds in ms (the gateway's loop-lag bounds); one more bucket holds the rest."""


def lateness_histogram() -> LagHistogram:
    """An empty histogram with :data:`LATENESS_BOUNDS_MS` (record lateness in ms, early as 0)."""
    return LagHistogram(LATENESS_BOUNDS_MS)


def lateness_report(histogram: LagHistogram) -> dict[str, object]:
    """JSON-ready: count, p50/p99/max in ms, and the per-bucket counts (``le_<bound>``).

    Percentiles are bucket upper bounds, capped at the exact maximum; above the last bound they
    report the maximum. Without samples they are None.
    """
    snap = histogram.snapshot()

    def percentile(q: float) -> float | None:
        if snap.count == 0:
            return None
        bound = LagHistogram.quantile(snap.bounds_ms, snap.counts, q)
        return min(bound, snap.max_ms)

    buckets: dict[str, int] = {
        f"le_{bound:g}": n for bound, n in zip(snap.bounds_ms, snap.counts[:-1], strict=True)
    }
    buckets["gt_last"] = snap.counts[-1]
    return {
        "count": snap.count,
        "p50": percentile(0.5),
        "p99": percentile(0.99),
        "max": snap.max_ms,
        "buckets": buckets,
    }
