"""The built-in ``end_call`` / ``transfer_call`` through the whole stack: emulator (scripted tool
use) + gateway + call actors + simulated Twilio + the replay's fake Twilio REST API
(``[twilio_rest]``) on 127.0.0.1.

The model's turn calls the built-in; the gateway sends the tool result, stops the call's actors,
plays the goodbye / transferring prompt, and only once the simulated Twilio echoed the prompt's
mark (the caller heard it) asks the REST API to hang up or to ``<Dial>`` the target; then the
socket closes with 1000.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import msgspec
import pytest

from actors.call import ACTION_MARK
from gateway.replay import ScenarioError, format_report, parse_scenario, replay_stack

if TYPE_CHECKING:
    from gateway.replay.fake_twilio import RecordedRestRequest, RestAnswer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "1" * 32
KEY_SID = "SK" + "2" * 32
KEY_SECRET = "api-key-s3cret-value"

SCENARIO = """
name = "builtin_{tool}"
description = "The model calls the built-in {tool}."

[peer]
call_sid = "{call}"
account_sid = "{account}"

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
transcript = "Please {tool}."
reply = "Okay."
answer_ms = 1000

[model.turns.tool_use]
name = "{tool}"
arguments = {arguments}

[twilio_rest]
answers = {answers}

[gateway.twilio]
account_sid = "{account}"
api_key_sid = "{key_sid}"
api_key_secret = "{key_secret}"

[[gateway.tools]]
name = "end_call"
description = "Hang up."
kind = "end_call"

[[gateway.tools]]
name = "transfer_call"
description = "Transfer the caller."
kind = "transfer_call"
[[gateway.tools.targets]]
name = "sales"
number = "+15551234567"
[[gateway.tools.targets]]
name = "support"
sip = "sip:support@pbx.example.com"

[expect]
ends_cleanly = true
"""


def scenario_for(tool: str, arguments: str, answers: list[RestAnswer] | None = None) -> str:
    return SCENARIO.format(
        tool=tool,
        arguments=arguments,
        answers=msgspec.json.encode(answers or []).decode(),
        call=CALL,
        account=ACCOUNT,
        key_sid=KEY_SID,
        key_secret=KEY_SECRET,
    )


async def run(
    tool: str, arguments: str, *, answers: list[RestAnswer] | None = None
) -> tuple[list[RecordedRestRequest], float, list[str]]:
    """Replay one call; the REST requests, when the prompt's mark was echoed (s), the results."""
    scenario = parse_scenario(scenario_for(tool, arguments, answers))
    async with replay_stack(scenario) as stack:
        report = await stack.run()
        sessions = stack.emulator.sessions
        (call_report,) = stack.finished.recent(1)
    assert report.passed, format_report(report)
    assert report.close_code == 1000
    echoes = [e for e in report.timeline if e.kind == "mark echoed" and e.detail == ACTION_MARK]
    assert len(echoes) == 1, format_report(report)
    (used,) = call_report.tools
    assert (used.name, used.outcome) == (tool, "ok")
    results = [content for session in sessions for _, content in session.tool_results]
    assert stack.services.twilio is not None
    return stack.services.twilio.requests, report.origin + echoes[0].at_ms / 1000.0, results


async def test_end_call_plays_goodbye_then_completes_the_call() -> None:
    requests, heard_at, results = await run("end_call", "{}")
    assert [msgspec.json.decode(r) for r in results] == [{"status": "ending_call"}]
    (request,) = requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert (request.username, request.authorized, request.problem) == (KEY_SID, True, None)
    assert request.form == {"Status": ["completed"]}
    assert request.status == 200
    assert request.at >= heard_at  # the caller heard the goodbye before the hang-up


async def test_transfer_call_plays_transferring_then_dials_the_named_target() -> None:
    requests, heard_at, results = await run("transfer_call", '{ target = "sales" }')
    assert [msgspec.json.decode(r) for r in results] == [
        {"status": "transferring", "target": "sales"}
    ]
    (request,) = requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert (request.username, request.authorized, request.problem) == (KEY_SID, True, None)
    assert set(request.form) == {"Twiml"}
    assert request.twiml is not None
    root = ET.fromstring(request.twiml)
    number = root.find("Dial/Number")
    assert number is not None
    assert number.text == "+15551234567"
    assert request.at >= heard_at


@pytest.mark.parametrize("answer", ["not_found", "error"])
async def test_end_call_still_ends_cleanly_when_twilio_says_ended_or_refuses(
    answer: RestAnswer,
) -> None:
    # 404/20404: the call had already ended (an answer, not a failure); 500: a WARNING. Either
    # way the goodbye was heard and the socket closes with 1000 (checked in ``run``).
    requests, heard_at, _ = await run("end_call", "{}", answers=[answer])
    (request,) = requests
    assert request.at >= heard_at
    assert request.status == (404 if answer == "not_found" else 500)


async def test_an_unknown_target_is_an_error_for_the_model_and_nothing_happens() -> None:
    scenario = parse_scenario(scenario_for("transfer_call", '{ target = "+15550000000" }'))
    async with replay_stack(scenario) as stack:
        report = await stack.run()
        sessions = stack.emulator.sessions
        (call_report,) = stack.finished.recent(1)
    assert report.passed, format_report(report)
    results = [content for session in sessions for _, content in session.tool_results]
    assert [msgspec.json.decode(r) for r in results] == [
        {"error": "bad_input", "reason": "unknown_target", "targets": ["sales", "support"]}
    ]
    (used,) = call_report.tools
    assert (used.name, used.outcome) == ("transfer_call", "bad_input")
    assert stack.services.twilio is not None
    assert stack.services.twilio.requests == []
    assert not [e for e in report.timeline if e.detail == ACTION_MARK]
    assert call_report.end_reason != "tool_transfer"


async def test_a_built_in_without_rest_credentials_is_refused_as_serve_refuses_it() -> None:
    source = scenario_for("end_call", "{}").replace("[twilio_rest]\nanswers = []\n", "")
    source = source.replace(f'api_key_sid = "{KEY_SID}"\napi_key_secret = "{KEY_SECRET}"\n', "")
    with pytest.raises(ScenarioError, match=r"tools\[0\]\.kind"):
        async with replay_stack(parse_scenario(source)):
            pass
