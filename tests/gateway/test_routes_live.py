"""Per-number routes through the whole stack: Twilio's signed webhook picks the route, the media
socket's call opens its Sonic session with the route's persona (the emulator records what it got),
a forged route is refused, and a configuration webhook's answer (or its failure) shapes the call.
"""

from __future__ import annotations

import contextlib
import io
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import msgspec
import pytest
import websockets

from gateway.config import GatewayConfig, LoggingConfig
from gateway.emulator import Emulator, EmulatorSettings, run_emulator
from gateway.logs import configure_logging
from gateway.routing import CallRouter
from gateway.server import RunningGateway, serve_gateway
from gateway.signature import compute_signature
from gateway.tools import open_tool_client
from gateway.wiring import build_call_factory, open_sonic_connector
from tests.gateway.fake_call_webhook import SECRET, FakeCallWebhook, Hang, Raw, serving
from tests.gateway.test_app_live import wait_close_code
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from gateway.emulator.session import EmulatedSession

pytestmark = pytest.mark.anyio

TOKEN = "test-auth-token-123"
PUBLIC = "https://voice.example.com"
ACCOUNT = "AC" + "0" * 32
SALES_NUMBER = "+15550001111"
SUPPORT_NUMBER = "+15550002222"
SIGNED_UPGRADE = {
    "X-Twilio-Signature": compute_signature(TOKEN, "wss://voice.example.com/twilio/media")
}

BASE: dict[str, Any] = {
    "backend": "emulator",
    "server": {"host": "127.0.0.1", "port": 0, "public_url": PUBLIC},
    "twilio": {"auth_token": TOKEN},
    "limits": {"admission_loop_lag_ms": None},
    "sonic": {"pool_size": 0},
    "tools": [
        {"name": "lookup", "description": "Look an order up.", "url": "http://127.0.0.1:9/l"},
        {"name": "refund", "description": "Refund an order.", "url": "http://127.0.0.1:9/r"},
    ],
    "routes": [
        {
            "name": "sales",
            "numbers": [SALES_NUMBER],
            "system_prompt": "You are Sam, from sales.",
            "voice_id": "tiffany",
            "tools": ["lookup"],
        },
        {
            "name": "support",
            "numbers": [SUPPORT_NUMBER],
            "system_prompt": "You are Sue, from support.",
            "voice_id": "amy",
        },
    ],
}


@attrs.define
class Stack:
    emulator: Emulator
    gateway: RunningGateway
    logs: io.StringIO
    other: RunningGateway
    """A second gateway process's stand-in: its own router, the same config and token key."""

    def lines(self, event: str) -> list[dict[str, Any]]:
        lines = [msgspec.json.decode(x) for x in self.logs.getvalue().splitlines() if x]
        return [line for line in lines if line.get("event") == event]


@pytest.fixture(autouse=True)
def _restore_logging(restore_logging: None) -> None:
    """Every test here reconfigures logging; the shared fixture puts it back."""


@contextlib.asynccontextmanager
async def full_stack(**overrides: Any) -> AsyncIterator[Stack]:
    logs = io.StringIO()
    configure_logging(LoggingConfig(format="json", level="info"), stream=logs)
    config = msgspec.convert(BASE | overrides, GatewayConfig)
    async with (
        run_emulator(EmulatorSettings(port=0)) as emulator,
        open_sonic_connector(config, emulator=emulator) as connector,
        open_tool_client() as http,
        serve_gateway(
            config,
            build_call_factory(config, connector, router=CallRouter.from_config(config, http=http)),
        ) as gateway,
        serve_gateway(
            config,
            build_call_factory(config, connector, router=CallRouter.from_config(config, http=http)),
        ) as other,
    ):
        yield Stack(emulator=emulator, gateway=gateway, logs=logs, other=other)


