"""The load benchmark's figures: /proc samples, histogram windows, one row per step, the service
level and the Markdown table. Pure functions over what ``scripts/bench_load.py`` collected (its
module docstring defines every figure); nothing here starts a process or touches the network.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Final

import msgspec
from loadgen_core import CallResult

CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
WARMUP_PREFIX: Final = "CAffffffff"  # the generator's warm-up call: left out of the figures
GEN_LATE_FLAG_MS: Final = 10.0
# Reply audio goes out ahead of real time (4x by default) and the gateway buffers it, so emulator
# lateness shows in a response only through the first chunk: flag what would eat half the
# response-time margin of the service level.
EMU_LATE_FLAG_MS: Final = 25.0
OTHERS_FLAG_PCT: Final = 20.0
CORE_FLAG_PCT: Final = 90.0
SLO_RESPONSE_MARGIN_MS: Final = 50.0
SLO_LOOP_LAG_P99_MS: Final = 10.0


# ---------------------------------------------------------------------------- results


class Pcts(msgspec.Struct, kw_only=True):
    """Percentiles of a sample (ms); None when empty."""

    n: int
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class Row(msgspec.Struct, kw_only=True):
    """One step's figures (see the module docstring)."""

    calls: int
    connected: int
    failed_calls: int
    refused: int | None
    window_s: float
    call_s: float
    gw_cpu_ms_per_call_s: float | None
    gw_cpu_pct: float
    gw_wait_pct: float
    gw_idle_cpu_pct: float
    others_cpu_pct: float
    gw_rss_idle_mb: float
    gw_rss_mb: float
    gw_rss_kb_per_call: float | None
    loop_lag_p50_ms: float | None
    loop_lag_p99_ms: float | None
    loop_lag_max_ms: float | None
    response_ms: Pcts
    turns_unanswered: int
    gw_turn_ms: Pcts
    model_ms: Pcts
    greeting_gw_ms: Pcts
    greeting_peer_ms: Pcts
    underruns: int
    underruns_gateway: int
    unexpected_answers: int
    caller_audio_dropped: int
    caller_audio_dropped_ms: float | None
    gen_cpu_ms_per_call_s: float | None
    gen_cpu_pct: float
    gen_wait_pct: float
    gen_late_ms: Pcts
    gen_skipped_frames: int
    emu_cpu_ms_per_call_s: float | None
    emu_cpu_pct: float
    emu_late_ms: Pcts | None
    emu_stats: dict[str, Any] | None
    gen_gc_max_ms: float
    flags: list[str]
    not_gateway_bound: list[str]
    errors: list[str]
    slo_ok: bool | None = None
    slo_misses: list[str] = msgspec.field(default_factory=list)


class Report(msgspec.Struct, kw_only=True):
    """What ``--json`` writes."""

    command: list[str]
    gateway_root: str
    window_s: float
    ramp_s: float
    settle_s: float
    gateway_cpus: list[int] | None
    other_cpus: list[int] | None
    rows: list[Row]
    best_calls: int | None = None
    search_note: str | None = None


def _pcts(values: list[float]) -> Pcts:
    if not values:
        return Pcts(n=0)
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1)

    return Pcts(n=len(ordered), p50=at(0.5), p95=at(0.95), p99=at(0.99), max=round(ordered[-1], 1))


# ---------------------------------------------------------------------------- /proc


class ProcSample(msgspec.Struct, frozen=True):
    """CPU seconds used so far, run-queue wait of the main thread, resident memory."""

    at: float
    cpu_s: float
    wait_s: float
    rss_bytes: int


def proc_sample(pid: int) -> ProcSample:
    """Read ``/proc/<pid>/stat`` (utime + stime, all threads), ``/proc/<pid>/schedstat`` (time
    the main thread, which runs the event loop, was runnable but waiting for a CPU) and
    ``/proc/<pid>/status`` (VmRSS)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    try:
        wait = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        wait = 0.0
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return ProcSample(at=time.monotonic(), cpu_s=cpu, wait_s=wait, rss_bytes=rss)


def machine_busy_s() -> float:
    """CPU seconds used by everything on the machine so far (``/proc/stat``, all CPUs)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK


# ---------------------------------------------------------------------------- /debug/load


def lag_percentiles(
    start: dict[str, Any] | None, end: dict[str, Any] | None
) -> tuple[float | None, float | None, float | None]:
    """Loop-lag p50, p99 and max (ms) over a window from two cumulative ``/debug/load`` reads.

    A percentile (and the max) is the upper bound of the bucket it falls in (``inf`` for the last
    bucket).
    """
    if start is None or end is None or not start.get("loop_lag") or not end.get("loop_lag"):
        return None, None, None
    bounds = list(end["loop_lag"]["bounds_ms"])
    counts = [
        b - a for a, b in zip(start["loop_lag"]["counts"], end["loop_lag"]["counts"], strict=True)
    ]
    total = sum(counts)
    if total <= 0:
        return None, None, None
    top = max(i for i, c in enumerate(counts) if c > 0)

    def at(q: float) -> float:
        seen = 0
        for i, c in enumerate(counts):
            seen += c
            if seen >= q * total:
                return float(bounds[i]) if i < len(bounds) else math.inf
        return math.inf

    return at(0.5), at(0.99), float(bounds[top]) if top < len(bounds) else math.inf


