"""Close codes over a real loopback WebSocket: the whole stack (emulator + gateway + call actors).

Each peer fault must close the socket with its own code and a reason, BEFORE the call's Sonic
session is torn down, and end with one ``call.ended`` WARNING that names the true outcome, with no
traceback anywhere in the captured logs. A normal hang-up stays ``completed``/1000.
"""

from __future__ import annotations

import base64
import contextlib
import io
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import msgspec
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from actors.sonic import SonicConnector, StaticCredentials
from gateway.config import GatewayConfig, LoggingConfig
from gateway.emulator import Emulator, EmulatorSettings, run_emulator
from gateway.logs import configure_logging
from gateway.server import RunningGateway, serve_gateway
from gateway.wiring import build_call_factory
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


pytestmark = pytest.mark.anyio

CALL_SID = "CA" + "7" * 32
STREAM_SID = "MZ" + "7" * 32


@attrs.define
class Stack:
    emulator: Emulator
    gateway: RunningGateway
    logs: io.StringIO

    def lines(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(line) for line in self.logs.getvalue().splitlines() if line]


@pytest.fixture(autouse=True)
def _restore_logging(restore_logging: None) -> None:
    """Every test here reconfigures logging; the shared fixture puts it back."""


@contextlib.asynccontextmanager
async def full_stack() -> AsyncIterator[Stack]:
    logs = io.StringIO()
    configure_logging(LoggingConfig(format="json", level="info"), stream=logs)
    config = msgspec.convert(
        {
            "backend": "emulator",
            "server": {"host": "127.0.0.1", "port": 0},
            "sonic": {"pool_size": 0},
        },
        GatewayConfig,
    )
    async with (
        run_emulator(EmulatorSettings(port=0)) as emulator,
        SonicConnector(
            config.sonic.to_sonic_settings(
                endpoint_uri=emulator.endpoint_uri, ca_bundle=emulator.ca_path
            ),
            credentials=StaticCredentials(),
            pool=config.sonic.to_pool_settings(),
        ) as connector,
        serve_gateway(config, build_call_factory(config, connector)) as gateway,
    ):
        yield Stack(emulator=emulator, gateway=gateway, logs=logs)


def _json(obj: object) -> str:
    return msgspec.json.encode(obj).decode()


