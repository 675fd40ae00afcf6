"""The full stack with an auth token: the simulated Twilio answers the webhook and spends its
stream token, while a replayed upgrade signature with new CallSids opens no Sonic session."""

from __future__ import annotations

import anyio
import msgspec
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from actors.wire import (
    MediaFormat,
    StartMetadata,
    TwilioConnected,
    TwilioStart,
    encode_twilio_inbound,
)
from gateway.replay import format_report, load_scenario, replay_stack
from gateway.replay.runner import BUNDLED_SCENARIOS
from gateway.signature import compute_signature

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AUTH_TOKEN = "replay-test-auth-token"


def start(call_sid: str) -> bytes:
    return encode_twilio_inbound(
        TwilioStart(
            sequence_number=1,
            stream_sid="MZ" + call_sid[2:],
            start=StartMetadata(
                account_sid="AC" + "0" * 32,
                stream_sid="MZ" + call_sid[2:],
                call_sid=call_sid,
                tracks=["inbound"],
                custom_parameters={"callSid": call_sid},
                media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
            ),
        )
    )


async def test_signed_call_passes_and_replayed_upgrades_open_no_sonic_session() -> None:
    base = load_scenario(BUNDLED_SCENARIOS / "greeting_and_two_turns.toml")
    scenario = msgspec.structs.replace(
        base, gateway={**base.gateway, "twilio": {"auth_token": AUTH_TOKEN}}
    )
    async with replay_stack(scenario) as stack:
        report = await stack.run()  # the peer answers the webhook, then spends its token
        assert report.passed, format_report(report)
        sessions = len(stack.emulator.sessions)
        started = stack.gateway.app.state.gateway.registry.statistics().calls_started
        captured = compute_signature(AUTH_TOKEN, stack.public_media_url)
        codes = []
        for n in range(20):
            async with websockets.connect(
                stack.media_url, additional_headers={"X-Twilio-Signature": captured}
            ) as ws:
                await ws.send(
                    encode_twilio_inbound(TwilioConnected(protocol="Call", version="1.0.0")),
                    text=True,
                )
                await ws.send(start(f"CA{n:032x}"), text=True)
                with anyio.fail_after(10), pytest.raises(ConnectionClosed):
                    await ws.recv()
                codes.append(ws.close_code)
        assert codes == [1008] * 20
        assert len(stack.emulator.sessions) == sessions
        stats = stack.gateway.app.state.gateway.registry.statistics()
        assert stats.calls_started == started
