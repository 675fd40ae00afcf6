"""Tools through the whole stack: emulator (scripted tool use) + gateway + call actors + the
replay's tool receiver on 127.0.0.1 (``[[tool_replies]]``) + simulated Twilio.

The model's turn asks for ``balance`` before it answers; the gateway POSTs the input to the
receiver (which checks the bearer token and the HMAC signature), sends the receiver's JSON back as
the tool result while the call goes on, and the model answers. When the receiver does not answer
in time the model gets ``{"error": "timeout"}`` instead, and still answers.
"""

from __future__ import annotations

import msgspec
import pytest

from gateway.replay import format_report, parse_scenario, replay_stack

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
bearer_token = "tool-bearer-s3cret"
hmac_key = "tool-hmac-key-s3cret"
timeout_s = {timeout_s}

[[tool_replies]]
tool = "balance"
answer = {{ balance = "42.17", currency = "EUR" }}
hang = {hang}

[expect]
answers = 2
transcript = ["USER: What is my balance", "ASSISTANT: forty two euros"]
ends_cleanly = true
"""


def scenario_for(*, timeout_s: float = 5.0, hang: bool = False) -> str:
    return SCENARIO.format(timeout_s=timeout_s, hang=str(hang).lower())


async def test_the_model_gets_the_tools_json_and_answers() -> None:
    scenario = parse_scenario(scenario_for())
    async with replay_stack(scenario) as stack:
        report = await stack.run()
        sessions = stack.emulator.sessions
        (call_report,) = stack.finished.recent(1)
        receiver = stack.services.tools
    assert report.passed, format_report(report)
    assert receiver is not None
    (seen,) = receiver.requests
    assert (seen.authorized, seen.signed, seen.tool, seen.status) == (True, True, "balance", 200)
    assert msgspec.json.decode(seen.body) == {"account": "12345678"}
    assert sessions[0].tools_offered == ["balance"]  # promptStart carried the configured tool
    results = [content for session in sessions for _, content in session.tool_results]
    assert [msgspec.json.decode(c) for c in results] == [{"balance": "42.17", "currency": "EUR"}]
    (tool,) = call_report.tools
    assert (tool.name, tool.outcome, tool.delivered) == ("balance", "ok", True)
    assert tool.latency_ms >= 0.0
    (use,) = report.tools  # the replay report joins the three views of the call
    assert (use.name, use.outcome, use.input, use.signed) == (
        "balance",
        "ok",
        {"account": "12345678"},
        True,
    )
    assert use.result is not None
    assert msgspec.json.decode(use.result) == {"balance": "42.17", "currency": "EUR"}


async def test_a_tool_that_times_out_answers_the_model_with_a_timeout_error() -> None:
    scenario = parse_scenario(scenario_for(timeout_s=0.3, hang=True))
    async with replay_stack(scenario) as stack:
        report = await stack.run()
        sessions = stack.emulator.sessions
        (call_report,) = stack.finished.recent(1)
        receiver = stack.services.tools
    assert report.passed, format_report(report)
    results = [content for session in sessions for _, content in session.tool_results]
    assert [msgspec.json.decode(c) for c in results] == [{"error": "timeout"}]
    (tool,) = call_report.tools
    assert (tool.name, tool.outcome, tool.delivered) == ("balance", "timeout", True)
    assert tool.latency_ms >= 300.0
    assert receiver is not None
    (seen,) = receiver.requests
    assert seen.answered_at is None
    assert seen.abandoned_at is not None  # the gateway closed the connection at its timeout
