"""Load benchmark: how many real-time calls one gateway process carries, and what each costs.

Starts three processes on 127.0.0.1: the Nova Sonic emulator (``sonic-gateway emulator``), the
gateway (``sonic-gateway serve --backend bedrock`` pointed at the emulator with its CA bundle and
the emulator's static test credentials; JSON logs, ``/debug/*`` on, a call limit above N) and the load
generator (``scripts/loadgen.py``: N simulated Twilio callers from one process and one timer).

Per step N: a fresh emulator and gateway; one warm-up call (the gateway's lazy set-up happens
there); N calls ramped in over ``--ramp-s``; ``--settle-s``; a measured window of ``--window-s``
seconds; ``--tail-s`` more so that turns that ended in the window get their answer; then every
caller hangs up and the gateway stops (its ``call.summary`` lines are read). Each caller hears the
greeting, says a 1.5 s utterance, listens to the answer, pauses 1 s, and speaks again.
``--set section.key=value`` adds gateway settings (TOML values).

One table row per step:

* gateway CPU per call-second (``utime + stime`` from ``/proc/<pid>/stat`` over the window, divided
  by the call-seconds live in it) and its share of one core; how much of the window its main
  thread (the event loop) spent runnable but waiting for a CPU that other threads or processes
  held (``/proc/<pid>/schedstat``); RSS per call (RSS at the end of the window minus
  idle RSS after the warm-up call, over N); its idle CPU (``--idle-s`` before the ramp) is in the
  JSON, to tell the fixed cost from the per-call one at small N;
* event-loop lag p50/p99 of the gateway over the window (``GET /debug/load``, difference of two
  cumulative histograms; a percentile is its bucket's upper bound; ``n/a`` without the endpoint);
* response time at the peer (last speech frame sent -> first answer media received), for turns
  whose utterance ended in the window; gateway time per turn (``call.summary`` ``gateway_ms``);
  greeting time at the gateway (``greeting_ms``) and at the peer (``start`` sent -> first media);
* playback underruns at the peer in the window (a gap > 40 ms within an answer), caller audio
  dropped by the gateway (``audio_dropped`` messages summed over calls; ms from ``/debug/load``);
* the generator's and the emulator's CPU per call-second, the generator's pacing lateness and,
  when the emulator has ``--stats-file``, its reply-audio lateness over the window; a row is
  flagged when generator lateness p99 > 10 ms or a process other than the gateway uses more than
  90 % of a core (then the gateway is not what limits the row) and, for information, when the
  emulator's lateness p99 > 25 ms (it includes waiting for the gateway to take the reply) or
  processes outside the benchmark used more than 20 % of a core (``/proc/stat``: noisy figures).

With two or more CPUs the gateway is pinned to the first one and the emulator and generator to the
others (``--pin``; "% core" is of one core); the generator runs at a higher priority where the OS
allows it (it stands in for Twilio, which does not share the gateway's CPU).

``--search`` runs N=1, then 10, 20, ... until a step misses the service level (every call
connected and answered, no caller audio dropped, response p95 within 50 ms of N=1's, loop lag p99
<= 10 ms, no underruns the gateway caused: those while the generator's own pacing was on time),
then bisects; it reports the highest N that met it. A step where the generator or the emulator
was the limit (the flags above) ends the search as inconclusive.

Usage::

    .venv/bin/python scripts/bench_load.py                      # steps 1,10,20,40
    .venv/bin/python scripts/bench_load.py --steps 1,30 --window-s 20 --json load.json
    .venv/bin/python scripts/bench_load.py --search --search-max 60
    .venv/bin/python scripts/bench_load.py --gateway-root ../before   # another checkout's .venv
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import httpx
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream
from bench_load_rows import (
    Report,
    Row,
    Samples,
    build_row,
    check_slo,
    machine_busy_s,
    markdown,
    proc_sample,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.abc import ByteReceiveStream, Process, TaskGroup

REPO: Final = Path(__file__).resolve().parents[1]
LOADGEN: Final = Path(__file__).resolve().with_name("loadgen.py")
# The emulator decides turn ends on 100 ms blocks of caller audio under load (cheaper per event,
# and the same for every gateway measured); its default, per event, is for exact scenario timing.
EMULATOR_VAD_BLOCK_MS: Final = 100
# The emulator's timing from before it followed Nova 2 Sonic's documented end-of-turn pause (600 ms
# silence, exactly 200 ms think time): figures stay comparable with docs/performance.md.
EMULATOR_TIMING: Final = (
    "--end-of-turn-silence-ms",
    "600",
    "--think-ms",
    "200",
    "--think-jitter-ms",
    "0",
)
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 15.0
MAX_LINE: Final = 1 << 28
GENERATOR_NICE: Final = -5


async def read_load(client: httpx.AsyncClient, base: str) -> dict[str, Any] | None:
    """``GET /debug/load``; None when the gateway has no such endpoint (404)."""
    response = await client.get(base + "/debug/load")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------------------- processes


async def _lines(stream: ByteReceiveStream) -> AsyncIterator[bytes]:
    buffered = BufferedByteReceiveStream(stream)
    while True:
        try:
            yield await buffered.receive_until(b"\n", MAX_LINE)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
            return


async def _pump(stream: ByteReceiveStream | None, on_line: Callable[[bytes], None]) -> None:
    if stream is None:
        return
    async for line in _lines(stream):
        on_line(line)


def pinned(command: list[str], cpus: set[int] | None, *, nice: int = 0) -> list[str]:
    """``command`` run with its CPU affinity set to ``cpus`` (all its threads inherit it) and,
    where permitted, its niceness lowered by ``-nice`` (a higher priority)."""
    if not cpus and not nice:
        return command
    prelude = "import contextlib, os, sys\n"
    if cpus:
        prelude += f"os.sched_setaffinity(0, {sorted(cpus)!r})\n"
    if nice:
        prelude += f"with contextlib.suppress(OSError):\n    os.nice({nice})\n"
    prelude += "os.execv(sys.argv[1], sys.argv[1:])\n"
    return [sys.executable, "-c", prelude, *command]


async def stop_process(process: Process, name: str) -> None:
    """SIGINT (the gateway and emulator stop cleanly on it), then SIGKILL after a bound."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            with anyio.move_on_after(STOP_TIMEOUT_S):
                await process.wait()
        if process.returncode is None:
            print(f"bench_load: {name} ignored SIGINT; killing it", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class EmulatorProcess(msgspec.Struct, kw_only=True):
    """The running emulator."""

    process: Any
    endpoint: str = ""
    ca_bundle: str = ""
    stats_file: Path | None = None
    log: list[dict[str, Any]] = msgspec.field(default_factory=list)

    def statistics(self) -> dict[str, Any] | None:
        """The emulator's latest ``--stats-file`` snapshot (None without one)."""
        if self.stats_file is None:
            return None
        try:
            return _json_line(self.stats_file.read_bytes())
        except OSError:
            return None


def _json_line(line: bytes) -> dict[str, Any] | None:
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


@contextlib.asynccontextmanager
async def run_emulator(
    tg: TaskGroup, root: Path, cpus: set[int] | None, workdir: Path
) -> AsyncIterator[EmulatorProcess]:
    """Start ``sonic-gateway emulator --port 0`` from ``root``'s venv; yield once it serves.

    When that emulator has ``--stats-file``, its statistics are written to ``workdir``.
    """
    command = [str(root / ".venv/bin/sonic-gateway"), "emulator", "--port", "0"]
    helped = await anyio.run_process([*command, "--help"], cwd=root, check=False)
    stats_file: Path | None = None
    if b"--stats-file" in helped.stdout:
        stats_file = workdir / "emulator-stats.json"
        command += ["--stats-file", str(stats_file)]
    if b"--vad-block-ms" in helped.stdout:
        command += ["--vad-block-ms", str(EMULATOR_VAD_BLOCK_MS)]
    if b"--end-of-turn-silence-ms" in helped.stdout:
        command += EMULATOR_TIMING
    process = await anyio.open_process(pinned(command, cpus), cwd=root)
    emulator = EmulatorProcess(process=process, stats_file=stats_file)
    ready = anyio.Event()

    def on_stdout(line: bytes) -> None:
        text = line.decode(errors="replace").strip()
        key, _, value = text.partition(": ")
        if key == "endpoint":
            emulator.endpoint = value
        elif key == "ca_bundle":
            emulator.ca_bundle = value
        if emulator.endpoint and emulator.ca_bundle:
            ready.set()

    def on_stderr(line: bytes) -> None:
        record = _json_line(line)
        if record is not None:
            emulator.log.append(record)

    tg.start_soon(_pump, process.stdout, on_stdout)
    tg.start_soon(_pump, process.stderr, on_stderr)
    try:
        with anyio.fail_after(START_TIMEOUT_S):
            await ready.wait()
        yield emulator
    finally:
        await stop_process(process, "emulator")


class Gateway(msgspec.Struct, kw_only=True):
    """The running gateway and what its log said."""

    process: Any
    port: int = 0
    summaries: list[dict[str, Any]] = msgspec.field(default_factory=list)
    problems: list[str] = msgspec.field(default_factory=list)


def gateway_toml(emulator: EmulatorProcess, max_calls: int, overrides: list[str]) -> str:
    """The gateway's configuration for a step (keys from ``docs/gateway.example.toml``).

    ``overrides`` are ``section.key=value`` strings with a TOML value (``--set``); they replace or
    add keys, so a checkout with more (or fewer) settings can be configured as needed.
    """
    sections: dict[str, dict[str, str]] = {
        "": {"backend": '"bedrock"'},
        "server": {"host": '"127.0.0.1"', "port": "0"},
        "limits": {"max_concurrent_calls": str(max_calls)},
        "debug": {"enabled": "true"},
        "logging": {"format": '"json"', "level": '"info"'},
        "sonic": {
            "endpoint_uri": msgspec.json.encode(emulator.endpoint).decode(),
            "ca_bundle": msgspec.json.encode(emulator.ca_bundle).decode(),
        },
    }
    for item in overrides:
        dotted, _, value = item.partition("=")
        section, _, key = dotted.strip().rpartition(".")
        sections.setdefault(section, {})[key] = value.strip()
    lines = [f"{k} = {v}" for k, v in sections.pop("").items()]
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {v}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def _gateway_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SONIC_GATEWAY_", "AWS_")) and k != "PYTHONPATH"
    }
    env.update(
        # The emulator's test keys: it verifies every request and event signature against them.
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="dummy",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@contextlib.asynccontextmanager
async def run_gateway(
    tg: TaskGroup,
    root: Path,
    emulator: EmulatorProcess,
    max_calls: int,
    workdir: Path,
    overrides: list[str],
    cpus: set[int] | None,
) -> AsyncIterator[Gateway]:
    """Start ``sonic-gateway serve`` from ``root``'s venv; yield once it listens.

    On exit the gateway is stopped (SIGINT) and its remaining log lines are read, so
    ``summaries`` is complete afterwards.
    """
    config = workdir / "gateway.toml"
    config.write_text(gateway_toml(emulator, max_calls, overrides))
    process = await anyio.open_process(
        pinned([str(root / ".venv/bin/sonic-gateway"), "serve", "--config", str(config)], cpus),
        cwd=root,
        env=_gateway_env(),
    )
    gateway = Gateway(process=process)
    listening = anyio.Event()
    drained = anyio.Event()

    def on_stderr(line: bytes) -> None:
        record = _json_line(line)
        if record is None:
            if line.strip():
                gateway.problems.append(line.decode(errors="replace").strip()[:300])
            return
        event = record.get("event")
        if event == "gateway.listening":
            gateway.port = int(record["port"])
            listening.set()
        elif event == "call.summary":
            gateway.summaries.append(record)
        elif record.get("level") in ("warning", "error", "critical") and event not in (
            "twilio.signature_check_disabled",
        ):
            gateway.problems.append(f"{event}: {record.get('outcome') or record.get('reason')}")

    async def pump_stderr() -> None:
        await _pump(process.stderr, on_stderr)
        drained.set()

    tg.start_soon(_pump, process.stdout, lambda line: None)
    tg.start_soon(pump_stderr)
    try:
        with anyio.fail_after(START_TIMEOUT_S):
            await listening.wait()
        yield gateway
    finally:
        await stop_process(process, "gateway")
        with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
            await drained.wait()


class Generator:
    """The load generator process and its event lines."""

    def __init__(self, process: Process, events: Any) -> None:
        self.process = process
        self._events = events

    async def send(self, command: str) -> None:
        """Send one command line (go, window, stop)."""
        assert self.process.stdin is not None
        await self.process.stdin.send(command.encode() + b"\n")

    async def expect(self, event: str, within_s: float) -> dict[str, Any]:
        """Wait up to ``within_s`` for the next event named ``event`` (others are skipped)."""
        with anyio.fail_after(within_s):
            async for record in self._events:
                if record.get("event") == event:
                    return dict(record)
        raise RuntimeError(f"load generator exited before {event!r}")


@contextlib.asynccontextmanager
async def run_generator(
    tg: TaskGroup, url: str, calls: int, args: argparse.Namespace
) -> AsyncIterator[Generator]:
    """Start ``scripts/loadgen.py`` (this repo's venv) for ``calls`` callers."""
    command = [
        sys.executable,
        str(LOADGEN),
        "--url",
        url,
        "--calls",
        str(calls),
        "--ramp-s",
        str(args.ramp_s if calls > 1 else 0.0),
        "--max-s",
        str(args.ramp_s + args.settle_s + args.window_s + args.tail_s + 120),
        "--run-id",
        str(calls),
    ]
    # The generator stands in for Twilio, which does not share the gateway's CPU: it runs at a
    # higher priority where the OS allows it, so other work on its core delays it less.
    process = await anyio.open_process(
        pinned(command, args.other_cpus, nice=GENERATOR_NICE), cwd=REPO, stderr=None
    )
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](16)

    async def pump() -> None:
        async with send:
            assert process.stdout is not None
            async for line in _lines(process.stdout):
                record = _json_line(line)
                if record is not None:
                    await send.send(record)

    tg.start_soon(pump)
    try:
        yield Generator(process, receive)
    finally:
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await process.stdin.aclose()
            with anyio.move_on_after(STOP_TIMEOUT_S):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            receive.close()


