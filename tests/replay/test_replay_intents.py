"""Fast intents through the whole stack: emulator (scripted caller transcript) + gateway + call
actors + simulated Twilio + a fake Twilio REST API (or a tool receiver) on 127.0.0.1.

The scenarios live in ``tests/replay/scenarios/`` (the replay runner does not start fake servers
for a scenario yet); each test serves the fake and points the scenario's URL at it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest

from gateway.replay import format_report, parse_scenario, replay_stack
from tests.gateway.fake_twilio_rest import ACCOUNT, CALL, KEY_SECRET, KEY_SID, FakeTwilioRest
from tests.gateway.fake_twilio_rest import serving as serving_rest
from tests.tools.fake_server import FakeToolServer
from tests.tools.fake_server import serving as serving_tool

if TYPE_CHECKING:
    from gateway.replay.report import CallReport

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCENARIOS = Path(__file__).parent / "scenarios"
REST_PLACEHOLDER = "http://twilio-rest.invalid"
TOOL_PLACEHOLDER = "http://tool-receiver.invalid"


def scenario_text(name: str, placeholder: str, url: str) -> str:
    text = (SCENARIOS / f"{name}.toml").read_text(encoding="utf-8")
    assert placeholder in text
    return text.replace(placeholder, url)


async def transfer(name: str) -> tuple[FakeTwilioRest, CallReport, list[str]]:
    """Replay a transfer scenario; the REST fake, the peer's report, the model's text inputs."""
    fake = FakeTwilioRest(KEY_SID, KEY_SECRET)
    async with serving_rest(fake) as url:
        scenario = parse_scenario(scenario_text(name, REST_PLACEHOLDER, url))
        async with replay_stack(scenario) as stack:
            report = await stack.run()
            sessions = stack.emulator.sessions
    assert report.passed, format_report(report)
    assert (report.close_code, report.closed_by) == (1000, "gateway")
    return fake, report, [text for session in sessions for text in session.text_inputs]


def last_echo_at(report: CallReport) -> float:
    """When the simulated Twilio echoed its last mark (the prompt's end), as a clock time."""
    echoes = [e for e in report.timeline if e.kind == "mark echoed"]
    assert echoes, format_report(report)
    return report.origin + echoes[-1].at_ms / 1000.0


async def test_key_0_cuts_the_greeting_plays_the_prompt_then_transfers() -> None:
    fake, report, texts = await transfer("intent_dtmf_transfer")
    greeting, prompt = report.answers
    assert greeting.interrupted  # the prompt took the floor at once
    assert not prompt.interrupted
    assert prompt.heard_ms >= 1000  # the whole transferring clip (about 1.5 s)
    (request,) = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert request.at >= last_echo_at(report)  # heard first, then the REST request
    number = ET.fromstring(request.form["Twiml"][0]).find("Dial/Number")
    assert number is not None
    assert number.text == "+15551234567"
    (note,) = texts
    assert "transferred to operator" in note
    assert "DTMF" not in note  # the key was the intent's, never a question for the model
    assert report.record is not None
    assert report.record.intents is not None
    (timing,) = report.record.intents
    assert (timing.intent, timing.trigger) == ("operator", "dtmf")
    assert timing.match_to_media_ms is not None
    assert timing.caller_to_media_ms is not None
    assert "intents (caller's end of speech or key" in format_report(report)


async def test_the_callers_words_match_and_the_models_answer_is_never_heard() -> None:
    fake, report, texts = await transfer("intent_transcript_transfer")
    (request,) = fake.requests
    assert request.at >= last_echo_at(report)
    sip = ET.fromstring(request.form["Twiml"][0]).find("Dial/Sip")
    assert sip is not None
    assert sip.text == "sip:support@pbx.example.com"
    assert report.record is not None
    said = [line for line in report.record.transcript if line.startswith("ASSISTANT")]
    assert said == []  # "Sure, one moment." and the answer to the note were withheld
    (note,) = texts
    assert "was not played" in note
    assert report.record.intents is not None
    (timing,) = report.record.intents
    assert timing.trigger == "transcript"
    assert timing.caller_to_match_ms is not None  # from the caller's end of speech


async def test_a_tool_intent_plays_hold_then_the_model_speaks_the_tools_answer() -> None:
    fake = FakeToolServer(answer={"branch": "main", "open": "09:00-17:00"})
    async with serving_tool(fake) as url:
        scenario = parse_scenario(scenario_text("intent_transcript_tool", TOOL_PLACEHOLDER, url))
        async with replay_stack(scenario) as stack:
            report = await stack.run()
            sessions = stack.emulator.sessions
            (call_report,) = stack.finished.recent(1)
    assert report.passed, format_report(report)
    (seen,) = fake.seen
    assert (seen.authorized, seen.signed, seen.tool) == (True, True, "opening_hours")
    assert msgspec.json.decode(seen.body) == {"branch": "main"}
    (note,) = [text for session in sessions for text in session.text_inputs]
    assert '"open":"09:00-17:00"' in note
    assert report.record is not None
    said = [line for line in report.record.transcript if line.startswith("ASSISTANT")]
    assert said == ["ASSISTANT: The main branch is open from nine to five today."]
    (tool,) = call_report.tools
    assert (tool.name, tool.outcome, tool.delivered) == ("opening_hours", "ok", True)
    (intent,) = call_report.intents
    assert (intent.intent, intent.outcome) == ("hours", "ok")
