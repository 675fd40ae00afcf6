"""End-to-end call figures from the bundled replays: greeting, per-turn latency, barge-in stop.

Runs each bundled scenario (scripts/calls/*.toml, except the rejected-socket one) ``--rounds``
times through the in-process stack (Nova Sonic emulator + gateway + simulated Twilio peer over a
real WebSocket) and prints, from two vantage points:

* the gateway's own report (``actors.call.CallReport``): per turn, model time (caller end of
  speech -> first Sonic audio) and gateway time (first Sonic audio -> first media sent to Twilio);
  barge-in signal -> ``clear`` sent; call start -> first greeting media sent;
* the simulated Twilio peer: ``start`` sent -> first media received; caller end of speech -> first
  assistant media received; caller starts talking over the answer -> ``clear`` received, and how
  much assistant audio the caller still heard after starting to talk.

Model time here is the emulator's, on the timing these figures have always been measured with
(600 ms end-of-turn silence, exactly 200 ms think time, unless a scenario's ``[emulator]`` table
says otherwise), not the emulator's default (Nova 2 Sonic's documented pause, 1.75 s at
``MEDIUM``); a real Nova Sonic's endpointing replaces it. Usage::

    .venv/bin/python scripts/bench_calls.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
from typing import TYPE_CHECKING, Final

import anyio
import msgspec

from gateway.config import LoggingConfig
from gateway.logs import configure_logging
from gateway.replay import bundled_scenarios, load_scenario, replay_stack

if TYPE_CHECKING:
    from pathlib import Path

# Comparable with docs/performance.md: the emulator timing from before its default followed the
# session's endpointingSensitivity. A scenario's own [emulator] table wins.
EMULATOR_TIMING: Final = {"end_of_turn_silence_ms": 600.0, "think_ms": 200, "think_jitter_ms": 0}


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return (
        f"n={len(values):3d}  median {statistics.median(values):7.1f}  p90 {p90:7.1f}  "
        f"max {values[-1]:7.1f} ms"
    )


async def _run(paths: list[Path], rounds: int) -> None:
    rows: dict[str, list[float]] = {
        "gateway: call start -> first greeting media sent": [],
        "gateway: per turn, model time (end of speech -> first Sonic audio)": [],
        "gateway: per turn, gateway time (first Sonic audio -> first media sent)": [],
        "gateway: per turn, total (end of speech -> first media sent)": [],
        "gateway: barge-in signal -> clear sent": [],
        "peer: start sent -> first media received": [],
        "peer: caller end of speech -> first assistant media": [],
        "peer: caller starts talking over answer -> clear received": [],
        "peer: assistant audio heard after starting to talk": [],
    }
    failures = 0
    for _ in range(rounds):
        for path in paths:
            scenario = load_scenario(path)
            scenario = msgspec.structs.replace(
                scenario, emulator={**EMULATOR_TIMING, **scenario.emulator}
            )
            async with replay_stack(scenario) as stack:
                peer = await stack.run()
                own = stack.finished.get(peer.call_sid)
            failures += not peer.passed
            if peer.greeting_ms is not None:
                rows["peer: start sent -> first media received"].append(peer.greeting_ms)
            rows["peer: caller end of speech -> first assistant media"] += [
                t.latency_ms for t in peer.turns if t.latency_ms is not None and not t.barge_in
            ]
            for b in peer.barge_ins:
                if b.stop_ms is not None:
                    rows["peer: caller starts talking over answer -> clear received"].append(
                        b.stop_ms
                    )
                rows["peer: assistant audio heard after starting to talk"].append(b.heard_after_ms)
            if own is None:
                continue
            if own.greeting_ms is not None:
                rows["gateway: call start -> first greeting media sent"].append(own.greeting_ms)
            for turn in own.turns:
                if turn.model_ms is not None:
                    rows[
                        "gateway: per turn, model time (end of speech -> first Sonic audio)"
                    ].append(turn.model_ms)
                if turn.gateway_ms is not None:
                    rows[
                        "gateway: per turn, gateway time (first Sonic audio -> first media sent)"
                    ].append(turn.gateway_ms)
                if turn.total_ms is not None:
                    rows["gateway: per turn, total (end of speech -> first media sent)"].append(
                        turn.total_ms
                    )
            rows["gateway: barge-in signal -> clear sent"] += [
                b.stop_ms for b in own.barge_ins if b.stop_ms is not None
            ]
    width = max(len(k) for k in rows)
    print(f"{len(paths)} scenarios x {rounds} rounds; {failures} failed expectations")
    for name, values in rows.items():
        print(f"{name:<{width}}  {_fmt(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging(LoggingConfig(level="error"))
    paths = [p for p in bundled_scenarios() if "rejected" not in p.stem]
    anyio.run(_run, paths, args.rounds, backend="asyncio")


if __name__ == "__main__":
    main()