# ---------------------------------------------------------------------------- one step


async def _sample(
    client: httpx.AsyncClient, base: str, pids: tuple[int, int, int], emulator: EmulatorProcess
) -> Samples:
    load = await read_load(client, base)
    return Samples(
        gateway=proc_sample(pids[0]),
        emulator=proc_sample(pids[1]),
        generator=proc_sample(pids[2]),
        machine_busy_s=machine_busy_s(),
        load=load,
        emulator_stats=emulator.statistics(),
    )


async def run_step(tg: TaskGroup, args: argparse.Namespace, calls: int) -> Row:
    """Run one step of ``calls`` calls with a fresh emulator and gateway (see module docstring)."""
    root = args.gateway_root
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        async with (
            run_emulator(tg, root, args.other_cpus, Path(tmp)) as emulator,
            run_gateway(
                tg,
                root,
                emulator,
                max(calls + 10, 2 * calls),
                Path(tmp),
                args.set,
                args.gateway_cpus,
            ) as gateway,
            httpx.AsyncClient(timeout=10.0) as client,
        ):
            base = f"http://127.0.0.1:{gateway.port}"
            url = f"ws://127.0.0.1:{gateway.port}/twilio/media"
            async with run_generator(tg, url, calls, args) as gen:
                pids = (gateway.process.pid, emulator.process.pid, gen.process.pid)
                await gen.expect("ready", START_TIMEOUT_S)
                idle_start = proc_sample(pids[0])
                await anyio.sleep(args.idle_s)
                idle = proc_sample(pids[0])
                idle_load = await read_load(client, base)
                await gen.send("go")
                await gen.expect("ramped", args.ramp_s + 30.0)
                await anyio.sleep(args.settle_s)
                first = await _sample(client, base, pids, emulator)
                await gen.send("window")
                await anyio.sleep(args.window_s)
                last = await _sample(client, base, pids, emulator)
                await gen.send("end")
                # Turns that ended in the window get time to be answered before the hang-up.
                await anyio.sleep(args.tail_s)
                await gen.send("stop")
                result = await gen.expect("result", 60.0)
    return build_row(
        calls, idle_start, idle, idle_load, first, last, result, gateway.summaries, gateway.problems
    )