def emulator_lateness(start: dict[str, Any] | None, end: dict[str, Any] | None) -> Pcts | None:
    """The emulator's reply-audio lateness over a window (its ``--stats-file`` histogram, whose
    per-bucket counts are cumulative: the window is the difference of two snapshots). A
    percentile is its bucket's upper bound (the step's exact max for the last bucket)."""
    if not start or not end or "reply_lateness_ms" not in end:
        return None
    before = (start.get("reply_lateness_ms") or {}).get("buckets", {})
    after = end["reply_lateness_ms"].get("buckets", {})
    bounds: list[float] = []
    counts: list[int] = []
    for key, total in after.items():
        bounds.append(float(key[3:]) if key.startswith("le_") else math.inf)
        counts.append(int(total) - int(before.get(key, 0)))
    n = sum(counts)
    if n <= 0:
        return Pcts(n=0)
    last_max = float(end["reply_lateness_ms"].get("max") or math.inf)

    def at(q: float) -> float:
        seen = 0
        for bound, count in zip(bounds, counts, strict=True):
            seen += count
            if seen >= q * n and count:
                return bound if bound != math.inf else last_max
        return last_max

    top = max(b for b, c in zip(bounds, counts, strict=True) if c > 0)
    return Pcts(n=n, p50=at(0.5), p99=at(0.99), max=top if top != math.inf else last_max)


# ---------------------------------------------------------------------------- one step


