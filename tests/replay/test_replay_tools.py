"""Tools through the whole stack: emulator (scripted tool use) + gateway + call actors + a real
tool receiver on 127.0.0.1 + simulated Twilio.

The model's turn asks for ``balance`` before it answers; the gateway POSTs the input to the
receiver (which checks the bearer token and the HMAC signature), sends the receiver's JSON back as
the tool result while the call goes on, and the model answers. When the receiver does not answer
in time the model gets ``{"error": "timeout"}`` instead, and still answers.
"""

from __future__ import annotations

import msgspec
import pytest

from gateway.replay import format_report, parse_scenario, replay_stack
from tests.tools.fake_server import BEARER, HMAC_KEY, FakeToolServer, serving

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCENARIO = """
name = "tool_balance"
description = "The model looks the balance up with an http tool before answering."

[[caller]]
kind = "wait_for_answer"
until = "end"

[[caller]]
kind = "say"
ms = 1200

[[caller]]
kind = "wait_for_answer"
until = "end"

[[model.turns]]
transcript = "What is my balance?"
reply = "Your balance is forty two euros."
answer_ms = 1000

[model.turns.tool_use]
name = "balance"
arguments = {{ account = "12345678" }}

[[gateway.tools]]
name = "balance"
description = "Look up the caller's account balance."
input_schema = '{{"type": "object", "properties": {{"account": {{"type": "string"}}}}}}'
url = "{url}/balance"
bearer_token = "{bearer}"
hmac_key = "{hmac}"
timeout_s = {timeout_s}

[expect]
answers = 2
transcript = ["USER: What is my balance", "ASSISTANT: forty two euros"]
ends_cleanly = true
"""


def scenario_for(url: str, *, timeout_s: float = 5.0) -> str:
    return SCENARIO.format(url=url, bearer=BEARER, hmac=HMAC_KEY, timeout_s=timeout_s)


async def test_the_model_gets_the_tools_json_and_answers() -> None:
    fake = FakeToolServer()
    async with serving(fake) as url:
        scenario = parse_scenario(scenario_for(url))
        async with replay_stack(scenario) as stack:
            report = await stack.run()
            sessions = stack.emulator.sessions
            (call_report,) = stack.finished.recent(1)
    assert report.passed, format_report(report)
    (seen,) = fake.seen
    assert (seen.authorized, seen.signed, seen.tool) == (True, True, "balance")
    assert msgspec.json.decode(seen.body) == {"account": "12345678"}
    assert sessions[0].tools_offered == ["balance"]  # promptStart carried the configured tool
    results = [content for session in sessions for _, content in session.tool_results]
    assert [msgspec.json.decode(c) for c in results] == [{"balance": "42.17", "currency": "EUR"}]
    (tool,) = call_report.tools
    assert (tool.name, tool.outcome, tool.delivered) == ("balance", "ok", True)
    assert tool.latency_ms >= 0.0


async def test_a_tool_that_times_out_answers_the_model_with_a_timeout_error() -> None:
    fake = FakeToolServer(mode="hang")
    async with serving(fake) as url:
        scenario = parse_scenario(scenario_for(url, timeout_s=0.3))
        async with replay_stack(scenario) as stack:
            report = await stack.run()
            sessions = stack.emulator.sessions
            (call_report,) = stack.finished.recent(1)
    assert report.passed, format_report(report)
    results = [content for session in sessions for _, content in session.tool_results]
    assert [msgspec.json.decode(c) for c in results] == [{"error": "timeout"}]
    (tool,) = call_report.tools
    assert (tool.name, tool.outcome, tool.delivered) == ("balance", "timeout", True)
    assert tool.latency_ms >= 300.0
