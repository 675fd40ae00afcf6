"""Media sockets need the stream token the signed webhook minted; pending sockets and payloads are
bounded. Real loopback sockets: uvicorn via serve_gateway, httpx and websockets as Twilio."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from gateway.config import LimitsConfig, ServerConfig, TwilioConfig
from gateway.server import serve_gateway
from gateway.signature import compute_signature
from gateway.stream_token import StreamTokens, derive_key
from tests.gateway.test_app_live import make_config, wait_close_code

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

TOKEN = "test-auth-token-123"
PUBLIC = "https://voice.example.com"
ACCOUNT = "AC" + "0" * 32
SIGNED_UPGRADE = {
    "X-Twilio-Signature": compute_signature(TOKEN, "wss://voice.example.com/twilio/media")
}


def signed_config(**limits: Any) -> Any:
    return make_config(
        twilio=TwilioConfig(auth_token=TOKEN),
        server=ServerConfig(host="127.0.0.1", port=0, public_url=PUBLIC),
        # No loop-lag admission: a shared test machine must not turn a webhook into <Reject>.
        limits=LimitsConfig(**{"admission_loop_lag_ms": None, **limits}),
    )


async def answer_webhook(client: httpx.AsyncClient, call_sid: str) -> dict[str, str]:
    """POST the signed webhook as Twilio does; the ``<Parameter>`` values of its TwiML."""
    form = {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": "+15550001111"}
    signature = compute_signature(TOKEN, PUBLIC + "/twilio/voice", form)
    response = await client.post(
        "/twilio/voice", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200
    stream = ET.fromstring(response.content).find("./Connect/Stream")
    assert stream is not None
    return {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}


async def start_stream(running: Any, frames: Any, call_sid: str, **custom: str) -> Any:
    """A signed upgrade sending connected + start; the open socket."""
    ws = await websockets.connect(
        running.ws_url + "/twilio/media", additional_headers=SIGNED_UPGRADE
    )
    await ws.send(frames.connected())
    await ws.send(frames.start(call_sid, "MZ" + call_sid[2:], **custom))
    return ws


@pytest.fixture
async def running(call_log: Any) -> AsyncIterator[Any]:
    async with serve_gateway(signed_config(), call_log) as running:
        yield running


@pytest.fixture
async def client(running: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        yield client


async def test_the_webhook_token_opens_one_call(
    running: Any, client: httpx.AsyncClient, call_log: Any, frames: Any
) -> None:
    parameters = await answer_webhook(client, "CA800")
    assert parameters["streamToken"]
    ws = await start_stream(running, frames, "CA800", **parameters)
    async with ws:
        await call_log.wait_for_calls(1)
        await ws.send(frames.stop("CA800", "MZ800", 2))
        assert await wait_close_code(ws) == 1000
    # The token reached the gateway, not the call.
    assert "streamToken" not in call_log.calls[0].identity.custom_parameters
    assert call_log.calls[0].identity.custom_parameters["callSid"] == "CA800"


async def test_a_token_spent_once_is_refused_on_a_second_socket(
    running: Any, client: httpx.AsyncClient, call_log: Any, frames: Any
) -> None:
    parameters = await answer_webhook(client, "CA810")
    first = await start_stream(running, frames, "CA810", **parameters)
    async with first:
        await call_log.wait_for_calls(1)
        await first.send(frames.stop("CA810", "MZ810", 2))
        assert await wait_close_code(first) == 1000
    async with await start_stream(running, frames, "CA810", **parameters) as again:
        assert await wait_close_code(again) == 1008
        assert again.close_reason == "replayed_stream_token"
    assert len(call_log.calls) == 1


@pytest.mark.parametrize(
    ("custom", "reason"),
    [
        ({}, "bad_stream_token"),
        ({"streamToken": "garbage"}, "bad_stream_token"),
        ({"streamToken": "other-call"}, "bad_stream_token"),
        ({"streamToken": "expired"}, "expired_stream_token"),
    ],
    ids=["missing", "garbage", "another_call", "expired"],
)
async def test_a_socket_without_its_calls_token_opens_no_call(
    running: Any,
    client: httpx.AsyncClient,
    call_log: Any,
    frames: Any,
    custom: dict[str, str],
    reason: str,
) -> None:
    if custom.get("streamToken") == "other-call":
        custom = {"streamToken": (await answer_webhook(client, "CA821"))["streamToken"]}
    elif custom.get("streamToken") == "expired":
        # Minted with the gateway's key two minutes ago (ttl 60 s).
        past = StreamTokens(derive_key(TOKEN), ttl_s=60, clock=lambda: time.time() - 120)
        custom = {"streamToken": past.mint("CA820", ACCOUNT)}
    async with await start_stream(running, frames, "CA820", **custom) as ws:
        assert await wait_close_code(ws) == 1008
        assert ws.close_reason == reason
    assert call_log.calls == []
    stats = running.app.state.gateway.registry.statistics()
    assert stats.calls_started == 0
    assert stats.refused_bad_stream_token == 1


async def test_a_replayed_upgrade_with_new_call_sids_opens_nothing(
    running: Any, call_log: Any, frames: Any
) -> None:
    # The captured upgrade signature is valid for every socket; without a token none becomes a call.
    for n in range(10):
        async with await start_stream(running, frames, f"CA9{n:02}") as ws:
            assert await wait_close_code(ws) == 1008
    assert call_log.calls == []
    assert running.app.state.gateway.registry.statistics().refused_bad_stream_token == 10


async def test_idle_sockets_beyond_the_pending_limit_are_refused_while_calls_are_admitted(
    call_log: Any, frames: Any
) -> None:
    config = signed_config(max_concurrent_calls=2, max_pending_sockets=3, handshake_timeout_s=30)
    async with (
        serve_gateway(config, call_log) as running,
        httpx.AsyncClient(base_url=running.base_url) as client,
    ):
        url = running.ws_url + "/twilio/media"
        idle = [await websockets.connect(url, additional_headers=SIGNED_UPGRADE) for _ in range(2)]
        # The upgrade completes only after the handshake slot is taken: both are held now.
        assert running.app.state.gateway.registry.statistics().handshakes == 2
        # The third pending socket fits, and a real call's socket still gets in and is admitted.
        parameters = await answer_webhook(client, "CA830")
        async with await start_stream(running, frames, "CA830", **parameters) as call:
            await call_log.wait_for_calls(1)
            # One more idle socket fills the pending limit; the next is refused with 403.
            idle.append(await websockets.connect(url, additional_headers=SIGNED_UPGRADE))
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(url, additional_headers=SIGNED_UPGRADE)
            assert refused.value.response.status_code == 403
            # Pending sockets hold no call slot: the webhook still answers <Connect>.
            answer = await answer_webhook(client, "CA831")
            assert answer["callSid"] == "CA831"
            await call.send(frames.stop("CA830", "MZ830", 2))
            assert await wait_close_code(call) == 1000
        for ws in idle:
            await ws.close()
        stats = running.app.state.gateway.registry.statistics()
    assert stats.refused_handshakes == 1
    assert stats.calls_started == 1


async def test_an_oversized_media_payload_ends_the_call(
    running: Any, client: httpx.AsyncClient, call_log: Any, frames: Any
) -> None:
    parameters = await answer_webhook(client, "CA840")
    async with await start_stream(running, frames, "CA840", **parameters) as ws:
        await call_log.wait_for_calls(1)
        await ws.send(frames.media("MZ840", 2, b"\x7f" * 160))  # one normal frame
        with anyio.fail_after(10):
            await ws.recv()
        await ws.send(frames.media("MZ840", 3, b"\x7f" * 1601))  # well under 64 KiB, over 200 ms
        assert await wait_close_code(ws) == 1008
    with anyio.fail_after(10):
        await call_log.calls[0].ended.wait()
    assert running.app.state.gateway.registry.live_count == 0
