"""scripts/bench_load.py's pure parts: the gateway config it writes, loop-lag percentiles."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bench_load import EmulatorProcess, gateway_toml
from bench_load_rows import emulator_lateness, lag_percentiles

from gateway.config import load_config

if TYPE_CHECKING:
    from pathlib import Path


def test_the_gateway_accepts_the_config_the_bench_writes(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    emulator = EmulatorProcess(process=None, endpoint="https://127.0.0.1:4433", ca_bundle=str(ca))
    path = tmp_path / "gateway.toml"
    path.write_text(gateway_toml(emulator, 70, ["call.playback_lead_ms=200", "sonic.pool_size=0"]))
    config = load_config(path, {})
    assert config.backend == "bedrock"
    assert config.server.port == 0
    assert config.limits.max_concurrent_calls == 70
    assert config.debug.enabled
    assert config.logging.format == "json"
    assert config.sonic.endpoint_uri == "https://127.0.0.1:4433"
    assert config.sonic.ca_bundle == ca
    assert config.call.playback_lead_ms == 200
    assert config.sonic.pool_size == 0


def load(counts: list[int]) -> dict[str, object]:
    return {"loop_lag": {"bounds_ms": [1.0, 5.0, 10.0], "counts": counts, "count": sum(counts)}}


def test_lag_percentiles_come_from_the_window_difference() -> None:
    start = load([100, 0, 0, 0])
    end = load([140, 58, 1, 1])  # the window: 40 <= 1 ms, 58 <= 5 ms, 1 <= 10 ms, 1 above
    assert lag_percentiles(start, end) == (5.0, 10.0, math.inf)
    assert lag_percentiles(start, load([200, 0, 0, 0])) == (1.0, 1.0, 1.0)
    assert lag_percentiles(None, end) == (None, None, None)
    assert lag_percentiles(start, start) == (None, None, None)


def emulator_stats(buckets: dict[str, int], max_ms: float) -> dict[str, object]:
    return {
        "reply_lateness_ms": {"count": sum(buckets.values()), "max": max_ms, "buckets": buckets}
    }


def test_emulator_lateness_over_the_window() -> None:
    start = emulator_stats({"le_0.5": 10, "le_1": 0, "le_10": 0, "gt_last": 0}, 0.4)
    end = emulator_stats({"le_0.5": 20, "le_1": 89, "le_10": 0, "gt_last": 1}, 250.0)
    late = emulator_lateness(start, end)
    assert late is not None
    assert (late.n, late.p50, late.p99, late.max) == (100, 1.0, 1.0, 250.0)
    assert emulator_lateness(None, end) is None
    assert emulator_lateness(start, {"sessions": 1}) is None
