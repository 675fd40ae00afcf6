"""``sonic-gateway serve`` stopped by signals, as a real process: drain, goodbye, exit status.

Each test starts ``serve`` (embedded emulator backend) on 127.0.0.1 with a free port and JSON logs
on stderr, opens a call over a real WebSocket as Twilio would (silence every 20 ms, marks echoed at
once), and signals the process mid-call. ``TMPDIR`` points at the test's own directory so the
emulator's temporary CA directory can be seen to go away.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
import pytest
import websockets
from anyio.streams.text import TextReceiveStream
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.gateway.conftest import connected_frame, media_frame, start_frame, stop_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from anyio.abc import Process

pytestmark = pytest.mark.anyio

SILENCE = b"\xff" * 160
STARTUP_S = 30.0


class ServeProcess:
    """A running ``serve`` with its log events, parsed from JSON lines on stderr."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.port = 0
        self._changed = anyio.Event()

    async def read_logs(self) -> None:
        assert self.process.stderr is not None
        buffer = ""
        async for text in TextReceiveStream(self.process.stderr):
            buffer += text
            *lines, buffer = buffer.split("\n")
            for line in lines:
                if line.startswith("{"):
                    self.events.append(msgspec.json.decode(line))
            self._changed.set()
            self._changed = anyio.Event()

    def find(self, event: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("event") == event), None)

    async def wait_event(self, event: str, timeout_s: float = STARTUP_S) -> dict[str, Any]:
        with anyio.fail_after(timeout_s):
            while (found := self.find(event)) is None:
                await self._changed.wait()
        return found

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Any]:
    """Start ``serve`` with extra environment; yields an async starter (one process per test)."""
    async with anyio.create_task_group() as tg:
        started: list[ServeProcess] = []

        async def start(**env: str) -> ServeProcess:
            environ = {
                **{k: v for k, v in os.environ.items() if not k.startswith("SONIC_GATEWAY_")},
                "TMPDIR": str(tmp_path),
                "SONIC_GATEWAY_SERVER__PORT": "0",
                "SONIC_GATEWAY_LOGGING__FORMAT": "json",
                "SONIC_GATEWAY_SONIC__POOL_SIZE": "0",
                **env,
            }
            process = await anyio.open_process(
                [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1"],
                env=environ,
                stdout=subprocess.DEVNULL,
            )
            running = ServeProcess(process)
            started.append(running)
            tg.start_soon(running.read_logs)
            running.port = int((await running.wait_event("gateway.listening"))["port"])
            return running

        try:
            yield start
        finally:
            for running in started:
                if running.process.returncode is None:
                    running.process.kill()
                await running.process.wait()


class TwilioCall:
    """One call as Twilio streams it: silence every 20 ms, every mark echoed at once."""

    def __init__(self, ws: Any, call_sid: str, stream_sid: str) -> None:
        self.ws = ws
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.received: list[dict[str, Any]] = []
        self.seq = 3
        self.lock = anyio.Lock()
        self.got_media = anyio.Event()

    async def send(self, build: Any) -> None:
        async with self.lock:
            self.seq += 1
            await self.ws.send(build(self.seq))

    async def stream_silence(self) -> None:
        chunk = 1
        with anyio.CancelScope() as self.streaming:
            while True:
                chunk += 1
                try:
                    await self.send(lambda seq: media_frame(self.stream_sid, seq, SILENCE))
                except ConnectionClosed:
                    return  # the gateway closed the socket: Twilio stops streaming too
                await anyio.sleep(0.02)  # Twilio's frame clock

    async def receive(self) -> int | None:
        """Read our frames until the gateway closes; echo marks; return the close code."""
        try:
            async for data in self.ws:
                frame = msgspec.json.decode(data)
                self.received.append(frame)
                if frame["event"] == "media":
                    self.got_media.set()
                elif frame["event"] == "mark":
                    name = frame["mark"]["name"]
                    await self.send(lambda seq, name=name: mark_frame(self.stream_sid, seq, name))
        except ConnectionClosed:
            pass
        self.streaming.cancel()
        return self.ws.close_code  # type: ignore[no-any-return]

    async def hang_up(self) -> None:
        self.streaming.cancel()
        await self.send(lambda seq: stop_frame(self.call_sid, self.stream_sid, seq))


def mark_frame(stream_sid: str, seq: int, name: str) -> str:
    return msgspec.json.encode(
        {
            "event": "mark",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    ).decode()


async def run_call(
    running: ServeProcess, call_sid: str, during: Any
) -> tuple[TwilioCall, int | None]:
    """Open a call, run ``during(call)`` once the greeting plays, return the close code."""
    stream_sid = "MZ" + call_sid[2:]
    url = f"ws://127.0.0.1:{running.port}/twilio/media"
    async with websockets.connect(url) as ws:
        await ws.send(connected_frame())
        await ws.send(start_frame(call_sid, stream_sid, callSid=call_sid))
        call = TwilioCall(ws, call_sid, stream_sid)
        code: int | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(call.stream_silence)

            async def receive() -> None:
                nonlocal code
                code = await call.receive()

            tg.start_soon(receive)
            with anyio.fail_after(STARTUP_S):
                await call.got_media.wait()  # the greeting: the call is live
            await during(call)
    return call, code


def frames_after(call: TwilioCall, index: int) -> list[str]:
    return [f["event"] for f in call.received[index:]]


async def exit_status(running: ServeProcess, timeout_s: float = 30.0) -> int:
    with anyio.fail_after(timeout_s):
        return await running.process.wait()


def leftover_emulator_dirs(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob("sonic-emulator-*"))


async def test_sigterm_drains_a_live_call_that_ends_by_itself(serve: Any, tmp_path: Path) -> None:
    running = await serve(SONIC_GATEWAY_LIMITS__DRAIN_TIMEOUT_S="30")
    assert leftover_emulator_dirs(tmp_path)  # the emulator's CA lives there while serving

    async def during(call: TwilioCall) -> None:
        async with httpx.AsyncClient(base_url=running.base_url) as client:
            assert (await client.get("/readyz")).status_code == 200
            running.signal(signal.SIGTERM)
            await running.wait_event("gateway.draining")
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert msgspec.json.decode(ready.content)["status"] == "draining"
            assert (await client.get("/healthz")).status_code == 200
            answer = await client.post("/twilio/voice", data={"CallSid": "CA-new"})
            assert answer.status_code == 200
            assert '<Reject reason="busy" />' in answer.text
        with pytest.raises(InvalidStatus):
            async with websockets.connect(f"ws://127.0.0.1:{running.port}/twilio/media"):
                pass
        assert running.process.returncode is None  # the live call holds the drain open
        await call.hang_up()

    _, code = await run_call(running, "CA" + "1" * 32, during)
    assert code == 1000  # ended normally, not 1012
    assert await exit_status(running) == 0
    await running.wait_event("gateway.stopped")
    stopped = running.find("gateway.stopped")
    assert stopped is not None
    assert (stopped["calls_drained"], stopped["calls_cut"]) == (1, 0)
    refused = [e for e in running.events if e.get("event") == "media.refused"]
    assert [e["reason"] for e in refused] == ["draining"]
    assert leftover_emulator_dirs(tmp_path) == []


async def test_call_live_at_the_drain_timeout_hears_goodbye_then_1001(
    serve: Any, tmp_path: Path
) -> None:
    running = await serve(SONIC_GATEWAY_LIMITS__DRAIN_TIMEOUT_S="0.5")
    signalled_at = 0

    async def during(call: TwilioCall) -> None:
        nonlocal signalled_at
        signalled_at = len(call.received)
        running.signal(signal.SIGTERM)
        # The caller never hangs up: the gateway ends the call after the drain timeout.

    call, code = await run_call(running, "CA" + "2" * 32, during)
    after = frames_after(call, signalled_at)
    assert "clear" in after
    goodbye = after[after.index("clear") :]
    assert goodbye.count("media") >= 10  # ~2.9 s of prompt in 100 ms chunks
    assert goodbye[-1] == "mark"
    assert call.received[-1]["mark"]["name"] == "goodbye"
    assert code == 1001
    assert await exit_status(running) == 0
    await running.wait_event("gateway.stopped")
    stopped = running.find("gateway.stopped")
    assert stopped is not None
    assert (stopped["calls_drained"], stopped["calls_cut"]) == (0, 1)
    assert leftover_emulator_dirs(tmp_path) == []


async def test_second_signal_shortens_the_drain(serve: Any) -> None:
    running = await serve(SONIC_GATEWAY_LIMITS__DRAIN_TIMEOUT_S="120")
    start = 0.0

    async def during(call: TwilioCall) -> None:
        nonlocal start
        start = anyio.current_time()
        running.signal(signal.SIGTERM)
        await running.wait_event("gateway.draining")
        running.signal(signal.SIGINT)

    call, code = await run_call(running, "CA" + "3" * 32, during)
    assert code == 1001
    assert call.received[-1]["event"] == "mark"  # the goodbye played to its end
    # Far below the 120 s drain timeout: generous bound for a loaded machine.
    assert await exit_status(running, timeout_s=30) == 0
    assert anyio.current_time() - start < 30
    stopped = await running.wait_event("gateway.stopped")
    assert stopped["hurried"] is True
    assert stopped["calls_cut"] == 1
