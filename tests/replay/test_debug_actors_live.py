"""``/debug/actors`` on the real stack: a live call's identity and tree, then its report."""

from __future__ import annotations

import functools

import anyio
import httpx
import msgspec
import pytest

from gateway.replay.peer import TwilioPeer
from gateway.replay.runner import DEFAULT_PUBLIC_URL, replay_stack, step_audio
from gateway.replay.scenario import parse_scenario

pytestmark = pytest.mark.anyio

SCENARIO = parse_scenario(
    """
name = "debug_actors"
description = "One caller hears the greeting and stays quiet for a while."

[[caller]]
kind = "wait_for_answer"

[[caller]]
kind = "pause"
ms = 2500

[peer]
custom_parameters = { from = "+14155550167" }

[gateway.debug]
enabled = true
"""
)


async def test_live_call_identity_tree_and_finished_report() -> None:
    async with replay_stack(SCENARIO) as stack, httpx.AsyncClient() as client:
        url = stack.gateway.base_url + "/debug/actors"
        peer = TwilioPeer(
            url=stack.media_url,
            public_url=DEFAULT_PUBLIC_URL,
            auth_token=None,
            steps=SCENARIO.caller,
            audio_for=functools.partial(step_audio, SCENARIO),
            settings=SCENARIO.peer,
        )
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer.run)
                # The call is admitted within milliseconds and lives ~4 s (greeting + pause).
                await anyio.sleep(1.0)
                live = msgspec.json.decode((await client.get(url)).content)
            await stack.finished.wait_report(peer.result.call_sid)
            assert await stack.observer.wait_no_live_calls(5.0) == 0
        after = msgspec.json.decode((await client.get(url)).content)
    call = live["calls"][0]
    assert call["call_sid"] == peer.result.call_sid
    assert call["stream_sid"] == peer.result.stream_sid
    assert call["age_s"] >= 0
    assert call["caller"] == "**********67"  # masked: PII logging is off
    assert call["tree"]["name"] == "call"
    names = {child["name"] for child in call["tree"]["children"]}
    assert names == {"twilio_ingress", "sonic_session", "turn_taker", "playback_egress"}
    assert live["sonic"]["level"] == "connect"
    assert after["count"] == 0
    report = after["recent"][0]
    assert report["call_sid"] == peer.result.call_sid
    assert report["end_reason"] == "caller_hangup"
    assert report["transcript"] is None  # what callers said is PII
