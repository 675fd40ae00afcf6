"""The WebSocket edge alone: server CPU per inbound message for each uvicorn WebSocket implementation.

Why: a media stream is 50 small inbound messages a second per call (and 20 outbound with 100 ms
chunks), so the edge's cost per message is paid thousands of times a second. This benchmark
isolates it: a uvicorn server (its own process, uvloop, the implementation under test) runs a
minimal ASGI app that accepts, reads every message and answers every 5th with a message of
Twilio-media size, the gateway's ratio of outbound to inbound messages during an answer (2 per
100 ms against 5). Clients in this process pace ``--calls`` sockets at 20 ms each, sending the
byte size of a Twilio ``media`` message. The server's CPU comes from ``/proc/<pid>/stat``.

Command (from the repository root)::

    .venv/bin/python scripts/bench_ws_edge.py --calls 40 --seconds 10

Implementations: uvicorn's ``websockets-sansio`` and ``wsproto``, and the gateway's
``gateway.ws_protocol:MediaWebSocketProtocol`` (``websockets-sansio`` without the per-message
reader pause).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import websockets

ROOT: Final = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS: Final = (
    "websockets-sansio",
    "wsproto",
    "gateway.ws_protocol:MediaWebSocketProtocol",
)
MEDIA_BYTES: Final = 330  # a Twilio inbound ``media`` message (JSON, 160 B of base64'd μ-law)
OUT_BYTES: Final = 1200  # a 100 ms outbound ``media`` message
FRAME_S: Final = 0.020

SERVER: Final = """
import sys, uvicorn
from gateway.ws_protocol import MediaWebSocketProtocol

OUT = "x" * int(sys.argv[3])

async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    n = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        n += 1
        if n % 5 == 0:
            await send({"type": "websocket.send", "text": OUT})

ws = sys.argv[2]
if ":" in ws:
    ws = MediaWebSocketProtocol
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), ws=ws, loop="uvloop",
            log_level="warning", lifespan="off")
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(port: int, calls: int, seconds: float, pid: int) -> dict[str, Any]:
    message = "m" * MEDIA_BYTES
    sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/") for _ in range(calls)]
    received = 0

    async def drain(ws: Any) -> None:
        nonlocal received
        async for _ in ws:
            received += 1

    async with asyncio.TaskGroup() as tg:
        for ws in sockets:
            tg.create_task(drain(ws))
        await asyncio.sleep(1.0)  # connections settle before the window
        start_cpu, start = cpu_seconds(pid), time.monotonic()
        sent = 0
        deadline = start
        while time.monotonic() - start < seconds:
            deadline += FRAME_S
            for ws in sockets:
                await ws.send(message)
            sent += calls
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(0.5)  # the last messages are read
        cpu = cpu_seconds(pid) - start_cpu
        for ws in sockets:
            await ws.close()
    return {"sent": sent, "received": received, "server_cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()
    print(
        "| implementation | inbound msgs | server CPU µs per inbound message (incl. 1 in 5 answered) |"
    )
    print("|---|---|---|")
    for impl in IMPLEMENTATIONS:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(args.port), impl, str(OUT_BYTES)], cwd=ROOT
        )
        try:
            time.sleep(2.0)
            result = asyncio.run(drive(args.port, args.calls, args.seconds, server.pid))
        finally:
            server.terminate()
            server.wait()
        per_msg = 1e6 * result["server_cpu_s"] / max(result["sent"], 1)
        print(f"| {impl} | {result['sent']} | {per_msg:.1f} |", flush=True)


if __name__ == "__main__":
    main()
