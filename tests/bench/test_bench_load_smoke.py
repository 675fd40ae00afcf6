"""End to end: scripts/bench_load.py runs emulator, gateway and load generator as processes and
writes a JSON report with completed turns. Checks fields, not speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_calls_for_a_few_seconds(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    command = [
        sys.executable,
        str(REPO / "scripts" / "bench_load.py"),
        "--steps",
        "2",
        "--ramp-s",
        "0.5",
        "--settle-s",
        "2",
        "--window-s",
        "5",
        "--tail-s",
        "2",
        "--json",
        str(out),
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| N |" in done.stdout
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["calls"] == 2
    assert row["connected"] == 2
    assert row["failed_calls"] == 0, row["errors"]
    assert row["call_s"] > 0
    assert row["response_ms"]["n"] >= 1  # completed turns, measured at the peer
    assert row["greeting_peer_ms"]["n"] == 2
    assert row["gw_turn_ms"]["n"] >= 1  # the gateway's call.summary lines were read
    for key in (
        "gw_cpu_ms_per_call_s",
        "gw_rss_kb_per_call",
        "loop_lag_p99_ms",
        "underruns",
        "caller_audio_dropped",
        "gen_cpu_ms_per_call_s",
        "gen_late_ms",
        "emu_cpu_ms_per_call_s",
        "flags",
    ):
        assert key in row