# ---------------------------------------------------------------------------- main


async def _main(args: argparse.Namespace) -> Report:
    rows: list[Row] = []
    report = Report(
        command=[Path(sys.argv[0]).name, *sys.argv[1:]],
        gateway_root=str(args.gateway_root),
        window_s=args.window_s,
        ramp_s=args.ramp_s,
        settle_s=args.settle_s,
        gateway_cpus=sorted(args.gateway_cpus) if args.gateway_cpus else None,
        other_cpus=sorted(args.other_cpus) if args.other_cpus else None,
        rows=rows,
    )

    async with anyio.create_task_group() as tg:

        async def step(n: int, baseline: Row | None) -> Row:
            print(f"bench_load: N={n} ...", file=sys.stderr, flush=True)
            row = await run_step(tg, args, n)
            check_slo(row, baseline)
            rows.append(row)
            print(markdown([row]).splitlines()[-1], file=sys.stderr, flush=True)
            return row

        if args.search:
            await _search(args, step, report)
        else:
            baseline: Row | None = None
            for n in args.steps:
                row = await step(n, baseline)
                if n == 1:
                    baseline = row
        tg.cancel_scope.cancel()
    return report


async def _search(
    args: argparse.Namespace, step: Callable[[int, Row | None], Any], report: Report
) -> None:
    baseline: Row = await step(1, None)
    best = 1 if baseline.slo_ok else 0
    failed: int | None = None
    inconclusive: Row | None = baseline if baseline.not_gateway_bound else None

    async def probe(n: int) -> bool | None:
        """True: met the service level; False: missed it; None: the row is not gateway-bound."""
        nonlocal inconclusive
        row: Row = await step(n, baseline)
        if row.not_gateway_bound:
            inconclusive = row
            return None
        return bool(row.slo_ok)

    n = args.search_start
    while inconclusive is None and n <= args.search_max:
        ok = await probe(n)
        if ok is None:
            break
        if not ok:
            failed = n
            break
        best = n
        n += args.search_step
    while inconclusive is None and failed is not None and failed - best > args.search_resolution:
        mid = (best + failed) // 2
        ok = await probe(mid)
        if ok:
            best = mid
        elif ok is not None:
            failed = mid
    report.best_calls = best if inconclusive is None else None
    if inconclusive is not None:
        reasons = ", ".join(inconclusive.not_gateway_bound)
        report.search_note = (
            f"inconclusive: N={inconclusive.calls} was not gateway-bound ({reasons}); "
            f"highest N meeting the service level before it: {best}"
        )
    elif failed is None:
        report.search_note = f"every step up to {args.search_max} met the service level"
    else:
        report.search_note = f"highest N meeting the service level: {best} (missed at {failed})"