def connected() -> str:
    return _json({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start() -> str:
    return _json(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": STREAM_SID,
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": STREAM_SID,
                "callSid": CALL_SID,
                "tracks": ["inbound"],
                "customParameters": {"pii_from": "+15550001111"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media(seq: int) -> str:
    return _json(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": STREAM_SID,
            "media": {
                "track": "inbound",
                "chunk": str(seq - 1),
                "timestamp": str((seq - 2) * 20),
                "payload": base64.b64encode(b"\xff" * 160).decode(),
            },
        }
    )


def dtmf(seq: int) -> str:
    return _json(
        {
            "event": "dtmf",
            "sequenceNumber": str(seq),
            "streamSid": STREAM_SID,
            "dtmf": {"track": "inbound_track", "digit": "7"},
        }
    )


def stop(seq: int) -> str:
    return _json(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "streamSid": STREAM_SID,
            "stop": {"accountSid": "AC" + "0" * 32, "callSid": CALL_SID},
        }
    )


@attrs.define
class Closed:
    code: int | None
    reason: str | None
    after_s: float
    """Bad message sent -> closing handshake done (client side)."""


async def run_fault(stack: Stack, send_fault: Callable[[Any], Any]) -> Closed:
    """Open a call, wait until its Sonic session is open, send the fault, wait for the close."""
    emulator = stack.emulator
    async with websockets.connect(stack.gateway.ws_url + "/twilio/media", max_size=None) as ws:
        await ws.send(connected())
        await ws.send(start())
        await ws.send(media(2))
        with anyio.fail_after(10):
            await ws.recv()  # the greeting's first media: the call runs
        await wait_for(lambda: bool(emulator.sessions), 10)
        session = emulator.sessions[0]
        assert session.end_reason is None
        sent_at = anyio.current_time()
        await send_fault(ws)
        with anyio.fail_after(10):
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.recv()
        closed_at = anyio.current_time()
        code, reason = ws.close_code, ws.close_reason
    # The call ends and logs call.ended once its tree has stopped.
    registry = stack.gateway.app.state.gateway.registry
    await wait_for(lambda: registry.live_count == 0 and _ended(stack) is not None, 10)
    assert session.end_reason == "closed"  # Sonic was closed in order, after the socket
    return Closed(code, reason, closed_at - sent_at)


def assert_closed_before_sonic_stopped(stack: Stack) -> None:
    """The ingress exits only once the close frame is written, and the supervisor stops the
    Sonic session only after that exit: so the log order proves the close went out first."""
    events = [(line["event"], line.get("child_id"), line.get("reason")) for line in stack.lines()]
    ingress_exit = events.index(("supervisor.child_exited", "twilio_ingress", "normal"))
    sonic_ended = events.index(("emulator.session_ended", None, "closed"))
    sonic_stopped = events.index(("supervisor.child_exited", "sonic_session", "shutdown"))
    assert ingress_exit < sonic_ended
    assert ingress_exit < sonic_stopped


def _ended(stack: Stack) -> dict[str, Any] | None:
    ended = [line for line in stack.lines() if line["event"] == "call.ended"]
    return ended[-1] if ended else None


def assert_peer_fault_logged(stack: Stack, outcome: str, code: int) -> None:
    ended = _ended(stack)
    assert ended is not None
    assert (ended["outcome"], ended["close_code"], ended["level"]) == (outcome, code, "warning")
    assert ended["call_sid"] == CALL_SID
    text = stack.logs.getvalue()
    assert "Traceback" not in text
    assert '"exception"' not in text
    assert "+15550001111" not in text  # the caller's number (a start parameter) never leaks
    lines = stack.lines()
    assert not [line for line in lines if line["level"] in ("error", "critical")], text


async def _binary(ws: Any) -> None:
    await ws.send(b"\x00\x01\x02")


async def _not_utf8(ws: Any) -> None:
    await ws.send(b'{"event": "media", "x": "\xff\xfe"}', text=True)


async def _not_json(ws: Any) -> None:
    await ws.send("{not json")


async def _bad_base64(ws: Any) -> None:
    await ws.send(media(3).replace('"payload":"', '"payload":"@@@'))


async def _second_start(ws: Any) -> None:
    await ws.send(start())


async def _unknown_event(ws: Any) -> None:
    await ws.send(_json({"event": "bogus", "sequenceNumber": "3", "streamSid": STREAM_SID}))


async def _dtmf_flood(ws: Any) -> None:
    # One burst: the ingress never waits, so digits beyond sonic.control's 16 overflow it.
    for seq in range(3, 403):
        await ws.send(dtmf(seq))


async def _oversized(ws: Any) -> None:
    await ws.send("x" * 70_000)  # over limits.ws_max_message_bytes (64 KiB)


@pytest.mark.parametrize(
    ("send_fault", "code", "outcome", "reason"),
    [
        (_binary, 1003, "unsupported_data", "binary frames are not supported"),
        (_not_utf8, 1007, "invalid_payload", "invalid UTF-8"),
        (_not_json, 1007, "invalid_payload", "invalid payload"),
        (_bad_base64, 1007, "invalid_payload", "invalid payload"),
        (_second_start, 1008, "protocol_error", "protocol error"),
        (_unknown_event, 1008, "protocol_error", "protocol error"),
        (_dtmf_flood, 1008, "control_flood", "too many control messages"),
        (_oversized, 1009, "message_too_big", None),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
async def test_peer_fault_closes_with_its_code_before_sonic_is_torn_down(
    send_fault: Callable[[Any], Any], code: int, outcome: str, reason: str | None
) -> None:
    async with full_stack() as stack:
        closed = await run_fault(stack, send_fault)
    assert closed.code == code
    if reason is not None:
        assert closed.reason == reason
    else:
        assert closed.reason  # the WebSocket layer names the size and the cap
    # The close frame goes out first, then the Sonic session is stopped (the time bound is
    # generous: the order is what is checked).
    assert_closed_before_sonic_stopped(stack)
    assert closed.after_s < 2.0
    assert_peer_fault_logged(stack, outcome, code)


async def test_stop_still_completes_with_1000() -> None:
    async with full_stack() as stack:
        closed = await run_fault(stack, lambda ws: ws.send(stop(3)))
    assert closed.code == 1000
    ended = _ended(stack)
    assert ended is not None
    assert (ended["outcome"], ended["close_code"], ended["level"]) == ("completed", 1000, "info")
    assert ended["end_reason"] == "caller_hangup"
    assert "Traceback" not in stack.logs.getvalue()


async def test_binary_frame_in_the_handshake_closes_1003_without_a_call() -> None:
    async with full_stack() as stack:
        async with websockets.connect(stack.gateway.ws_url + "/twilio/media") as ws:
            await ws.send(connected())
            await ws.send(b"\x00")
            with anyio.fail_after(10), contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 1003
        assert stack.emulator.sessions == []
    failed = [line for line in stack.lines() if line["event"] == "media.handshake_failed"]
    assert failed[0]["reason"] == "unsupported_data"
    assert failed[0]["level"] == "warning"
    assert "Traceback" not in stack.logs.getvalue()
