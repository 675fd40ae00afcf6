"""Scenario decoding: valid files decode, errors name the right line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.replay.locate import line_of_path, parse_path
from gateway.replay.scenario import (
    BargeIn,
    Dtmf,
    Hangup,
    Pause,
    RestExpectation,
    Say,
    ScenarioError,
    ToolExpectation,
    TwilioRestFake,
    WaitForAnswer,
    load_scenario,
    parse_scenario,
)

CALLS = Path(__file__).resolve().parents[2] / "scripts" / "calls"

GOOD = """\
name = "example"
description = "every step kind"

[[caller]]
kind = "wait_for_answer"
until = "end"

[[caller]]
kind = "say"
ms = 900
seed = 4

[[caller]]
kind = "barge_in"
at_ms = 500
ms = 600

[[caller]]
kind = "pause"
ms = 200

[[caller]]
kind = "dtmf"
digit = "#"

[[caller]]
kind = "hangup"
at_ms = 300

[[model.turns]]
transcript = "What are your opening hours?"
reply = "Nine to five."
answer_ms = 2000

[gateway]
handover_after_s = 2.0

[expect]
greeting_within_ms = 200
transcript = ["USER: opening hours", "ASSISTANT: nine to five"]
"""


def test_every_step_kind_decodes() -> None:
    scenario = parse_scenario(GOOD)
    assert [type(step) for step in scenario.caller] == [
        WaitForAnswer,
        Say,
        BargeIn,
        Pause,
        Dtmf,
        Hangup,
    ]
    assert scenario.caller[1] == Say(ms=900, seed=4)
    assert scenario.caller[5] == Hangup(at_ms=300)
    assert scenario.model.turns[0].answer_ms == 2000
    assert scenario.gateway == {"handover_after_s": 2.0}
    assert scenario.expect.greeting_within_ms == 200


def test_bundled_scenarios_decode() -> None:
    files = sorted(CALLS.glob("*.toml"))
    assert files, "no bundled scenarios"
    for file in files:
        scenario = load_scenario(file)
        assert scenario.name == file.stem
        for step in scenario.caller:
            audio = getattr(step, "audio", None)
            if audio is not None:
                assert scenario.resolve(audio).is_file(), audio


@pytest.mark.parametrize(
    ("old", "new", "line", "path"),
    [
        ("ms = 600", 'ms = "long"', 16, "$.caller[2].ms"),  # wrong type on a key
        ('digit = "#"', 'digit = "x"', 22, "$.caller[4]"),  # __post_init__ check -> its table
        ('until = "end"', 'until = "later"', 6, "$.caller[0].until"),
        ("seed = 4", "sead = 4", 11, "$.caller[1].sead"),  # unknown field -> its own line
        ("answer_ms = 2000", "answer_ms = 2000\nvoice = 1", 34, "$.model.turns[0].voice"),
        ('kind = "pause"', 'kind = "cough"', 19, "$.caller[3].kind"),
        (
            "handover_after_s = 2.0",
            "handover_after_s = 2.0\n[peer]\nsign = false",
            38,
            "$.peer.sign",
        ),
    ],
)
def test_validation_error_names_the_line(old: str, new: str, line: int, path: str) -> None:
    source = GOOD.replace(old, new, 1)
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(source, source_name="call.toml")
    assert (caught.value.line, caught.value.path) == (line, path)
    assert str(caught.value).startswith(f"call.toml:{line}: ")


def test_missing_field_names_the_table_header() -> None:
    source = GOOD.replace("at_ms = 500\n", "")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(source)
    assert caught.value.line == 13
    assert "at_ms" in caught.value.message


def test_bad_transcript_line_names_the_expect_table() -> None:
    source = GOOD.replace('"USER: opening hours"', '"opening hours"')
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(source)
    assert caught.value.line == GOOD.splitlines().index("[expect]") + 1


def test_toml_syntax_error_names_the_line() -> None:
    source = GOOD.replace('[[caller]]\nkind = "pause"', '[[caller]\nkind = "pause"')
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(source, source_name="bad.toml")
    assert caught.value.line == 18
    assert "bad.toml:18: TOML syntax" in str(caught.value)


def test_locator_handles_nested_arrays_and_multiline_values() -> None:
    source = """\
[[a]]
x = 1
[[a.b]]
y = 2
[[a]]
list = [
  1,
  "z = 3",
]
[[a.b]]
y = 4
"""
    assert parse_path("$.a[1].b[0].y") == ("a", 1, "b", 0, "y")
    assert line_of_path(source, "$.a[1].b[0].y") == 11
    assert line_of_path(source, "$.a[0].b[0].y") == 4
    assert line_of_path(source, "$.a[1].list[1]") == 6
    assert line_of_path(source, "$.a[1].z") == 5
    assert line_of_path(source, "$.nowhere") == 1


SERVICES = """\
name = "services"

[[caller]]
kind = "wait_for_answer"

[twilio_rest]
answers = ["not_found"]

[[gateway.tools]]
name = "balance"
description = "Look the balance up."

[[gateway.tools]]
name = "end_call"
description = "Hang up."
kind = "end_call"

[[tool_replies]]
tool = "balance"
answer = { balance = "42.17" }
delay_ms = 800

[expect]
ends_cleanly = true

[[expect.tools]]
name = "balance"
outcome = "ok"
input = { account = "1" }

[[expect.rest]]
action = "complete"
within_ms = 500
"""


def test_the_service_sections_decode() -> None:
    scenario = parse_scenario(SERVICES)
    assert scenario.twilio_rest == TwilioRestFake(answers=["not_found"])
    assert scenario.received_tools() == ["balance"]  # the built-in is not the receiver's
    (reply,) = scenario.tool_replies
    assert (reply.tool, reply.answer, reply.delay_ms, reply.hang) == (
        "balance",
        {"balance": "42.17"},
        800,
        False,
    )
    assert scenario.expect.tools == [
        ToolExpectation(name="balance", outcome="ok", input={"account": "1"})
    ]
    assert scenario.expect.rest == [RestExpectation(action="complete", within_ms=500)]


@pytest.mark.parametrize(
    ("old", "new", "line", "path"),
    [
        # a reply for a tool the receiver does not answer (a built-in)
        ('tool = "balance"', 'tool = "end_call"', 19, "$.tool_replies[0].tool"),
        ('answers = ["not_found"]', 'answers = ["maybe"]', 7, "$.twilio_rest.answers[0]"),
        ("delay_ms = 800", "delay_ms = -1", 21, "$.tool_replies[0].delay_ms"),
        ("delay_ms = 800", 'raw_body = "x"', 18, "$.tool_replies[0]"),  # answer and raw_body
        ('outcome = "ok"', 'outcome = "fine"', 28, "$.expect.tools[0].outcome"),
        ('action = "complete"', 'action = "hangup"', 32, "$.expect.rest[0].action"),
        ("within_ms = 500", 'target = "+15550100003"', 31, "$.expect.rest[0]"),
        # `input` is what the receiver got: only for tools it answers
        ('name = "balance"\noutcome', 'name = "end_call"\noutcome', 26, "$.expect.tools[0]"),
        # requests to the fake Twilio REST API need it started
        ('[twilio_rest]\nanswers = ["not_found"]\n', "", 29, "$.expect.rest[0]"),
    ],
)
def test_service_section_errors_name_the_line(old: str, new: str, line: int, path: str) -> None:
    source = SERVICES.replace(old, new, 1)
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(source, source_name="call.toml")
    assert (caught.value.line, caught.value.path) == (line, path), caught.value.message
