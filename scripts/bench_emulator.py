"""Benchmark: the Nova Sonic emulator's CPU per call-second under N concurrent real-time sessions.

Run from the repository root::

    .venv/bin/python scripts/bench_emulator.py --sessions 50 100 [--window-s 20]

For each N: start ``sonic-gateway emulator --port 0 --stats-file F`` in its own process (or the
command given with ``--emulator-cmd``, e.g. another checkout's), open N sessions over
``ceil(N / --streams-per-connection)`` HTTP/2 + TLS connections, send each one 20 ms of 16 kHz
caller audio every 20 ms (``audioInput``; a cycle of ``--speech-ms`` speech then ``--silence-ms``
silence, so the emulator detects turns and answers), warm up ``--warmup-s``, then measure
``--window-s`` seconds: the emulator process's ``utime + stime`` from ``/proc/<pid>/stat`` over the
window divided by N x window is its CPU per call-second. At the end every session closes in order
(contentEnd, promptEnd, sessionEnd, END_STREAM) and the emulator stops.

The driver must not be what limits the figures, and must not be confused with the emulator: it is
a separate process, an ``asyncio.Protocol`` per connection with the ``h2`` state machine, and it
sends pre-encoded frames (every session sends the same bytes: the emulator runs with
``--no-verify-signatures``, so it checks frame CRCs and that request frames are signed, not the
signatures), so a send costs one ``h2`` DATA frame. Its own
CPU and its pacing lateness (how late each send left relative to its 20 ms schedule) are printed
next to the emulator's, with the emulator's reply-audio lateness over the window (the difference
of two ``--stats-file`` snapshots, so within a second of the window's edges).

Not a test: figures vary 20-40 % between runs on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import math
import os
import shlex
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import h2.config
import h2.connection
import h2.events
import h2.settings
import numpy as np
from smithy_aws_event_stream.events import EventMessage

ROOT: Final = Path(__file__).resolve().parent.parent
if "PYTHONPATH" not in os.environ:  # PYTHONPATH picks another checkout (--loop-block)
    sys.path.insert(0, str(ROOT))

from actors.wire import (  # noqa: E402 - the repository root goes on sys.path first
    AudioInput,
    AudioInputConfiguration,
    AudioOutputConfiguration,
    InferenceConfiguration,
    InputContentEnd,
    InputContentStart,
    PromptEnd,
    PromptStart,
    SessionEnd,
    SessionStart,
    TextConfiguration,
    TextInput,
    encode_input_event,
)

RATE: Final = 16_000
FRAME_MS: Final = 20
FRAME_BYTES: Final = RATE * FRAME_MS // 1000 * 2
PROMPT: Final = "bench-prompt"
AUDIO: Final = "bench-audio"
SYSTEM: Final = "bench-system"
PATH: Final = "/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------- frames


def request_frame(event_json: bytes) -> bytes:
    """One request frame as the SDK sends it: a signed outer frame around the chunk event."""
    chunk = b'{"bytes":"' + base64.b64encode(event_json) + b'"}'
    inner = EventMessage(
        headers={
            ":message-type": "event",
            ":event-type": "chunk",
            ":content-type": "application/json",
        },
        payload=chunk,
    ).encode()
    outer = EventMessage(
        headers={
            ":date": datetime.datetime.now(datetime.UTC),
            ":chunk-signature": bytes(32),
        },
        payload=inner,
    )
    return outer.encode()


def caller_audio(speech_ms: int, silence_ms: int) -> list[bytes]:
    """One cycle of caller audio in 20 ms frames: loud noise (voiced), then digital silence."""
    rng = np.random.default_rng(7)
    n = RATE * speech_ms // 1000
    speech = (rng.standard_normal(n) * 4000).clip(-32768, 32767).astype("<i2").tobytes()
    pcm = speech + bytes(2 * (RATE * silence_ms // 1000))
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


class Frames:
    """Every request frame a session sends, encoded once."""

    def __init__(self, speech_ms: int, silence_ms: int) -> None:
        opening = [
            SessionStart(inference_configuration=InferenceConfiguration()),
            PromptStart(
                prompt_name=PROMPT,
                text_output_configuration=TextConfiguration(),
                audio_output_configuration=AudioOutputConfiguration(
                    voice_id="matthew", sample_rate_hertz=24_000
                ),
            ),
            InputContentStart(
                prompt_name=PROMPT,
                content_name=SYSTEM,
                type="TEXT",
                interactive=False,
                role="SYSTEM",
                text_input_configuration=TextConfiguration(),
            ),
            TextInput(prompt_name=PROMPT, content_name=SYSTEM, content="You are a test agent."),
            InputContentEnd(prompt_name=PROMPT, content_name=SYSTEM),
            InputContentStart(
                prompt_name=PROMPT,
                content_name=AUDIO,
                type="AUDIO",
                interactive=True,
                role="USER",
                audio_input_configuration=AudioInputConfiguration(sample_rate_hertz=RATE),
            ),
        ]
        self.opening = b"".join(request_frame(encode_input_event(e)) for e in opening)
        self.audio = [
            request_frame(
                encode_input_event(AudioInput(prompt_name=PROMPT, content_name=AUDIO, content=pcm))
            )
            for pcm in caller_audio(speech_ms, silence_ms)
        ]
        closing = [
            InputContentEnd(prompt_name=PROMPT, content_name=AUDIO),
            PromptEnd(prompt_name=PROMPT),
            SessionEnd(),
        ]
        self.closing = b"".join(request_frame(encode_input_event(e)) for e in closing)
        # The SDK ends its input with an empty signed frame, then END_STREAM.
        self.end_of_input = EventMessage(
            headers={":date": datetime.datetime.now(datetime.UTC), ":chunk-signature": bytes(32)},
            payload=b"",
        ).encode()


# ---------------------------------------------------------------------------------- client


class Stream:
    __slots__ = (
        "ended",
        "headers_at",
        "offset",
        "opened_at",
        "pending",
        "phase",
        "received",
        "stream_id",
    )

    def __init__(self, stream_id: int, offset: float, phase: int) -> None:
        self.stream_id = stream_id
        self.offset = offset
        self.phase = phase
        self.pending: list[tuple[bytes, bool]] = []
        self.received = 0
        self.opened_at = time.monotonic()
        self.headers_at: float | None = None
        self.ended = asyncio.Event()


class Client(asyncio.Protocol):
    """One HTTP/2 connection carrying several sessions."""

    def __init__(self, authority: str) -> None:
        self.authority = authority
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        self.ready = asyncio.Event()
        self.lost = asyncio.Event()
        self.errors: list[str] = []
        self.flow_blocked = 0
        """Sends that waited for a WINDOW_UPDATE (the emulator acknowledged data late)."""
        self.sent = 0
        """Frames handed to the connection (after any wait for flow control)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 22}
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window((1 << 24) - 65_535)
        self.flush()
        self.ready.set()

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.received += len(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ResponseReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.headers_at = time.monotonic()
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    if isinstance(event, h2.events.StreamReset):
                        self.errors.append(f"reset {event.error_code}")
                    stream.ended.set()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.errors.append(f"goaway {event.error_code}")
            elif isinstance(event, h2.events.WindowUpdated):
                for stream in self.streams.values():
                    self._send_pending(stream)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for stream in self.streams.values():
            stream.ended.set()
        self.lost.set()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def open(self, offset: float, phase: int, opening: bytes) -> Stream:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", self.authority),
                (":path", PATH),
                ("content-type", "application/vnd.amazon.eventstream"),
                ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-EVENTS"),
            ],
        )
        stream = Stream(stream_id, offset, phase)
        self.streams[stream_id] = stream
        self.send(stream, opening)
        return stream

    def send(self, stream: Stream, data: bytes, *, end: bool = False) -> None:
        if stream.pending or self.conn.local_flow_control_window(stream.stream_id) < len(data):
            self.flow_blocked += 1
            stream.pending.append((data, end))
            return
        self.conn.send_data(stream.stream_id, data, end_stream=end)
        self.sent += 1
        self.flush()

    def _send_pending(self, stream: Stream) -> None:
        while stream.pending:
            data, end = stream.pending[0]
            if self.conn.local_flow_control_window(stream.stream_id) < len(data):
                return
            stream.pending.pop(0)
            self.conn.send_data(stream.stream_id, data, end_stream=end)
            self.sent += 1


