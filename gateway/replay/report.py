"""Per-call replay reports: measurements, expectation checks, plain-text tables, JSON.

Theory of operation. :func:`build_report` turns what the peer observed (:class:`PeerResult`) and
what the system recorded (:class:`CallRecord`, from the gateway and/or the emulator) into a
:class:`ReplayReport`: the timeline, per-turn latency (caller end of speech -> first assistant media
received, and -> first assistant audio heard), barge-in stop time (caller starts talking over the
answer -> ``clear`` received, and how much audio was still heard after that), what was heard per
answer, and one :class:`Check` per expectation with the measured value. Formatting is separate
(:func:`format_report`, :func:`format_summary`); ``msgspec.json.encode(report)`` or
:meth:`ReplayReport.to_dict` give JSON. Pure and synchronous.
"""

from __future__ import annotations

import re
import statistics
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.replay.peer import TimelineEvent
from gateway.replay.tool_report import (
    ReplayCallControl,
    ReplayToolUse,
    ServiceRecord,
    ToolCallSeen,
    call_controls,
    format_tool_sections,
    median_prompt_to_request_ms,
    rest_checks,
    service_events,
    slowest_tool_ms,
    tool_checks,
    tool_uses,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway.replay.peer import PeerResult
    from gateway.replay.scenario import Scenario

__all__ = [
    "AnswerHeard",
    "BargeInStop",
    "CallRecord",
    "Check",
    "IntentTiming",
    "ReplayReport",
    "ReplayTurnLatency",
    "TurnSplit",
    "build_report",
    "format_report",
    "format_summary",
]


class TurnSplit(msgspec.Struct, frozen=True, kw_only=True):
    """Where one answered caller turn's response time went (None: that side did not say).

    Attributes:
        pause_ms: the model's end-of-turn pause: caller silence (audio time) before it decided the
            turn had ended (the emulator's record).
        first_audio_ms: the model's time from that decision to its first reply audio (wall time,
            the emulator's record).
        gateway_ms: the gateway's time from that first audio to the first media it sent (the
            gateway's own report of the call).
    """

    pause_ms: float | None
    first_audio_ms: float | None
    gateway_ms: float | None


class IntentTiming(msgspec.Struct, frozen=True, kw_only=True):
    """One intent the gateway matched, and how fast its cached prompt went out (its own report).

    Attributes:
        intent: the intent's name.
        trigger: ``dtmf`` or ``transcript``.
        caller_to_match_ms: the caller's end of speech (or key) -> the match.
        match_to_media_ms: the match -> the prompt's first ``media`` sent (the gateway's part).
        caller_to_media_ms: the caller's end of speech (or key) -> that first media.
    """

    intent: str
    trigger: str
    caller_to_match_ms: float | None
    match_to_media_ms: float | None
    caller_to_media_ms: float | None


class CallRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the system under test recorded about one call.

    Attributes:
        call_sid: the call.
        transcript: ``"USER: ..."`` / ``"ASSISTANT: ..."`` lines in order (assistant lines as heard,
            when the gateway truncates them at barge-in).
        handovers: planned Sonic session handovers during the call.
        recovered_faults: Sonic faults after which the call continued on a new session.
        error: why the call failed, None when it ended normally.
        sessions: Sonic sessions opened for the call.
        source: who produced the record ("gateway", "emulator", ...).
        text_inputs: interactive USER texts the model received during the call (DTMF entries),
            in order; None when the record's source cannot see them.
        turn_splits: per spoken caller turn the model answered, in order: its end-of-turn pause,
            its time to first audio and the gateway's time; None when the record's source
            cannot see the model's side.
        tool_calls: the tool calls the gateway made, in the order they finished; None when the
            record's source cannot see them.
        tool_results: the tool results the model received, in order (JSON text); None when the
            record's source cannot see the model's side.
        system_prompts / voices: per Sonic session of the call, the system prompt it got and the
            voice it asked for; None when the record's source cannot see the model's side.
        intents: the intents the gateway matched, in order, with their prompt's timing; None
            when the record's source cannot see them.
    """

    call_sid: str
    transcript: list[str] = msgspec.field(default_factory=list)
    handovers: int = 0
    recovered_faults: int = 0
    error: str | None = None
    sessions: int = 0
    source: str = ""
    text_inputs: list[str] | None = None
    turn_splits: list[TurnSplit] | None = None
    tool_calls: list[ToolCallSeen] | None = None
    tool_results: list[str] | None = None
    system_prompts: list[str] | None = None
    voices: list[str] | None = None
    intents: list[IntentTiming] | None = None


class ReplayTurnLatency(msgspec.Struct, frozen=True, kw_only=True):
    """One caller utterance: ms offsets on the timeline and the latency to the reply."""

    step: int
    speech_end_ms: float
    latency_ms: float | None  # end of speech -> first assistant media received
    heard_latency_ms: float | None  # end of speech -> first assistant audio heard
    barge_in: bool


class BargeInStop(msgspec.Struct, frozen=True, kw_only=True):
    """One barge-in: signal (caller starts talking over the answer) -> clear, and audio heard after."""

    step: int
    answer: int
    signal_ms: float
    stop_ms: float | None  # signal -> clear received; None: no clear came
    heard_after_ms: float


class AnswerHeard(msgspec.Struct, frozen=True, kw_only=True):
    """One assistant answer as the caller heard it."""

    index: int
    start_ms: float
    end_ms: float | None
    heard_ms: float
    received_ms: float
    cleared_ms: float
    interrupted: bool


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One expectation: what was asked, what was measured, whether it held."""

    name: str
    expected: str
    measured: str
    passed: bool


class ReplayReport(msgspec.Struct, kw_only=True):
    """Everything about one replayed call."""

    scenario: str
    description: str
    passed: bool
    call_sid: str
    error: str | None
    greeting_ms: float | None
    duration_ms: float
    close_code: int | None
    closed_by: str
    rejected_status: int | None
    frames_sent: int
    media_received: int
    marks_echoed: int
    marks_cleared: int
    heard_ms: float
    timeline: list[TimelineEvent]
    turns: list[ReplayTurnLatency]
    barge_ins: list[BargeInStop]
    answers: list[AnswerHeard]
    checks: list[Check]
    record: CallRecord | None = None
    tools: list[ReplayToolUse] = msgspec.field(default_factory=list)
    """Each tool call: the gateway's latency, the receiver's view, what the model got."""
    call_control: list[ReplayCallControl] = msgspec.field(default_factory=list)
    """Each request to the fake Twilio REST API, timed from the prompt the caller heard."""
    origin: float = 0.0
    """``anyio.current_time()`` the timeline's ms count from (to line up other observers)."""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-compatible builtins."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


def _ms(seconds: float, origin: float) -> float:
    return round((seconds - origin) * 1000, 1)


def build_report(
    scenario: Scenario,
    result: PeerResult,
    *,
    record: CallRecord | None,
    live_calls_after: int | None,
    calls_started: int | None,
    sessions_opened: int | None = None,
    services: ServiceRecord | None = None,
) -> ReplayReport:
    """Measure the call and check the scenario's expectations.

    Args:
        scenario: what was expected.
        result: what the peer observed.
        record: what the system recorded (None: not available; checks needing it fail).
        live_calls_after: live calls in the gateway after the call (None: unknown).
        calls_started: calls the gateway started during this scenario (None: unknown).
        sessions_opened: Sonic sessions opened during this scenario (None: unknown).
        services: what the call's local servers (fake Twilio REST API, tool receiver) recorded.
    """
    origin = result.origin
    services = services if services is not None else ServiceRecord()
    turns = [
        ReplayTurnLatency(
            step=t.step,
            speech_end_ms=_ms(t.speech_end, origin),
            latency_ms=None
            if t.first_media is None
            else round((t.first_media - t.speech_end) * 1000, 1),
            heard_latency_ms=None
            if t.first_heard is None
            else round((t.first_heard - t.speech_end) * 1000, 1),
            barge_in=t.barge_in,
        )
        for t in result.turns
    ]
    answers = [
        AnswerHeard(
            index=a.index,
            start_ms=_ms(a.started_at, origin),
            end_ms=None if a.ended_at is None else _ms(a.ended_at, origin),
            heard_ms=a.heard_bytes / 8,
            received_ms=a.received_bytes / 8,
            cleared_ms=a.cleared_bytes / 8,
            interrupted=a.interrupted,
        )
        for a in result.answers
    ]
    barge_ins = []
    for b in result.barge_ins:
        final_heard = result.answers[b.answer].heard_bytes if b.answer < len(result.answers) else 0
        barge_ins.append(
            BargeInStop(
                step=b.step,
                answer=b.answer,
                signal_ms=_ms(b.signal, origin),
                stop_ms=None if b.clear is None else round((b.clear - b.signal) * 1000, 1),
                heard_after_ms=max(0, final_heard - b.heard_bytes_at_signal) / 8,
            )
        )
    greeting = None
    if result.first_media is not None and result.start_sent is not None:
        greeting = round((result.first_media - result.start_sent) * 1000, 1)
    end = max((e.at_ms for e in result.timeline), default=0.0)
    report = ReplayReport(
        scenario=scenario.name,
        description=scenario.description,
        passed=False,
        call_sid=result.call_sid,
        error=result.error,
        greeting_ms=greeting,
        duration_ms=end,
        close_code=result.close_code,
        closed_by=result.closed_by,
        rejected_status=result.rejected_status,
        frames_sent=result.frames_sent,
        media_received=result.media_received,
        marks_echoed=result.marks_echoed,
        marks_cleared=result.marks_cleared,
        heard_ms=result.heard_bytes / 8,
        timeline=sorted(
            [*result.timeline, *service_events(services, origin)], key=lambda e: e.at_ms
        ),
        turns=turns,
        barge_ins=barge_ins,
        answers=answers,
        checks=[],
        record=record,
        origin=result.origin,
    )
    if record is not None and record.tool_calls is not None:
        report.tools = tool_uses(
            record.tool_calls, record.tool_results, services.tool_requests, result
        )
    if services.rest_requests is not None:
        report.call_control = call_controls(services.rest_requests, result)
    report.checks = _checks(
        scenario, report, record, live_calls_after, calls_started, sessions_opened
    )
    report.passed = all(check.passed for check in report.checks)
    return report


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _squash(text: str) -> str:
    """Case and spacing ignored, every other character kept (``#`` and ``*`` matter in DTMF)."""
    return " ".join(text.lower().split())


def _transcript_matches(expected: list[str], lines: list[str]) -> tuple[bool, str]:
    """Each expected line must match, in order, a record line of its role containing its text."""
    position = 0
    for wanted in expected:
        role, _, text = wanted.partition(":")
        needle = _norm(text)
        while position < len(lines):
            got_role, _, got_text = lines[position].partition(":")
            position += 1
            if got_role.strip().upper() == role.strip().upper() and needle in _norm(got_text):
                break
        else:
            return False, f"missing {wanted!r}"
    return True, f"{len(expected)} lines in order"


def _checks(
    scenario: Scenario,
    report: ReplayReport,
    record: CallRecord | None,
    live_calls_after: int | None,
    calls_started: int | None,
    sessions_opened: int | None,
) -> list[Check]:
    expect = scenario.expect
    checks: list[Check] = []

    def add(name: str, expected: str, measured: str, passed: bool) -> None:
        checks.append(Check(name=name, expected=expected, measured=measured, passed=passed))

    def no_record(name: str, expected: str) -> None:
        add(name, expected, "no call record", False)

    if expect.rejected:
        status = report.rejected_status
        refused = status == 403
        detail = f"HTTP {status}" if status is not None else "accepted"
        if calls_started is not None:
            refused = refused and calls_started == 0
            detail += f", {calls_started} calls started"
        if sessions_opened is not None:
            refused = refused and sessions_opened == 0
            detail += f", {sessions_opened} Sonic sessions"
        add("rejected", "HTTP 403, no call", detail, refused)
    else:
        add(
            "call completed",
            "connected, no peer error",
            report.error
            or (
                "connected" if report.rejected_status is None else f"HTTP {report.rejected_status}"
            ),
            report.error is None and report.rejected_status is None,
        )
    if expect.greeting_within_ms is not None:
        g = report.greeting_ms
        add(
            "greeting",
            f"<= {expect.greeting_within_ms} ms",
            "none" if g is None else f"{g:.0f} ms",
            g is not None and g <= expect.greeting_within_ms,
        )
    if expect.response_latency_ms is not None:
        latencies = [t.latency_ms for t in report.turns]
        if not latencies:
            add("response latency", f"<= {expect.response_latency_ms} ms", "no caller turns", False)
        elif any(lat is None for lat in latencies):
            missing = next(t.step for t in report.turns if t.latency_ms is None)
            add(
                "response latency",
                f"<= {expect.response_latency_ms} ms",
                f"step {missing}: no reply",
                False,
            )
        else:
            worst = max(lat for lat in latencies if lat is not None)
            add(
                "response latency",
                f"<= {expect.response_latency_ms} ms",
                f"max {worst:.0f} ms",
                worst <= expect.response_latency_ms,
            )
    if expect.clear_within_ms is not None:
        stops = [b.stop_ms for b in report.barge_ins]
        if not stops or any(s is None for s in stops):
            add(
                "clear after barge-in",
                f"<= {expect.clear_within_ms} ms",
                "no barge-in" if not stops else "no clear",
                False,
            )
        else:
            worst = max(s for s in stops if s is not None)
            add(
                "clear after barge-in",
                f"<= {expect.clear_within_ms} ms",
                f"max {worst:.0f} ms",
                worst <= expect.clear_within_ms,
            )
    if expect.max_heard_after_barge_in_ms is not None:
        heard = [b.heard_after_ms for b in report.barge_ins]
        worst_heard = max(heard, default=None)
        add(
            "heard after barge-in",
            f"<= {expect.max_heard_after_barge_in_ms} ms",
            "no barge-in" if worst_heard is None else f"max {worst_heard:.0f} ms",
            worst_heard is not None and worst_heard <= expect.max_heard_after_barge_in_ms,
        )
    if expect.min_heard_ms is not None:
        add(
            "heard",
            f">= {expect.min_heard_ms} ms",
            f"{report.heard_ms:.0f} ms",
            report.heard_ms >= expect.min_heard_ms,
        )
    if expect.answers is not None:
        add(
            "answers heard",
            f"== {expect.answers}",
            str(len(report.answers)),
            len(report.answers) == expect.answers,
        )
    if expect.transcript:
        if record is None:
            no_record("transcript", f"{len(expect.transcript)} lines")
        else:
            ok, detail = _transcript_matches(expect.transcript, record.transcript)
            add("transcript", f"{len(expect.transcript)} lines in order", detail, ok)
    if expect.heard_contains:
        if record is None:
            no_record("heard contains", ", ".join(expect.heard_contains))
        else:
            said = _norm(
                " ".join(
                    line.partition(":")[2]
                    for line in record.transcript
                    if line.upper().startswith("ASSISTANT")
                )
            )
            absent = [text for text in expect.heard_contains if _norm(text) not in said]
            add(
                "heard contains",
                f"{len(expect.heard_contains)} phrases",
                "all present" if not absent else f"missing {absent[0]!r}",
                not absent,
            )
    if expect.text_inputs is not None:
        wanted = expect.text_inputs
        got = None if record is None else record.text_inputs
        if got is None:
            no_record("model text inputs", f"{len(wanted)} texts")
        else:
            ok = len(got) == len(wanted) and all(
                _squash(w) in _squash(g) for w, g in zip(wanted, got, strict=True)
            )
            add(
                "model text inputs",
                " | ".join(wanted) or "none",
                " | ".join(got) or "none",
                ok,
            )
    if expect.system_prompt_contains is not None:
        wanted_prompt = expect.system_prompt_contains
        prompts = None if record is None else record.system_prompts
        if not prompts:
            no_record("system prompt", f"contains {wanted_prompt!r}")
        else:
            mismatched = [p for p in prompts if _squash(wanted_prompt) not in _squash(p)]
            add(
                "system prompt",
                f"contains {wanted_prompt!r}",
                f"{len(prompts)} sessions, all match"
                if not mismatched
                else repr(mismatched[0][:60]),
                not mismatched,
            )
    if expect.voice is not None:
        voices = None if record is None else record.voices
        if not voices:
            no_record("voice", expect.voice)
        else:
            add(
                "voice", expect.voice, ", ".join(sorted(set(voices))), set(voices) == {expect.voice}
            )
    if expect.intents is not None:
        matched = None if record is None else record.intents
        if matched is None:
            no_record("intents", " | ".join(expect.intents) or "none")
        else:
            names = [i.intent for i in matched]
            add(
                "intents",
                " | ".join(expect.intents) or "none",
                " | ".join(names) or "none",
                names == expect.intents,
            )
    if expect.intent_media_within_ms is not None:
        limit = expect.intent_media_within_ms
        timings = [] if record is None or record.intents is None else record.intents
        media = [i.match_to_media_ms for i in timings]
        slowest = max((m for m in media if m is not None), default=None)
        add(
            "intent prompt",
            f"match -> first media <= {limit} ms",
            "no intent"
            if not media
            else ("no media" if slowest is None else f"max {slowest:.1f} ms"),
            bool(media) and None not in media and slowest is not None and slowest <= limit,
        )
    if expect.handovers is not None:
        if record is None:
            no_record("handovers", f">= {expect.handovers}")
        else:
            add(
                "handovers",
                f">= {expect.handovers}",
                str(record.handovers),
                record.handovers >= expect.handovers,
            )
    if expect.recovered_faults is not None:
        if record is None:
            no_record("recovered faults", f">= {expect.recovered_faults}")
        else:
            add(
                "recovered faults",
                f">= {expect.recovered_faults}",
                str(record.recovered_faults),
                record.recovered_faults >= expect.recovered_faults,
            )
    services_seen = report.call_control if scenario.twilio_rest is not None else None
    tools_seen = report.tools if record is not None and record.tool_calls is not None else None
    for row in (*tool_checks(expect, tools_seen), *rest_checks(expect, services_seen)):
        add(*row)
    if expect.ends_cleanly:
        problems = []
        if report.error is not None:
            problems.append("peer error")
        if report.close_code != 1000:
            problems.append(f"close code {report.close_code}")
        if record is not None and record.error is not None:
            problems.append(f"call error: {record.error}")
        if live_calls_after is None:
            problems.append("live calls unknown")
        elif live_calls_after != 0:
            problems.append(f"{live_calls_after} live calls left")
        add(
            "ends cleanly",
            "close 1000, no error, 0 live calls",
            "; ".join(problems) or f"close 1000 by {report.closed_by}",
            not problems,
        )
    return checks


# ------------------------------------------------------------------------------------ formatting


def _table(rows: Sequence[Sequence[str]], header: Sequence[str], indent: str = "  ") -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    out = [indent + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out.append(indent + "  ".join("-" * w for w in widths))
    out.extend(
        indent + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
    return out


def _opt(value: float | None, unit: str = " ms") -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def _collapsed_timeline(events: list[TimelineEvent]) -> list[tuple[str, str, str]]:
    """Timeline rows; runs of consecutive mark echoes become one row."""
    rows: list[tuple[str, str, str]] = []
    run: list[TimelineEvent] = []

    def flush() -> None:
        if not run:
            return
        if len(run) == 1:
            rows.append((f"{run[0].at_ms:9.1f}", run[0].kind, run[0].detail))
        else:
            cleared = sum("(cleared)" in e.detail for e in run)
            detail = f"x{len(run)} until {run[-1].at_ms:.0f} ms" + (
                f", {cleared} cleared" if cleared else ""
            )
            rows.append((f"{run[0].at_ms:9.1f}", "marks echoed", detail))
        run.clear()

    for event in events:
        if event.kind == "mark echoed":
            run.append(event)
            continue
        flush()
        rows.append((f"{event.at_ms:9.1f}", event.kind, event.detail))
    flush()
    return rows


def format_report(report: ReplayReport) -> str:
    """The per-call report as aligned plain text."""
    verdict = "PASS" if report.passed else "FAIL"
    rows: list[tuple[str, ...]]
    lines = [f"=== {report.scenario}: {verdict}", f"  {report.description}".rstrip()]
    lines.append(
        f"  call {report.call_sid}  duration {report.duration_ms:.0f} ms  frames sent {report.frames_sent}"
        f"  media received {report.media_received}  marks echoed {report.marks_echoed}"
        f" ({report.marks_cleared} cleared)  heard {report.heard_ms:.0f} ms"
    )
    if report.error:
        lines.append(f"  error: {report.error}")
    lines.append("")
    lines.append("  timeline (ms from connect)")
    lines.extend(
        _table(_collapsed_timeline(report.timeline), ("at", "event", "detail"), indent="    ")
    )
    if report.turns:
        lines.append("")
        lines.append("  turns (caller end of speech -> assistant audio)")
        rows = [
            (
                str(t.step),
                "barge-in" if t.barge_in else "say",
                f"{t.speech_end_ms:.0f}",
                _opt(t.latency_ms),
                _opt(t.heard_latency_ms),
            )
            for t in report.turns
        ]
        lines.extend(
            _table(
                rows, ("step", "kind", "speech end", "first media", "first heard"), indent="    "
            )
        )
    if report.barge_ins:
        lines.append("")
        lines.append("  barge-ins (caller starts over the answer -> clear received)")
        rows = [
            (
                str(b.step),
                str(b.answer),
                f"{b.signal_ms:.0f}",
                _opt(b.stop_ms),
                f"{b.heard_after_ms:.0f} ms",
            )
            for b in report.barge_ins
        ]
        lines.extend(
            _table(rows, ("step", "answer", "signal at", "stop time", "heard after"), indent="    ")
        )
    if report.answers:
        lines.append("")
        lines.append("  what the caller heard")
        rows = [
            (
                str(a.index),
                f"{a.start_ms:.0f}",
                _opt(a.end_ms, ""),
                f"{a.heard_ms:.0f} ms",
                f"{a.cleared_ms:.0f} ms",
                "interrupted" if a.interrupted else "played",
            )
            for a in report.answers
        ]
        lines.extend(
            _table(rows, ("answer", "start", "end", "heard", "cleared", "how"), indent="    ")
        )
    splits = report.record.turn_splits if report.record is not None else None
    if splits:
        lines.append("")
        lines.append("  response time split (model pause + model to first audio + gateway)")
        rows = [
            (str(i), _opt(t.pause_ms), _opt(t.first_audio_ms), _opt(t.gateway_ms))
            for i, t in enumerate(splits, 1)
        ]
        lines.extend(
            _table(rows, ("turn", "model pause", "model to audio", "gateway"), indent="    ")
        )
    lines.extend(
        format_tool_sections(
            report.tools,
            report.call_control,
            lambda rows, header: _table(rows, header, indent="    "),
        )
    )
    intents = report.record.intents if report.record is not None else None
    if intents:
        lines.append("")
        lines.append(
            "  intents (caller's end of speech or key -> match -> first prompt media sent)"
        )
        rows = [
            (
                i.intent,
                i.trigger,
                _opt(i.caller_to_match_ms),
                _opt_fine(i.match_to_media_ms),
                _opt(i.caller_to_media_ms),
            )
            for i in intents
        ]
        lines.extend(
            _table(
                rows,
                ("intent", "trigger", "caller to match", "match to media", "caller to media"),
                indent="    ",
            )
        )
    lines.append("")
    lines.append("  expectations")
    rows = [("ok" if c.passed else "FAIL", c.name, c.expected, c.measured) for c in report.checks]
    lines.extend(_table(rows, ("", "check", "expected", "measured"), indent="    "))
    return "\n".join(lines)


def _opt_fine(value: float | None) -> str:
    """Milliseconds with a decimal: a gateway-side figure well under one frame."""
    return "-" if value is None else f"{value:.1f} ms"


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def format_summary(reports: Sequence[ReplayReport]) -> str:
    """One row per scenario: verdict, greeting, worst turn latency and its median split (model
    pause, model to first audio, gateway), slowest intent prompt (match -> first media), worst
    barge-in stop, the slowest tool call, the time from an action's prompt heard to its Twilio
    REST request, heard."""
    rows: list[tuple[str, ...]] = []
    for r in reports:
        splits = r.record.turn_splits if r.record is not None and r.record.turn_splits else []
        latencies = [t.latency_ms for t in r.turns if t.latency_ms is not None]
        stops = [b.stop_ms for b in r.barge_ins if b.stop_ms is not None]
        intents = r.record.intents if r.record is not None and r.record.intents else []
        prompt_ms = [i.match_to_media_ms for i in intents if i.match_to_media_ms is not None]
        failed = sum(not c.passed for c in r.checks)
        rows.append(
            (
                r.scenario,
                "PASS" if r.passed else "FAIL",
                _opt(r.greeting_ms),
                _opt(max(latencies, default=None)),
                _opt(_median([t.pause_ms for t in splits])),
                _opt(_median([t.first_audio_ms for t in splits])),
                _opt(_median([t.gateway_ms for t in splits])),
                _opt_fine(max(prompt_ms, default=None)),
                _opt(max(stops, default=None)),
                _opt(slowest_tool_ms(r.tools)),
                _opt(median_prompt_to_request_ms(r.call_control)),
                f"{r.heard_ms:.0f} ms",
                f"{len(r.checks) - failed}/{len(r.checks)}",
            )
        )
    passed = sum(r.passed for r in reports)
    lines = ["=== summary"]
    lines.extend(
        _table(
            rows,
            (
                "scenario",
                "result",
                "greeting",
                "max latency",
                "model pause",
                "model to audio",
                "gateway",
                "intent prompt",
                "barge-in stop",
                "slowest tool",
                "prompt -> rest",
                "heard",
                "checks",
            ),
        )
    )
    lines.append(f"  {passed}/{len(reports)} scenarios passed")
    return "\n".join(lines)
