"""Reports: measurements from a peer result, expectation checks, text tables, JSON."""

from __future__ import annotations

import msgspec

from gateway.replay.peer import PeerBargeIn, PeerResult, TimelineEvent, TurnRecord
from gateway.replay.playback import AnswerPlayback
from gateway.replay.report import (
    CallRecord,
    IntentTiming,
    build_report,
    format_report,
    format_summary,
)
from gateway.replay.scenario import parse_scenario

SCENARIO = parse_scenario(
    """
name = "barge"
description = "a barge-in"

[expect]
greeting_within_ms = 100
response_latency_ms = 1000
clear_within_ms = 200
max_heard_after_barge_in_ms = 300
transcript = ["USER: opening hours", "ASSISTANT: nine to five"]
heard_contains = ["nine"]
min_heard_ms = 500
handovers = 1
ends_cleanly = true
"""
)


def peer_result() -> PeerResult:
    origin = 100.0
    return PeerResult(
        origin=origin,
        call_sid="CA1",
        stream_sid="MZ1",
        connected=True,
        start_sent=origin + 0.010,
        first_media=origin + 0.050,  # greeting 40 ms
        closed_by="peer",
        close_code=1000,
        timeline=[
            TimelineEvent(at_ms=0.0, kind="connect"),
            TimelineEvent(at_ms=10.0, kind="start sent"),
            TimelineEvent(at_ms=1700.0, kind="mark echoed", detail="1:0"),
            TimelineEvent(at_ms=1800.0, kind="mark echoed", detail="1:1 (cleared)"),
            TimelineEvent(at_ms=1650.0, kind="clear received"),
        ],
        turns=[
            TurnRecord(
                step=1,
                speech_start=origin + 0.5,
                speech_end=origin + 1.0,
                first_media=origin + 1.4,
                first_heard=origin + 1.41,
            )
        ],
        barge_ins=[
            PeerBargeIn(
                step=2,
                answer=1,
                signal=origin + 1.5,
                heard_bytes_at_signal=720,
                clear=origin + 1.65,
            )
        ],
        answers=[
            AnswerPlayback(
                index=0,
                started_at=origin + 0.05,
                ended_at=origin + 0.45,
                received_bytes=3200,
                heard_bytes=3200,
            ),
            AnswerPlayback(
                index=1,
                started_at=origin + 1.41,
                ended_at=origin + 1.65,
                received_bytes=16000,
                heard_bytes=1920,
                cleared_bytes=14080,
                interrupted=True,
            ),
        ],
        heard_bytes=5120,
    )


def test_measurements_and_checks() -> None:
    record = CallRecord(
        call_sid="CA1",
        transcript=["USER: What are your opening hours?", "ASSISTANT: Nine to five."],
        handovers=0,
    )
    report = build_report(
        SCENARIO, peer_result(), record=record, live_calls_after=0, calls_started=1
    )
    assert report.greeting_ms == 40.0
    assert report.turns[0].latency_ms == 400.0
    assert report.turns[0].heard_latency_ms == 410.0
    barge = report.barge_ins[0]
    assert (barge.stop_ms, barge.heard_after_ms) == (150.0, 150.0)
    assert report.answers[1].heard_ms == 240.0
    assert report.answers[1].interrupted
    verdicts = {c.name: c.passed for c in report.checks}
    assert verdicts == {
        "call completed": True,
        "greeting": True,
        "response latency": True,
        "clear after barge-in": True,
        "heard after barge-in": True,
        "heard": True,
        "transcript": True,
        "heard contains": True,
        "handovers": False,  # 0 < 1
        "ends cleanly": True,
    }
    assert not report.passed
    measured = {c.name: c.measured for c in report.checks}
    assert measured["clear after barge-in"] == "max 150 ms"
    assert measured["handovers"] == "0"
    decoded = msgspec.json.decode(msgspec.json.encode(report))
    assert decoded == report.to_dict()
    assert report.to_dict()["checks"][0]["name"] == "call completed"


def test_missing_record_and_leaks_fail_their_checks() -> None:
    result = peer_result()
    result.close_code = 1011
    report = build_report(SCENARIO, result, record=None, live_calls_after=1, calls_started=1)
    failed = {c.name: c.measured for c in report.checks if not c.passed}
    assert failed["transcript"] == "no call record"
    assert "close code 1011" in failed["ends cleanly"]
    assert "1 live calls left" in failed["ends cleanly"]


def test_transcript_order_matters() -> None:
    record = CallRecord(
        call_sid="CA1",
        transcript=["ASSISTANT: Nine to five.", "USER: What are your opening hours?"],
    )
    report = build_report(
        SCENARIO, peer_result(), record=record, live_calls_after=0, calls_started=1
    )
    check = next(c for c in report.checks if c.name == "transcript")
    assert not check.passed
    assert "nine to five" in check.measured