# ---------------------------------------------------------------------------------- process


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks to seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_emulator(
    command: list[str], stats_file: Path | None
) -> tuple[subprocess.Popen[bytes], str, str]:
    extra = [] if stats_file is None else ["--stats-file", str(stats_file)]
    process = subprocess.Popen(
        [*command, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    endpoint = ca = ""
    deadline = time.monotonic() + 30
    while not (endpoint and ca) and time.monotonic() < deadline:
        line = process.stdout.readline().decode(errors="replace").strip()
        if not line and process.poll() is not None:
            break
        key, _, value = line.partition(": ")
        if key == "endpoint":
            endpoint = value
        elif key == "ca_bundle":
            ca = value
    if not (endpoint and ca):
        process.kill()
        raise SystemExit(f"the emulator did not start: {command}")
    # Keep draining its stdout (it logs per session) so a full pipe never blocks it.
    asyncio.get_event_loop().run_in_executor(None, _drain, process.stdout)
    return process, endpoint, ca


def _drain(pipe: Any) -> None:
    log = os.environ.get("BENCH_EMULATOR_LOG")
    with open(log or os.devnull, "ab") as out:
        for line in iter(pipe.readline, b""):
            out.write(line)


def read_stats(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def window_lateness(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any] | None:
    """p50/p99 of the emulator's reply lateness between two --stats-file snapshots.

    A percentile is the upper bound of its bucket (the emulator keeps fixed buckets).
    """
    if not first or not last:
        return None
    before = first["reply_lateness_ms"]["buckets"]
    after = last["reply_lateness_ms"]["buckets"]
    counts = [(k, after[k] - before.get(k, 0)) for k in after]
    total = sum(n for _, n in counts)
    if total == 0:
        return {"count": 0}

    def bound(q: float) -> str:
        seen = 0
        for key, n in counts:
            seen += n
            if n and seen >= q * total:
                return key.removeprefix("le_") if key.startswith("le_") else "> last bound"
        return "?"

    return {
        "count": total,
        "p50": bound(0.5),
        "p99": bound(0.99),
        "max_since_start": last["reply_lateness_ms"]["max"],
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_step(args: argparse.Namespace, sessions: int, frames: Frames) -> dict[str, Any]:
    stats_file = Path(tempfile.mkdtemp(prefix="bench-emulator-")) / "stats.json"
    command = (
        shlex.split(args.emulator_cmd)
        if args.emulator_cmd
        else [
            str(ROOT / ".venv/bin/sonic-gateway"),
            "emulator",
            "--port",
            "0",
            "--no-verify-signatures",  # the frames are pre-built, their signatures are zeros
            "--vad-block-ms",  # turn ends on 100 ms blocks: the load-test setting
            "100",
            # The timing the figures in docs/performance.md were measured with (the default
            # follows each session's endpointingSensitivity, 1.75 s at MEDIUM).
            "--end-of-turn-silence-ms",
            "600",
            "--think-ms",
            "200",
            "--think-jitter-ms",
            "0",
        ]
    )
    if args.pin:
        # The emulator on CPU 0, this driver on CPU 1: neither steals the other's core.
        command = ["taskset", "-c", "0", *command]
        os.sched_setaffinity(0, {1})
    process, endpoint, ca = start_emulator(command, None if args.no_stats else stats_file)
    loop = asyncio.get_running_loop()
    host, port = endpoint.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["h2"])
    clients: list[Client] = []
    streams: list[tuple[Client, Stream]] = []
    per_conn = args.streams_per_connection
    period = FRAME_MS / 1000.0
    lateness: list[float] = []
    measuring = False
    stop = False
    try:
        for index in range(math.ceil(sessions / per_conn)):
            _, client = await loop.create_connection(
                lambda: Client(f"{host}:{port}"), host, int(port), ssl=context
            )
            clients.append(client)
            await client.ready.wait()
            for _ in range(min(per_conn, sessions - index * per_conn)):
                # Sessions spread over the 20 ms period, as independent calls are.
                offset = len(streams) * period / sessions
                # ...and at different points of the speech cycle (turns do not all end at once).
                phase = len(streams) * len(frames.audio) // sessions
                streams.append((client, client.open(offset, phase, frames.opening)))
        started = time.monotonic()
        n_audio = len(frames.audio)

        async def pace(client: Client, mine: list[Stream]) -> None:
            tick = 0
            while not stop:
                base = started + tick * period
                for stream in mine:
                    due = base + stream.offset
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if stop or client.lost.is_set():
                        return
                    if measuring:
                        lateness.append(time.monotonic() - due)
                    client.send(stream, frames.audio[(tick + stream.phase) % n_audio])
                tick += 1

        async with asyncio.TaskGroup() as pacers:  # left when every pacer has stopped
            for client in clients:
                mine = [s for c, s in streams if c is client]
                pacers.create_task(pace(client, mine))
            await asyncio.sleep(args.warmup_s)
            measuring = True
            t0, e0, d0 = time.monotonic(), cpu_seconds(process.pid), time.process_time()
            sent0 = sum(c.sent for c in clients)
            stats0 = read_stats(stats_file)
            await asyncio.sleep(args.window_s)
            t1, e1, d1 = time.monotonic(), cpu_seconds(process.pid), time.process_time()
            sent1 = sum(c.sent for c in clients)
            stats1 = read_stats(stats_file)
            measuring = False
            received = sum(s.received for _, s in streams)
            stop = True
        for client, stream in streams:
            if not client.lost.is_set():
                client.send(stream, frames.closing + frames.end_of_input, end=True)
        await asyncio.wait_for(asyncio.gather(*(s.ended.wait() for _, s in streams)), timeout=30)
        await asyncio.sleep(1.2)  # one more --stats-file write after the sessions ended
        emulator_stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()
        process.send_signal(2)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    window = t1 - t0
    call_s = sessions * window
    errors = [e for c in clients for e in c.errors]
    return {
        "sessions": sessions,
        "connections": len(clients),
        "window_s": round(window, 2),
        "emulator_cpu_ms_per_call_s": round(1000 * (e1 - e0) / call_s, 2),
        "emulator_core_share": round((e1 - e0) / window, 3),
        "driver_cpu_ms_per_call_s": round(1000 * (d1 - d0) / call_s, 2),
        "driver_lateness_ms_p50_p99_max": [
            round(1000 * percentile(lateness, 0.5), 2),
            round(1000 * percentile(lateness, 0.99), 2),
            round(1000 * max(lateness, default=float("nan")), 2),
        ],
        "events_delivered_share": round((sent1 - sent0) / (sessions * window * 1000 / FRAME_MS), 3),
        "received_mb": round(received / 1e6, 2),
        "driver_flow_blocked_sends": sum(c.flow_blocked for c in clients),
        "emulator_turns": emulator_stats.get("turns"),
        "emulator_reply_lateness_ms_window": window_lateness(stats0, stats1),
        "emulator_ended": {k: v for k, v in emulator_stats.items() if k.startswith("ended_")},
        "errors": errors[:5],
    }


async def loop_block(args: argparse.Namespace, frames: Frames) -> dict[str, Any]:
    """The longest event-loop stall per reply, emulator in THIS process (``--loop-block``).

    One session at a time speaks ``--turns`` turns; a 1 ms ticker measures how late the loop
    wakes it. Two sessions in a row: the first renders its replies (first use), the second
    speaks the same texts (cached).
    """
    from gateway.emulator import EmulatorSettings, run_emulator

    stalls: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - before - 0.001)

    settings = EmulatorSettings(
        think_ms=200,
        think_jitter_ms=0,
        end_of_turn_silence_ms=600.0,
        answer_ms=2000,
        realtime_factor=4.0,
    )
    results = []
    async with run_emulator(settings) as emu, asyncio.TaskGroup() as monitors:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context(cafile=str(emu.ca_path))
        context.set_alpn_protocols(["h2"])
        monitors.create_task(ticker())
        for label in ("first use", "cached"):
            _, client = await loop.create_connection(
                lambda: Client(f"127.0.0.1:{emu.port}"), "127.0.0.1", emu.port, ssl=context
            )
            stream = client.open(0.0, 0, frames.opening)
            cycle = len(frames.audio)
            for turn in range(args.turns):
                stalls.clear()
                for tick in range(cycle):
                    client.send(stream, frames.audio[tick])
                    await asyncio.sleep(FRAME_MS / 1000.0)
                results.append(
                    {
                        "session": label,
                        "turn": turn + 1,
                        "max_loop_stall_ms": round(1000 * max(stalls), 1),
                        "p99_loop_stall_ms": round(1000 * percentile(stalls, 0.99), 1),
                    }
                )
            client.send(stream, frames.closing + frames.end_of_input, end=True)
            await asyncio.wait_for(stream.ended.wait(), 10)
            client.transport.close()  # type: ignore[union-attr]
        stop.set()  # the ticker returns; leaving the task group waits for it
    return {"loop_block": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--streams-per-connection", type=int, default=10)
    parser.add_argument("--speech-ms", type=int, default=1500)
    parser.add_argument("--silence-ms", type=int, default=3000)
    parser.add_argument(
        "--emulator-cmd",
        help="command starting the emulator (gets --stats-file F appended; must print "
        "'endpoint: ...' and 'ca_bundle: ...'); default: this checkout's sonic-gateway emulator",
    )
    parser.add_argument(
        "--no-stats", action="store_true", help="do not pass --stats-file (older emulators)"
    )
    parser.add_argument(
        "--loop-block",
        action="store_true",
        help="instead: the event-loop stall per reply, emulator in this process",
    )
    parser.add_argument("--turns", type=int, default=3, help="turns per session (--loop-block)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run the emulator on CPU 0 and the driver on CPU 1 (taskset / sched_setaffinity)",
    )
    args = parser.parse_args()
    frames = Frames(args.speech_ms, args.silence_ms)
    if args.loop_block:
        for row in asyncio.run(loop_block(args, frames))["loop_block"]:
            print(json.dumps(row), flush=True)
        return
    rows = []
    for sessions in args.sessions:
        row = asyncio.run(run_step(args, sessions, frames))
        print(json.dumps(row), flush=True)
        rows.append(row)
    if len(rows) > 1:
        print(
            "emulator CPU ms per call-second:",
            ", ".join(f"N={r['sessions']}: {r['emulator_cpu_ms_per_call_s']}" for r in rows),
            f"(median {statistics.median(r['emulator_cpu_ms_per_call_s'] for r in rows)})",
        )


if __name__ == "__main__":
    main()
