"""Tool calls and call control in replay reports: joining the three views of a tool call, timing
REST requests from the prompt the caller heard, the ``[[expect.tools]]`` / ``[[expect.rest]]``
checks, the tables."""

from __future__ import annotations

import msgspec

from gateway.replay.fake_tools import ToolRequest
from gateway.replay.fake_twilio import RecordedRestRequest
from gateway.replay.peer import PeerResult, TimelineEvent
from gateway.replay.playback import AnswerPlayback
from gateway.replay.report import CallRecord, build_report, format_report, format_summary
from gateway.replay.scenario import parse_scenario
from gateway.replay.tool_report import ServiceRecord, ToolCallSeen

ORIGIN = 100.0

SCENARIO = """
name = "actions"

[twilio_rest]

[[gateway.tools]]
name = "balance"
description = "Look the balance up."

[expect]

[[expect.tools]]
name = "balance"
outcome = "ok"
input = { account = "1" }
result = { balance = "42.17" }
max_latency_ms = 1000
heard_while_running = true

[[expect.tools]]
name = "transfer_call"
outcome = "ok"

[[expect.rest]]
action = "dial"
target = "+15550100003"
within_ms = 100
"""


def peer(*, echo_at_ms: float = 5000.0) -> PeerResult:
    return PeerResult(
        origin=ORIGIN,
        call_sid="CA1",
        stream_sid="MZ1",
        connected=True,
        closed_by="peer",
        close_code=1000,
        timeline=[
            TimelineEvent(at_ms=0.0, kind="connect"),
            TimelineEvent(at_ms=echo_at_ms, kind="mark echoed", detail="call_action"),
            TimelineEvent(at_ms=6000.0, kind="closed"),
        ],
        answers=[
            # the model talks from 2.0 s to 3.5 s; the receiver works from 1.8 s to 2.6 s
            AnswerPlayback(index=0, started_at=ORIGIN + 2.0, ended_at=ORIGIN + 3.5),
        ],
    )


def record(*, results: list[str] | None = None) -> CallRecord:
    return CallRecord(
        call_sid="CA1",
        tool_calls=[
            ToolCallSeen(name="balance", outcome="ok", latency_ms=805.0, delivered=True),
            ToolCallSeen(name="transfer_call", outcome="ok", latency_ms=0.4, delivered=True),
        ],
        tool_results=results
        if results is not None
        else ['{"balance":"42.17","currency":"EUR"}', '{"status":"transferring"}'],
    )


def services(*, rest_at: float = ORIGIN + 5.02, dial: str = "+15550100003") -> ServiceRecord:
    return ServiceRecord(
        rest_requests=[
            RecordedRestRequest(
                method="POST",
                path="/2010-04-01/Accounts/AC/Calls/CA1.json",
                username="SK1",
                authorized=True,
                form={"Twiml": ["<Response/>"]},
                at=rest_at,
                action="dial",
                dial=dial,
                status=200,
            )
        ],
        tool_requests=[
            ToolRequest(
                tool="balance",
                path="/tools/balance",
                body=b'{"account":"1"}',
                input={"account": "1"},
                authorized=True,
                signed=True,
                at=ORIGIN + 1.8,
                status=200,
                answered_at=ORIGIN + 2.6,
            )
        ],
    )


def checks(report_checks: list[object]) -> dict[str, bool]:
    return {c.name: c.passed for c in report_checks}  # type: ignore[attr-defined]


def test_the_three_views_of_a_tool_call_are_joined_and_checked() -> None:
    report = build_report(
        parse_scenario(SCENARIO),
        peer(),
        record=record(),
        live_calls_after=0,
        calls_started=1,
        services=services(),
    )
    balance, transfer = report.tools
    assert (balance.requested_ms, balance.receiver_ms, balance.input, balance.signed) == (
        1800.0,
        800.0,
        {"account": "1"},
        True,
    )
    assert balance.heard_while_running_ms == 600.0  # 2.0 s to 2.6 s
    assert balance.result == '{"balance":"42.17","currency":"EUR"}'
    assert (transfer.requested_ms, transfer.result) == (None, '{"status":"transferring"}')
    (control,) = report.call_control
    assert (control.prompt_heard_ms, control.prompt_to_request_ms) == (5000.0, 20.0)
    assert report.passed, format_report(report)
    text = format_report(report)
    assert "tool calls" in text
    assert "call control" in text
    assert "dial +15550100003" in text
    summary = format_summary([report])
    assert "slowest tool" in summary
    assert "805 ms" in summary
    assert msgspec.json.decode(msgspec.json.encode(report.to_dict()))["tools"][0]["name"] == (
        "balance"
    )


def test_a_request_before_the_prompt_was_heard_fails() -> None:
    report = build_report(
        parse_scenario(SCENARIO),
        peer(echo_at_ms=5100.0),  # the mark came back after the request
        record=record(),
        live_calls_after=0,
        calls_started=1,
        services=services(),
    )
    assert not checks(report.checks)["rest 1 dial timing"]
    assert report.call_control[0].prompt_heard_ms is None


def test_a_slow_request_another_target_or_a_missing_result_fail() -> None:
    report = build_report(
        parse_scenario(SCENARIO),
        peer(),
        record=record(results=['{"error":"timeout"}']),
        live_calls_after=0,
        calls_started=1,
        services=services(rest_at=ORIGIN + 5.5, dial="+15550100009"),
    )
    failed = {name for name, passed in checks(report.checks).items() if not passed}
    assert failed == {"twilio rest", "rest 1 dial timing", "tool 1 balance result"}


def test_without_a_record_the_tool_checks_fail_plainly() -> None:
    report = build_report(
        parse_scenario(SCENARIO),
        peer(),
        record=None,
        live_calls_after=0,
        calls_started=1,
        services=services(),
    )
    assert checks(report.checks)["tool calls"] is False
    assert report.tools == []