def _steps(text: str) -> list[int]:
    steps = [int(part) for part in text.split(",") if part.strip()]
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of call counts >= 1")
    return steps


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the Markdown table; write ``--json``."""
    parser = argparse.ArgumentParser(
        description="Load benchmark: gateway CPU, memory, loop lag and latency per concurrent call.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=_steps, default=[1, 10, 20, 40], help="e.g. 1,10,20")
    parser.add_argument("--search", action="store_true", help="find the highest N meeting the SLO")
    parser.add_argument("--search-start", type=int, default=10, help="first N after N=1")
    parser.add_argument("--search-step", type=int, default=10, help="N grows by this")
    parser.add_argument("--search-max", type=int, default=200, help="largest N tried")
    parser.add_argument(
        "--search-resolution", type=int, default=5, help="bisect until pass and miss are this close"
    )
    parser.add_argument("--window-s", type=float, default=30.0, help="measured window per step")
    parser.add_argument("--ramp-s", type=float, default=5.0, help="calls start over this long")
    parser.add_argument("--settle-s", type=float, default=3.0, help="wait after the ramp")
    parser.add_argument(
        "--idle-s", type=float, default=2.0, help="gateway idle CPU measured this long"
    )
    parser.add_argument(
        "--tail-s", type=float, default=3.0, help="callers stay after the window (late answers)"
    )
    parser.add_argument(
        "--pin",
        choices=["auto", "on", "off"],
        default="auto",
        help="gateway on the first CPU, emulator and generator on the others (auto: >= 2 CPUs)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra gateway setting, VALUE in TOML (e.g. limits.admission_loop_lag_ms=100)",
    )
    parser.add_argument(
        "--gateway-root",
        type=lambda p: Path(p).resolve(),
        default=REPO,
        metavar="PATH",
        help="checkout whose .venv runs the gateway and emulator (default: this repo)",
    )
    args = parser.parse_args(argv)
    if not (args.gateway_root / ".venv/bin/sonic-gateway").exists():
        parser.error(f"{args.gateway_root}/.venv/bin/sonic-gateway not found")
    cpus = sorted(os.sched_getaffinity(0))
    pin = args.pin == "on" or (args.pin == "auto" and len(cpus) >= 2)
    if pin and len(cpus) < 2:
        parser.error("--pin on needs at least 2 CPUs")
    args.gateway_cpus = {cpus[0]} if pin else None
    args.other_cpus = set(cpus[1:]) if pin else None
    # Children must get the default SIGINT disposition (a shell may start us with it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        report = anyio.run(_main, args)
    except KeyboardInterrupt:
        print("bench_load: interrupted", file=sys.stderr)
        return 130
    print(markdown(report.rows))
    if report.search_note:
        print(f"\n{report.search_note}")
    for row in report.rows:
        for error in row.errors[:5]:
            print(f"N={row.calls}: {error}", file=sys.stderr)
    if args.json is not None:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
