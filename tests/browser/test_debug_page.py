"""The live debug page in a real headless Chromium: two replay calls, one hangs up."""

from __future__ import annotations

import functools
import os

import anyio
import pytest

from gateway.replay.peer import TwilioPeer
from gateway.replay.runner import DEFAULT_PUBLIC_URL, replay_stack, step_audio
from gateway.replay.scenario import Scenario, parse_scenario
from tests.browser.cdp import find_chromium, open_browser

pytestmark = pytest.mark.anyio

SCENARIO = """
name = "debug_page"
description = "Two callers listen to the greeting, then stay quiet; the first leaves sooner."

[[caller]]
kind = "wait_for_answer"

[[caller]]
kind = "pause"
ms = {pause_ms}

[gateway.debug]
enabled = true
"""

# Resolves with the page's text once ``ready(document)`` holds; re-checked on every DOM change.
WAIT_FOR = """
new Promise((resolve) => {{
  const ready = () => {{ {condition} }};
  const check = () => {{ if (ready()) {{ observer.disconnect(); resolve(document.body.innerText); }} }};
  const observer = new MutationObserver(check);
  observer.observe(document.body, {{subtree: true, childList: true, characterData: true,
                                    attributes: true}});
  check();
}})
"""


def scenario(pause_ms: int) -> Scenario:
    return parse_scenario(SCENARIO.format(pause_ms=pause_ms), base_dir=".")


def live_cards(*sids: str) -> str:
    cards = "document.querySelectorAll('#calls section.call')"
    wanted = " && ".join(
        f"!!document.querySelector('#calls [data-call-sid=\"{s}\"]')" for s in sids
    )
    return f"return {cards}.length === {len(sids)} && {wanted};"


@pytest.fixture(scope="module")
def chromium() -> str:
    path, why = find_chromium()
    if path is None:
        pytest.skip(why)
    return path


async def test_page_draws_both_calls_and_updates_when_one_hangs_up(chromium: str) -> None:
    short, long = scenario(2500), scenario(9000)
    async with replay_stack(long) as stack:
        peers = [
            TwilioPeer(
                url=stack.media_url,
                public_url=DEFAULT_PUBLIC_URL,
                auth_token=None,
                steps=s.caller,
                audio_for=functools.partial(step_audio, s),
            )
            for s in (short, long)
        ]
        first, second = (p.result.call_sid for p in peers)
        async with open_browser(chromium) as browser, anyio.create_task_group() as tg:
            await browser.navigate(f"{stack.gateway.base_url}/debug")
            for peer in peers:
                tg.start_soon(peer.run)
            with anyio.fail_after(20):
                both = await browser.evaluate(WAIT_FOR.format(condition=live_cards(first, second)))
            # Each call's tree: the supervisor and its four actors, with mailboxes and state.
            for name in (
                "call",
                "twilio_ingress",
                "sonic_session",
                "turn_taker",
                "playback_egress",
            ):
                assert name in both
            assert "sonic.audio" in both
            assert "floor" in both
            shot = os.environ.get("SONIC_GATEWAY_DEBUG_SCREENSHOT")
            if shot:  # how docs/debug-page.png is made
                png = await browser.screenshot()
                await anyio.Path(shot).write_bytes(png)
            # The first caller hangs up: its card goes, its report appears, the other stays.
            with anyio.fail_after(20):
                after = await browser.evaluate(
                    WAIT_FOR.format(
                        condition=live_cards(second)[:-1]
                        + f" && !!document.querySelector('#recent [data-call-sid=\"{first}\"]');"
                    )
                )
            assert first in after
            assert "caller_hangup" in after
            tg.cancel_scope.cancel()