class Samples(msgspec.Struct, kw_only=True):
    """/proc samples of the three processes and a /debug/load read."""

    gateway: ProcSample
    emulator: ProcSample
    generator: ProcSample
    machine_busy_s: float
    load: dict[str, Any] | None
    emulator_stats: dict[str, Any] | None


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def build_row(
    calls: int,
    idle_start: ProcSample,
    idle: ProcSample,
    idle_load: dict[str, Any] | None,
    first: Samples,
    last: Samples,
    result: dict[str, Any],
    summaries: list[dict[str, Any]],
    problems: list[str],
) -> Row:
    """Turn one step's samples, the generator's result and the gateway's log into a row.

    Args:
        calls: N.
        idle_start, idle: the gateway before and after ``--idle-s`` of idleness (before the ramp).
        idle_load: ``/debug/load`` before the ramp (None without the endpoint).
        first, last: samples at the start and end of the window.
        result: the generator's ``result`` event.
        summaries: the gateway's ``call.summary`` log records.
        problems: the gateway's warnings and errors, as short strings.
    """
    w0, w1 = first.gateway.at, last.gateway.at
    window = w1 - w0
    results = msgspec.convert(result["results"], list[CallResult])
    call_s = 0.0
    for r in results:
        if r.open_at is not None:
            call_s += _overlap(r.open_at, r.ended_at if r.ended_at is not None else w1, w0, w1)

    def per_call_s(before: ProcSample, after: ProcSample) -> tuple[float | None, float]:
        used = after.cpu_s - before.cpu_s
        pct = 100.0 * used / max(after.at - before.at, 1e-9)
        return (round(1000.0 * used / call_s, 2) if call_s > 0 else None), round(pct, 1)

    def wait_pct(before: ProcSample, after: ProcSample) -> float:
        return round(100.0 * (after.wait_s - before.wait_s) / max(window, 1e-9), 1)

    gw_cpu, gw_pct = per_call_s(first.gateway, last.gateway)
    gen_cpu, gen_pct = per_call_s(first.generator, last.generator)
    emu_cpu, emu_pct = per_call_s(first.emulator, last.emulator)
    lag50, lag99, lagmax = lag_percentiles(first.load, last.load)

    response: list[float] = []
    unanswered = 0
    greeting_peer: list[float] = []
    underruns = underruns_gw = unexpected = 0
    errors: list[str] = []
    for r in results:
        if r.error is not None:
            errors.append(f"{r.call_sid[-4:]}: {r.error}")
        if r.open_at is not None and r.greeting_first_media is not None:
            greeting_peer.append(1000 * (r.greeting_first_media - r.open_at))
        for turn in r.turns:
            if not w0 <= turn.speech_end <= w1:
                continue
            if turn.first_media is not None:
                response.append(1000 * (turn.first_media - turn.speech_end))
            else:
                unanswered += 1
        for u in r.underruns:
            if w0 <= u.at <= w1:
                underruns += 1
                underruns_gw += u.generator_late * 1000 <= GEN_LATE_FLAG_MS
        unexpected += r.unexpected_answers

    summaries = [s for s in summaries if not str(s.get("call_sid", "")).startswith(WARMUP_PREFIX)]
    gw_turn = [
        t["gateway_ms"]
        for s in summaries
        for t in s.get("turns", [])
        if t.get("gateway_ms") is not None and t.get("model_ms") is not None
    ]
    model = [
        t["model_ms"]
        for s in summaries
        for t in s.get("turns", [])
        if t.get("model_ms") is not None
    ]
    greeting_gw = [s["greeting_ms"] for s in summaries if s.get("greeting_ms") is not None]
    dropped = sum(int(s.get("audio_dropped") or 0) for s in summaries)
    dropped_ms: float | None = None
    if first.load is not None and last.load is not None and "caller_audio_dropped_ms" in last.load:
        dropped_ms = float(last.load["caller_audio_dropped_ms"]) - float(
            first.load.get("caller_audio_dropped_ms", 0)
        )
    elif any("caller_audio_dropped_ms" in s for s in summaries):
        dropped_ms = float(sum(s.get("caller_audio_dropped_ms") or 0 for s in summaries))

    late = result["lateness_ms"]
    gen_late = Pcts(n=late["count"], p50=_r(late["p50"]), p99=_r(late["p99"]), max=_r(late["max"]))
    not_gateway_bound: list[str] = []
    if late["p99"] is not None and late["p99"] > GEN_LATE_FLAG_MS:
        not_gateway_bound.append("generator late")
    if gen_pct > CORE_FLAG_PCT:
        not_gateway_bound.append("generator saturated")
    if emu_pct > CORE_FLAG_PCT:
        not_gateway_bound.append("emulator saturated")
    flags = list(not_gateway_bound)
    emu_late = emulator_lateness(first.emulator_stats, last.emulator_stats)
    if emu_late is not None and (emu_late.p99 or 0.0) > EMU_LATE_FLAG_MS:
        # For information only: the emulator's lateness includes waiting for the gateway to
        # take the reply (HTTP/2 flow control), so it is not proof the emulator was the limit.
        flags.append("emulator late")
    machine_pct = 100.0 * (last.machine_busy_s - first.machine_busy_s) / max(window, 1e-9)
    others_pct = round(max(0.0, machine_pct - gw_pct - gen_pct - emu_pct), 1)
    if others_pct > OTHERS_FLAG_PCT:
        flags.append(f"other processes used {others_pct:.0f} % of a core")
    refused: int | None = None
    if idle_load is not None and last.load is not None:
        refused = sum(
            int(last.load[k]) - int(idle_load.get(k, 0))
            for k in last.load
            if k.startswith("refused_")
        )
    connected = sum(r.open_at is not None for r in results)
    failed = sum(r.open_at is None or r.error is not None for r in results)
    if result.get("unknown_messages"):
        errors.append(f"generator: {result['unknown_messages']} messages of unknown events")
    if result.get("skipped_frames"):
        errors.append(f"generator: {result['skipped_frames']} frames skipped (over 1 s late)")
    errors.extend(problems[:20])
    return Row(
        calls=calls,
        connected=connected,
        failed_calls=failed,
        refused=refused,
        window_s=round(window, 2),
        call_s=round(call_s, 1),
        gw_cpu_ms_per_call_s=gw_cpu,
        gw_cpu_pct=gw_pct,
        gw_wait_pct=wait_pct(first.gateway, last.gateway),
        gw_idle_cpu_pct=round(
            100.0 * (idle.cpu_s - idle_start.cpu_s) / max(idle.at - idle_start.at, 1e-9), 1
        ),
        others_cpu_pct=others_pct,
        gw_rss_idle_mb=round(idle.rss_bytes / 2**20, 1),
        gw_rss_mb=round(last.gateway.rss_bytes / 2**20, 1),
        gw_rss_kb_per_call=round((last.gateway.rss_bytes - idle.rss_bytes) / 1024 / calls, 1),
        loop_lag_p50_ms=lag50,
        loop_lag_p99_ms=lag99,
        loop_lag_max_ms=lagmax,
        response_ms=_pcts(response),
        turns_unanswered=unanswered,
        gw_turn_ms=_pcts(gw_turn),
        model_ms=_pcts(model),
        greeting_gw_ms=_pcts(greeting_gw),
        greeting_peer_ms=_pcts(greeting_peer),
        underruns=underruns,
        underruns_gateway=underruns_gw,
        unexpected_answers=unexpected,
        caller_audio_dropped=dropped,
        caller_audio_dropped_ms=dropped_ms,
        gen_cpu_ms_per_call_s=gen_cpu,
        gen_cpu_pct=gen_pct,
        gen_wait_pct=wait_pct(first.generator, last.generator),
        gen_late_ms=gen_late,
        gen_skipped_frames=int(result.get("skipped_frames", 0)),
        emu_cpu_ms_per_call_s=emu_cpu,
        emu_cpu_pct=emu_pct,
        emu_late_ms=emu_late,
        emu_stats=(
            None
            if last.emulator_stats is None
            else {"window_start": first.emulator_stats, "window_end": last.emulator_stats}
        ),
        gen_gc_max_ms=float(result.get("gc_pauses", {}).get("max_ms", 0.0)),
        flags=flags,
        not_gateway_bound=not_gateway_bound,
        errors=errors,
    )


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# ---------------------------------------------------------------------------- service level