async def answer_webhook(stack: Stack, call_sid: str, to: str) -> dict[str, str]:
    """POST the signed voice webhook as Twilio does; the ``<Parameter>`` values of its TwiML."""
    form = {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": "+15559990000", "To": to}
    signature = compute_signature(TOKEN, PUBLIC + "/twilio/voice", form)
    async with httpx.AsyncClient(base_url=stack.gateway.base_url) as client:
        response = await client.post(
            "/twilio/voice", data=form, headers={"X-Twilio-Signature": signature}
        )
    assert response.status_code == 200
    stream = ET.fromstring(response.content).find("./Connect/Stream")
    assert stream is not None
    return {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}


async def call_until_prompted(
    stack: Stack,
    frames: Any,
    call_sid: str,
    parameters: dict[str, str],
    gateway: RunningGateway | None = None,
) -> EmulatedSession:
    """Open the media socket with the TwiML's parameters; once the call's Sonic session has its
    system prompt, hang up. The session's record."""
    stream_sid = "MZ" + call_sid[2:]
    before = len(stack.emulator.sessions)
    url = (gateway or stack.gateway).ws_url + "/twilio/media"
    async with websockets.connect(url, additional_headers=SIGNED_UPGRADE) as ws:
        await ws.send(frames.connected())
        await ws.send(frames.start(call_sid, stream_sid, **parameters))
        await wait_for(
            lambda: (
                len(stack.emulator.sessions) > before
                and stack.emulator.sessions[before].system_prompt is not None
            )
        )
        await ws.send(frames.stop(call_sid, stream_sid, 2))
        assert await wait_close_code(ws) == 1000
    return stack.emulator.sessions[before]


def persona(session: EmulatedSession) -> tuple[str | None, str | None, list[str]]:
    """The session's persona; its system prompt without the note on the greeting played (every
    session gets one: what the caller heard before the model spoke)."""
    prompt = session.system_prompt
    if prompt is not None:
        persona_text, _, note = prompt.partition("\n\nWhen the call connected")
        assert note, prompt
        prompt = persona_text
    return prompt, session.voice_id, session.tools_offered


async def test_two_numbers_two_personas_and_other_numbers_the_default(frames: Any) -> None:
    async with full_stack() as stack:
        sales_params = await answer_webhook(stack, "CA" + "1" * 32, SALES_NUMBER)
        support_params = await answer_webhook(stack, "CA" + "2" * 32, SUPPORT_NUMBER)
        other_params = await answer_webhook(stack, "CA" + "3" * 32, "+15557770000")
        sales = await call_until_prompted(stack, frames, "CA" + "1" * 32, sales_params)
        support = await call_until_prompted(stack, frames, "CA" + "2" * 32, support_params)
        other = await call_until_prompted(stack, frames, "CA" + "3" * 32, other_params)
        routed = [line["route"] for line in stack.lines("call.route")]
    assert (sales_params["route"], support_params["route"]) == ("sales", "support")
    assert "route" not in other_params  # the default route adds no parameter
    assert persona(sales) == ("You are Sam, from sales.", "tiffany", ["lookup"])
    assert persona(support) == ("You are Sue, from support.", "amy", ["lookup", "refund"])
    default = GatewayConfig().sonic
    assert persona(other) == (default.system_prompt, default.voice_id, ["lookup", "refund"])
    assert routed == ["sales", "support", "default"]


@pytest.mark.parametrize("claimed", [{"route": "support"}, {"route": ""}, {}])
async def test_a_stream_claiming_another_route_is_refused(
    frames: Any, claimed: dict[str, str]
) -> None:
    call_sid = "CA" + "4" * 32
    async with full_stack() as stack:
        parameters = await answer_webhook(stack, call_sid, SALES_NUMBER)
        forged = {k: v for k, v in parameters.items() if k != "route"} | claimed
        async with websockets.connect(
            stack.gateway.ws_url + "/twilio/media", additional_headers=SIGNED_UPGRADE
        ) as ws:
            await ws.send(frames.connected())
            await ws.send(frames.start(call_sid, "MZ" + call_sid[2:], **forged))
            assert await wait_close_code(ws) == 1008
            assert ws.close_reason == "bad_stream_token"
        assert stack.emulator.sessions == []  # no Sonic session for a refused socket


async def test_the_configuration_webhook_answers_times_out_or_fails(frames: Any) -> None:
    ok, slow, bad = ("CA" + c * 32 for c in "567")
    vip = {"route": "support", "system_prompt": "You are Vic, for VIPs.", "tools": []}
    fake = FakeCallWebhook(answers={ok: vip, slow: Hang(), bad: Raw(b"<html>oops</html>")})
    async with serving(fake) as url:
        webhook = {"url": url + "/call", "secret": SECRET, "timeout_s": 0.3}
        async with full_stack(call_webhook=webhook) as stack:
            # The ok call dials sales; the webhook moves it to support with its own prompt.
            answered = {
                sid: await answer_webhook(stack, sid, SALES_NUMBER) for sid in (ok, slow, bad)
            }
            sessions = {
                sid: await call_until_prompted(stack, frames, sid, params)
                for sid, params in answered.items()
            }
            failed = stack.lines("call_webhook.failed")
            applied = stack.lines("call_webhook.answered")
            text = stack.logs.getvalue()
    assert answered[ok]["route"] == "support"
    assert persona(sessions[ok]) == ("You are Vic, for VIPs.", "amy", [])
    assert persona(sessions[slow]) == ("You are Sam, from sales.", "tiffany", ["lookup"])
    assert persona(sessions[bad]) == ("You are Sam, from sales.", "tiffany", ["lookup"])
    assert [(f["reason"], f["call_sid"], f["level"]) for f in failed] == [
        ("timeout", slow, "warning"),
        ("bad_json", bad, "warning"),
    ]
    assert [(a["route"], a["overrides"]) for a in applied] == [
        ("support", ["route", "system_prompt", "tools"])
    ]
    # The webhook got the call's facts; the logs never show the numbers.
    assert [(s["call_sid"], s["to"], s["route"]) for s in fake.seen] == [
        (ok, SALES_NUMBER, "sales"),
        (slow, SALES_NUMBER, "sales"),
        (bad, SALES_NUMBER, "sales"),
    ]
    assert SALES_NUMBER not in text
    assert "+15559990000" not in text
    assert "Traceback" not in text


async def test_a_socket_on_another_process_asks_the_webhook_itself(frames: Any) -> None:
    moved = "CA" + "8" * 32
    vip = {"system_prompt": "You are Vic, for VIPs.", "voice_id": "matthew"}
    fake = FakeCallWebhook(answers={moved: vip})
    async with serving(fake) as url:
        webhook = {"url": url + "/call", "secret": SECRET, "timeout_s": 5.0}
        async with full_stack(call_webhook=webhook) as stack:
            parameters = await answer_webhook(stack, moved, SALES_NUMBER)
            # Twilio's socket reaches the other process, which kept no plan for this call.
            session = await call_until_prompted(
                stack, frames, moved, parameters, gateway=stack.other
            )
            stages = [(a["stage"], a["call_sid"]) for a in stack.lines("call_webhook.answered")]
    assert persona(session) == ("You are Vic, for VIPs.", "matthew", ["lookup"])
    assert stages == [("webhook", moved), ("socket", moved)]
    # Asked twice for one call; the second time with the numbers Twilio relayed.
    assert [(s["call_sid"], s["from"], s["to"], s["route"]) for s in fake.seen] == [
        (moved, "+15559990000", SALES_NUMBER, "sales"),
        (moved, "+15559990000", SALES_NUMBER, "sales"),
    ]