def test_rejected_expectation() -> None:
    scenario = parse_scenario('name = "r"\n[expect]\nrejected = true\n')
    result = PeerResult(origin=0.0, call_sid="CA2", stream_sid="MZ2", rejected_status=403)
    report = build_report(
        scenario, result, record=None, live_calls_after=0, calls_started=0, sessions_opened=0
    )
    assert [(c.name, c.passed, c.measured) for c in report.checks] == [
        ("rejected", True, "HTTP 403, 0 calls started, 0 Sonic sessions")
    ]
    assert report.passed
    leaked = build_report(scenario, result, record=None, live_calls_after=0, calls_started=1)
    assert not leaked.passed


def test_text_report_and_summary_are_aligned_tables() -> None:
    record = CallRecord(
        call_sid="CA1", transcript=["USER: opening hours", "ASSISTANT: nine to five"], handovers=1
    )
    report = build_report(
        SCENARIO, peer_result(), record=record, live_calls_after=0, calls_started=1
    )
    text = format_report(report)
    assert text.startswith("=== barge: PASS")
    assert "marks echoed" in text
    assert "x2 until 1800 ms, 1 cleared" in text
    for heading in ("timeline", "turns", "barge-ins", "what the caller heard", "expectations"):
        assert heading in text
    # Timeline rows are sorted by time: the clear (1650) comes before the mark echoes (1700).
    assert text.index("clear received") < text.index("x2 until")
    summary = format_summary([report, report])
    lines = summary.splitlines()
    assert lines[0] == "=== summary"
    header, rule = lines[1], lines[2]
    assert header.split() == [
        "scenario",
        "result",
        "greeting",
        "max",
        "latency",
        "model",
        "pause",
        "model",
        "to",
        "audio",
        "gateway",
        "intent",
        "prompt",
        "barge-in",
        "stop",
        "slowest",
        "tool",
        "prompt",
        "->",
        "rest",
        "heard",
        "checks",
    ]
    assert len(rule) >= len(header.rstrip())
    row = lines[3]
    assert row.index("PASS") == header.index("result")
    assert lines[-1] == "  2/2 scenarios passed"


def test_persona_checks_every_session_of_the_call() -> None:
    scenario = msgspec.structs.replace(
        SCENARIO,
        expect=msgspec.structs.replace(
            SCENARIO.expect, system_prompt_contains="from the sales team", voice="tiffany"
        ),
    )

    def checks(prompts: list[str] | None, voices: list[str] | None) -> dict[str, bool]:
        record = CallRecord(call_sid="CA1", system_prompts=prompts, voices=voices)
        report = build_report(
            scenario, peer_result(), record=record, live_calls_after=0, calls_started=1
        )
        return {c.name: c.passed for c in report.checks if c.name in ("system prompt", "voice")}

    sales = "You are Sam, from the  Sales team."
    assert checks([sales, sales], ["tiffany", "tiffany"]) == {"system prompt": True, "voice": True}
    # A session after a restart that lost the persona fails the call's check.
    assert checks([sales, "You are the switchboard."], ["tiffany", "matthew"]) == {
        "system prompt": False,
        "voice": False,
    }
    assert checks(None, None) == {"system prompt": False, "voice": False}


def test_intents_are_checked_and_tabled_from_the_gateways_record() -> None:
    scenario = parse_scenario(
        'name = "intents"\n[expect]\nintents = ["operator"]\nintent_media_within_ms = 20\n'
    )

    def timing(name: str, media: float | None) -> IntentTiming:
        return IntentTiming(
            intent=name,
            trigger="dtmf",
            caller_to_match_ms=0.1,
            match_to_media_ms=media,
            caller_to_media_ms=None if media is None else media + 0.1,
        )

    def checks(intents: list[IntentTiming] | None) -> dict[str, tuple[bool, str]]:
        record = CallRecord(call_sid="CA1", intents=intents)
        report = build_report(
            scenario, peer_result(), record=record, live_calls_after=0, calls_started=1
        )
        return {c.name: (c.passed, c.measured) for c in report.checks}

    assert checks([timing("operator", 1.5)])["intent prompt"] == (True, "max 1.5 ms")
    assert checks([timing("operator", 1.5)])["intents"] == (True, "operator")
    assert checks([timing("operator", 35.0)])["intent prompt"] == (False, "max 35.0 ms")
    assert checks([timing("operator", None)])["intent prompt"] == (False, "no media")
    assert checks([])["intents"] == (False, "none")
    assert checks([timing("hours", 1.0), timing("operator", 1.0)])["intents"][0] is False
    assert checks(None)["intents"] == (False, "no call record")
    record = CallRecord(call_sid="CA1", intents=[timing("operator", 1.5)])
    report = build_report(
        scenario, peer_result(), record=record, live_calls_after=0, calls_started=1
    )
    text = format_report(report)
    assert "intents (caller's end of speech or key -> match -> first prompt media sent)" in text
    assert "operator  dtmf" in text
    assert "1.5 ms" in format_summary([report])
