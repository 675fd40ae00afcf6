"""Benchmark: the Nova Sonic client through the real SDK (CRT HTTP/2, SigV4, event stream).

Run from the repository root::

    .venv/bin/python scripts/bench_sonic.py [--events 300] [--pings 150] [--rounds 10]
    .venv/bin/python scripts/bench_sonic.py --input-only [--events 300]

The server side runs in a SUBPROCESS (so ``time.process_time`` counts the client only): the
emulator for CPU and set-up figures, and a small TLS + HTTP/2 echo server (same hypercorn stack,
same event-stream framing) for the round trip of a small event, since the emulator does not echo.

Measures:

* CPU per ``audioInput`` event at 20, 40 and 60 ms of 16 kHz audio per event: JSON + base64
  (msgspec), event-stream framing, SigV4 event signing, CRT write; sent unpaced, CPU of the whole
  window (including a short settle) divided by the event count. For the lean input path
  (``actors.sonic.event_writer``: our framing and signing, one write per unit) and for the SDK
  publisher on the same kind of stream; at 20 ms also paced in real time (what a call does:
  one event, one loop wake-up, one CRT write every 20 ms). ``--input-only`` stops there. Also the
  lean core alone (frame + sign one event, no I/O).
* CPU per ``audioOutput`` event received (100 ms of 24 kHz audio each): CRT read, event-stream
  decode, JSON + base64 decode, the protocol core, the conversation's event channel.
* Stream set-up latency: cold (new connector: TCP + TLS + HTTP/2 + request), with the
  connect-level pool (warm HTTP/2 connection), and from the stream-level pool.
* Round trip of a small event while audio flows (20 and 60 ms per event): median / p90 / max,
  with the transport's TCP_NODELAY remedy off and on (``SonicSettings.tcp_nodelay``: the option
  set on a dup of the CRT socket's descriptor; awscrt has no socket option, nothing is patched).

Not a test: figures vary 20-40 % between runs on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

import audiocodec
from actors.sonic import (
    ChunkSigner,
    PoolSettings,
    SdkInputWriter,
    SonicAudio,
    SonicAudioEnded,
    SonicConnector,
    SonicSettings,
    StaticCredentials,
)
from actors.wire import TextInput, encode_audio_input, encode_input_event

# ---------------------------------------------------------------------------- server subprocess


def _announce(info: dict[str, str]) -> None:
    # The server's logs go to /dev/null; where it listens goes through a file the parent reads.
    Path(sys.argv[sys.argv.index("--info") + 1]).write_text(json.dumps(info))


async def _serve_emulator() -> None:
    from gateway.emulator import EmulatorSettings, run_emulator

    settings = EmulatorSettings(
        think_ms=0,
        think_jitter_ms=0,
        answer_ms=6000,
        output_chunk_ms=100,
        realtime_factor=50.0,
        end_of_turn_silence_ms=300.0,
    )
    async with run_emulator(settings) as emu:
        _announce({"endpoint": emu.endpoint_uri, "ca": str(emu.ca_path)})
        await anyio.to_thread.run_sync(sys.stdin.read)


async def _serve_echo() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from actors.wire import decode_chunk_payload
    from gateway.emulator.framing import FrameSplitter, decode_outer_frame, encode_event_frame
    from gateway.emulator.tls import make_tls_material

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        headers = [(b"content-type", b"application/vnd.amazon.eventstream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        splitter = FrameSplitter()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            for frame in splitter.feed(message.get("body", b"")):
                chunk = decode_outer_frame(frame)
                if chunk.payload is not None and b"ping" in decode_chunk_payload(chunk.payload):
                    await send(
                        {
                            "type": "http.response.body",
                            "body": encode_event_frame(chunk.payload),
                            "more_body": True,
                        }
                    )
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with make_tls_material() as tls:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        config = Config()
        config.certfile, config.keyfile = str(tls.cert_path), str(tls.key_path)
        config.alpn_protocols = ["h2"]
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = config.errorlog = None
        stop = anyio.Event()
        _announce({"endpoint": f"https://127.0.0.1:{port}", "ca": str(tls.ca_path)})
        async with anyio.create_task_group() as tg:

            async def wait_stdin() -> None:
                await anyio.to_thread.run_sync(sys.stdin.read)
                stop.set()

            tg.start_soon(wait_stdin)
            await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
            tg.cancel_scope.cancel()


@contextlib.contextmanager
def server(kind: str) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        info_path = Path(tmp) / "info.json"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--info", str(info_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdin is not None
        deadline = time.monotonic() + 20
        while not info_path.exists() or not info_path.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.05)  # start-up handshake of a benchmark, not a call path
        try:
            yield json.loads(info_path.read_text())
        finally:
            proc.stdin.close()
            proc.wait(timeout=10)


def settings_for(info: dict[str, str], **kw: Any) -> SonicSettings:
    return SonicSettings(endpoint_uri=info["endpoint"], ca_bundle=Path(info["ca"]), **kw)


# ---------------------------------------------------------------------------- measurements


async def cpu_per_input_event(
    info: dict[str, str], batch_ms: int, events: int, *, lean: bool = True, paced: bool = False
) -> dict[str, float]:
    """ms of CPU per event: the process, the event-loop thread, and (paced) ``send_unit`` alone."""
    settings = settings_for(info, audio_batch_ms=batch_ms)
    async with SonicConnector(
        settings, credentials=StaticCredentials(), pool=PoolSettings(size=0)
    ) as conn:
        stream = await conn.open_stream()
        assert stream.statistics()["lean_input"] == 1, "the lean input path is not available"
        if not lean:  # the SDK publisher from here on (it continues the same signature chain)
            stream._input = SdkInputWriter(stream._duplex.input_stream)
        await stream.send_unit(stream.protocol.open_audio())
        pcm = bytes(settings.batch_bytes)  # digital silence: the emulator stays quiet
        for _ in range(20):  # warm-up
            await stream.send_unit(stream.protocol.audio(pcm))
        await anyio.sleep(0.2)
        start, loop_start, in_send = time.process_time(), time.thread_time(), 0.0
        next_at = anyio.current_time()
        for _ in range(events):
            unit = stream.protocol.audio(pcm)
            before = time.thread_time()
            await stream.send_unit(unit)  # paced, the buffer has room: it never blocks
            in_send += time.thread_time() - before
            if paced:
                next_at += batch_ms / 1000
                await anyio.sleep_until(next_at)
        await anyio.sleep(0.1)  # let the CRT thread finish writing
        cpu, loop_cpu = time.process_time() - start, time.thread_time() - loop_start
        await stream.close()
    return {
        "process": cpu / events * 1000,
        "loop": loop_cpu / events * 1000,
        "send_unit": in_send / events * 1000,
    }


async def cpu_per_input_event_many(
    info: dict[str, str], streams: int, events: int, *, lean: bool
) -> dict[str, float]:
    """Like :func:`cpu_per_input_event`, paced at 20 ms on ``streams`` streams at once, staggered."""
    settings = settings_for(info, audio_batch_ms=20)
    async with SonicConnector(
        settings, credentials=StaticCredentials(), pool=PoolSettings(size=0)
    ) as conn:
        opened = [await conn.open_stream() for _ in range(streams)]
        for stream in opened:
            if not lean:
                stream._input = SdkInputWriter(stream._duplex.input_stream)
            await stream.send_unit(stream.protocol.open_audio())
        pcm = bytes(settings.batch_bytes)
        in_send = 0.0

        async def feed(stream: Any, offset: float) -> None:
            nonlocal in_send
            next_at = anyio.current_time() + offset
            for _ in range(events):
                await anyio.sleep_until(next_at)
                next_at += 0.02
                unit = stream.protocol.audio(pcm)
                before = time.thread_time()
                await stream.send_unit(unit)
                in_send += time.thread_time() - before

        await anyio.sleep(0.2)
        start, loop_start = time.process_time(), time.thread_time()
        async with anyio.create_task_group() as tg:
            for i, stream in enumerate(opened):
                tg.start_soon(feed, stream, 0.02 * i / streams)
        await anyio.sleep(0.1)
        cpu, loop_cpu = time.process_time() - start, time.thread_time() - loop_start
        for stream in opened:
            await stream.close()
    total = streams * events
    return {
        "process": cpu / total * 1000,
        "loop": loop_cpu / total * 1000,
        "send_unit": in_send / total * 1000,
    }


def cpu_of_lean_core(events: int) -> float:
    """µs to frame and sign one 20 ms audioInput event (no I/O)."""
    event = encode_audio_input("p" * 36, "c" * 36, bytes(640))
    core = ChunkSigner(secret_access_key="dummy", region="us-east-1", service="bedrock")
    prior, now_us = b"0" * 64, time.time_ns() // 1000
    start = time.process_time()
    for i in range(events):
        _, prior = core.sign_frames([event], now_us + i * 20_000, prior)
    return (time.process_time() - start) / events * 1e6


async def input_figures(info: dict[str, str], events: int, streams: int) -> None:
    print("CPU per audioInput event, µs (process: all threads, CRT included; loop: the event-loop")
    print(
        "thread; send_unit: the gateway's send path alone, measured paced where it never blocks):"
    )
    print(f"  lean core alone (frame + sign, no I/O): {cpu_of_lean_core(events * 20):6.1f}")
    for batch_ms, paced in ((20, False), (40, False), (60, False), (20, True)):
        label = f"{batch_ms} ms/event{', paced' if paced else ', unpaced'}"
        n = min(events, 250) if paced else events
        for name, lean in (("SDK publisher", False), ("lean", True)):
            r = await cpu_per_input_event(info, batch_ms, n, lean=lean, paced=paced)
            send = f"  send_unit {r['send_unit'] * 1000:6.1f}" if paced else ""
            print(
                f"  {label:20s} {name:13s} process {r['process'] * 1000:6.1f}"
                f"  loop {r['loop'] * 1000:6.1f}{send}"
            )
    label = f"20 ms/event, paced, {streams} streams"
    for name, lean in (("SDK publisher", False), ("lean", True)):
        r = await cpu_per_input_event_many(info, streams, 150, lean=lean)
        print(
            f"  {label:20s} {name:13s} process {r['process'] * 1000:6.1f}"
            f"  loop {r['loop'] * 1000:6.1f}  send_unit {r['send_unit'] * 1000:6.1f}"
        )


async def cpu_per_output_event(info: dict[str, str]) -> tuple[float, int]:
    settings = settings_for(info)
    async with (
        SonicConnector(
            settings, credentials=StaticCredentials(), pool=PoolSettings(size=0)
        ) as conn,
        conn.conversation() as conv,
    ):
        speech = audiocodec.speech_like(16000, 700, 3) + bytes(16000 * 2 * 2 // 5 * 2)
        for offset in range(0, len(speech), 640):
            await conv.send_audio(speech[offset : offset + 640])
        count, start = 0, 0.0
        async for event in conv.events:
            if isinstance(event, SonicAudio):
                if count == 0:
                    start = time.process_time()
                count += 1
            elif isinstance(event, SonicAudioEnded):
                break
        cpu = time.process_time() - start
    return cpu / max(count - 1, 1) * 1000, count


async def setup_latency(info: dict[str, str], rounds: int) -> dict[str, list[float]]:
    settings = settings_for(info)
    results: dict[str, list[float]] = {"cold": [], "connect_pool": [], "stream_pool": []}
    for _ in range(rounds):
        async with SonicConnector(
            settings, credentials=StaticCredentials(), pool=PoolSettings(size=0)
        ) as conn:
            t = time.perf_counter()
            stream = await conn.open_stream()
            results["cold"].append((time.perf_counter() - t) * 1000)
            await stream.close()
    async with SonicConnector(
        settings, credentials=StaticCredentials(), pool=PoolSettings(size=1)
    ) as conn:
        await conn.wait_warm()
        for _ in range(rounds):
            t = time.perf_counter()
            stream = await conn.open_stream()
            results["connect_pool"].append((time.perf_counter() - t) * 1000)
            await stream.close()
    pool = PoolSettings(size=1, level="stream", max_idle_s=60)
    async with SonicConnector(settings, credentials=StaticCredentials(), pool=pool) as conn:
        await conn.wait_warm()
        for _ in range(rounds):
            t = time.perf_counter()
            stream = await conn.open_stream()
            results["stream_pool"].append((time.perf_counter() - t) * 1000)
            await stream.close()
            await anyio.sleep(0.3)  # let the pool refill
    return results


async def round_trip(info: dict[str, str], pings: int, nodelay: bool, batch_ms: int) -> list[float]:
    settings = settings_for(info, audio_batch_ms=batch_ms, tcp_nodelay=nodelay)
    async with SonicConnector(
        settings, credentials=StaticCredentials(), pool=PoolSettings(size=0)
    ) as conn:
        stream = await conn.open_stream()
        assert conn.statistics().nodelay_sockets == (1 if nodelay else 0)
        await stream.send_unit(stream.protocol.open_audio())
        receiver = (
            stream._receiver
        )  # the bench reads the raw SDK stream: echoes are not Sonic events
        sent_at: dict[int, float] = {}
        rtts: list[float] = []
        done = anyio.Event()

        async def receive() -> None:
            while len(rtts) < pings:
                chunk = await receiver.receive()
                if chunk is None:
                    break
                body = json.loads(chunk.value.bytes_)
                seq = int(body["event"]["textInput"]["content"].split()[1])
                rtts.append((time.perf_counter() - sent_at[seq]) * 1000)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            frame = bytes(settings.batch_bytes)
            for seq in range(pings):
                for _ in range(max(1, 100 // batch_ms)):  # ~100 ms of audio between pings
                    await stream.send_unit(stream.protocol.audio(frame))
                    await anyio.sleep(batch_ms / 1000)
                ping = TextInput(
                    prompt_name=stream.protocol.prompt_name,
                    content_name="ping",
                    content=f"ping {seq}",
                )
                sent_at[seq] = time.perf_counter()
                await stream.send_unit([encode_input_event(ping)])
            with anyio.move_on_after(5):
                await done.wait()
            tg.cancel_scope.cancel()
        await stream._abort()  # the echo server does not speak the Sonic close sequence
    return rtts


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"median {statistics.median(ordered):6.2f}  p90 {p90:6.2f}  max {ordered[-1]:6.2f}  (n={len(ordered)})"


async def main(args: argparse.Namespace) -> None:
    with server("emulator") as info:
        await input_figures(info, args.events, args.streams)
        if args.input_only:
            return
        ms, count = await cpu_per_output_event(info)
        print(f"CPU per audioOutput event (100 ms @ 24 kHz): {ms:.3f} ms (n={count})")
        latency = await setup_latency(info, args.rounds)
        print("Stream set-up latency (ms, open_stream until ready):")
        for name, values in latency.items():
            print(f"  {name:13s} {summary(values)}")
    with server("echo") as info:
        print("Small-event round trip (ms) while audio flows:")
        for batch_ms in (20, 60):
            for nodelay in (False, True):
                rtts = await round_trip(info, args.pings, nodelay, batch_ms)
                label = f"{batch_ms} ms audio, {'TCP_NODELAY' if nodelay else 'default    '}"
                print(f"  {label}  {summary(rtts)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--pings", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--input-only", action="store_true", help="only the audioInput CPU figures")
    parser.add_argument("--streams", type=int, default=20, help="streams of the concurrent figure")
    parser.add_argument("--serve", choices=["emulator", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve == "emulator":
        anyio.run(_serve_emulator)
    elif ns.serve == "echo":
        anyio.run(_serve_echo)
    else:
        anyio.run(main, ns)