def check_slo(row: Row, baseline: Row | None) -> None:
    """Fill ``slo_ok`` / ``slo_misses`` (see the module docstring)."""
    misses: list[str] = []
    if row.failed_calls:
        misses.append(f"{row.failed_calls} calls failed")
    if row.caller_audio_dropped or (row.caller_audio_dropped_ms or 0) > 0:
        misses.append("caller audio dropped")
    if row.response_ms.n == 0:
        misses.append("no answered turn in the window")
    elif baseline is not None and baseline.response_ms.p95 is not None:
        limit = baseline.response_ms.p95 + SLO_RESPONSE_MARGIN_MS
        if (row.response_ms.p95 or 0) > limit:
            misses.append(f"response p95 {row.response_ms.p95} > {limit:.0f} ms")
    if row.turns_unanswered:
        misses.append(f"{row.turns_unanswered} turns unanswered")
    if row.loop_lag_p99_ms is not None and row.loop_lag_p99_ms > SLO_LOOP_LAG_P99_MS:
        misses.append(f"loop lag p99 {row.loop_lag_p99_ms} ms")
    if row.underruns_gateway:
        misses.append(f"{row.underruns_gateway} underruns")
    row.slo_ok = not misses
    row.slo_misses = misses


# ---------------------------------------------------------------------------- table


def _f(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _trio(p: Pcts, keys: tuple[str, ...] = ("p50", "p95", "p99"), digits: int = 0) -> str:
    if p.n == 0:
        return "-"
    return "/".join(_f(getattr(p, k), digits) for k in keys)


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    head = (
        "| N | gw CPU ms/call-s | gw % core | gw loop waiting % | gw RSS KiB/call "
        "| loop lag p50/p99 ms "
        "| response p50/p95/p99 ms | gw turn p50/p99 ms | greeting gw p50/p99 ms "
        "| greeting peer p50/p99 ms | underruns gw/all | caller audio dropped "
        "| gen CPU ms/call-s | gen late p50/p99/max ms | emu CPU ms/call-s | emu % core "
        "| emu late p50/p99 ms | flags |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lag = (
            "n/a"
            if r.loop_lag_p99_ms is None
            else f"{_f(r.loop_lag_p50_ms, 1)}/{_f(r.loop_lag_p99_ms, 1)}"
        )
        dropped = str(r.caller_audio_dropped)
        if r.caller_audio_dropped_ms is not None:
            dropped += f" ({r.caller_audio_dropped_ms:.0f} ms)"
        flags = ", ".join(r.flags)
        emu_late = "n/a" if r.emu_late_ms is None else _trio(r.emu_late_ms, ("p50", "p99"), 1)
        if r.slo_ok is not None:
            flags = ", ".join(
                filter(
                    None, [flags, "SLO ok" if r.slo_ok else "SLO miss: " + "; ".join(r.slo_misses)]
                )
            )
        if r.failed_calls:
            flags = ", ".join(filter(None, [flags, f"{r.failed_calls} failed"]))
        lines.append(
            f"| {r.calls} | {_f(r.gw_cpu_ms_per_call_s, 1)} | {_f(r.gw_cpu_pct)} "
            f"| {_f(r.gw_wait_pct)} | {_f(r.gw_rss_kb_per_call)} | {lag} | {_trio(r.response_ms)} "
            f"| {_trio(r.gw_turn_ms, ('p50', 'p99'))} | {_trio(r.greeting_gw_ms, ('p50', 'p99'))} "
            f"| {_trio(r.greeting_peer_ms, ('p50', 'p99'))} | {r.underruns_gateway}/{r.underruns} "
            f"| {dropped} "
            f"| {_f(r.gen_cpu_ms_per_call_s, 1)} "
            f"| {_f(r.gen_late_ms.p50, 1)}/{_f(r.gen_late_ms.p99, 1)}/{_f(r.gen_late_ms.max, 1)} "
            f"| {_f(r.emu_cpu_ms_per_call_s, 1)} | {_f(r.emu_cpu_pct)} "
            f"| {emu_late} | {flags} |"
        )
    return "\n".join(lines)
