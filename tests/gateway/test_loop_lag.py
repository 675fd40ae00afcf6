"""The event-loop lag monitor: histogram arithmetic, the admission signal, and real lag."""

from __future__ import annotations

import math
import time

import anyio
import pytest

from gateway.loop_lag import LAG_BOUNDS_MS, LagHistogram, LoopLagMonitor, RecentLag


def test_histogram_buckets_by_upper_bound() -> None:
    h = LagHistogram((1.0, 5.0, 10.0))
    for lag in (0.0, 1.0, 1.01, 5.0, 9.9, 10.0, 10.5, 250.0):
        h.record(lag)
    snap = h.snapshot()
    assert snap.counts == [2, 2, 2, 2]
    assert snap.count == 8
    assert snap.max_ms == 250.0
    assert snap.sum_ms == pytest.approx(287.41)


def test_quantile_of_a_window_is_the_difference_of_two_snapshots() -> None:
    h = LagHistogram()
    for _ in range(1000):
        h.record(0.2)  # an old, quiet period
    before = h.snapshot()
    for lag in [0.3] * 90 + [12.0] * 9 + [600.0]:
        h.record(lag)
    after = h.snapshot()
    window = [b - a for a, b in zip(before.counts, after.counts, strict=True)]
    bounds = after.bounds_ms
    assert LagHistogram.quantile(bounds, window, 0.5) == 0.5
    assert LagHistogram.quantile(bounds, window, 0.95) == 15.0
    assert LagHistogram.quantile(bounds, window, 1.0) == 1000.0
    assert LagHistogram.quantile(bounds, [0] * len(window), 0.99) == 0.0
    over = [0] * len(bounds) + [3]
    assert LagHistogram.quantile(bounds, over, 0.5) == math.inf


def test_bounds_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        LagHistogram((5.0, 1.0))
    assert list(LAG_BOUNDS_MS) == sorted(LAG_BOUNDS_MS)


def test_recent_lag_ignores_a_single_pause_but_not_a_backlog() -> None:
    recent = RecentLag(window=20, quantile=0.9)
    assert recent.value() == 0.0
    for _ in range(19):
        recent.record(1.0)
    recent.record(400.0)  # one garbage-collection pause
    assert recent.value() == 1.0
    for _ in range(5):
        recent.record(80.0)  # the loop is behind
    assert recent.value() == 80.0
    for _ in range(20):
        recent.record(2.0)  # ... and caught up: the window forgets
    assert recent.value() == 2.0


def test_monitor_reports_overload_above_the_bound_only() -> None:
    monitor = LoopLagMonitor(admit_below_ms=25.0, interval_s=0.025, window_s=1.0)
    for _ in range(40):
        monitor.record(3.0)
    assert not monitor.overloaded()
    for _ in range(40):
        monitor.record(60.0)
    assert monitor.overloaded()
    assert monitor.recent_ms() == 60.0
    unlimited = LoopLagMonitor(admit_below_ms=None)
    unlimited.record(10_000.0)
    assert not unlimited.overloaded()
    assert unlimited.histogram.snapshot().count == 1


def test_monitor_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="interval"):
        LoopLagMonitor(interval_s=0.0)
    with pytest.raises(ValueError, match="interval"):
        LoopLagMonitor(interval_s=1.0, window_s=0.5)


@pytest.mark.anyio
async def test_monitor_sees_a_blocked_loop() -> None:
    monitor = LoopLagMonitor(interval_s=0.01, window_s=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)
        await anyio.sleep(0.05)
        # Blocking work on the loop: exactly what the monitor exists to see.
        time.sleep(0.2)  # noqa: ASYNC251
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    snap = monitor.histogram.snapshot()
    assert snap.max_ms >= 150.0
    # The stall is one late sample, not twenty catch-up samples.
    assert sum(snap.counts[LAG_BOUNDS_MS.index(100.0) + 1 :]) == 1
