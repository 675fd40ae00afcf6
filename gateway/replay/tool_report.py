"""Tool calls and call control in a replay report: what the local servers saw, lined up with the call.

Theory of operation. The gateway reports each tool call it made (name, outcome, latency, whether
the result reached the model: :class:`ToolCallSeen`), the emulator records the tool results the
model got, and the local servers record the requests they received
(:class:`~gateway.replay.fake_tools.ToolRequest`,
:class:`~gateway.replay.fake_twilio.RecordedRestRequest`). :func:`tool_uses` joins them per tool call;
:func:`call_controls` puts each REST request on the call's timeline next to the moment the caller
heard the action's prompt to its end (the ``call_action`` mark echoed). :func:`tool_checks` and
:func:`rest_checks` evaluate ``[[expect.tools]]`` and ``[[expect.rest]]``;
:func:`format_tool_sections` prints the two tables. Everything here shares the peer's clock
(``anyio.current_time()``; the servers run in the same process). Pure and synchronous.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import msgspec

from actors.call import ACTION_MARK
from gateway.replay.fake_tools import ToolRequest
from gateway.replay.fake_twilio import RecordedRestRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from gateway.replay.peer import PeerResult, TimelineEvent
    from gateway.replay.playback import AnswerPlayback
    from gateway.replay.scenario import Expectations

__all__ = [
    "ReplayCallControl",
    "ReplayToolUse",
    "ServiceRecord",
    "ToolCallSeen",
    "call_controls",
    "format_tool_sections",
    "median_prompt_to_request_ms",
    "rest_checks",
    "service_events",
    "slowest_tool_ms",
    "tool_checks",
    "tool_uses",
]

type CheckRow = tuple[str, str, str, bool]
"""``(name, expected, measured, passed)`` of one expectation."""


class ToolCallSeen(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call as the gateway reported it (in the order the calls finished)."""

    name: str
    outcome: str
    latency_ms: float
    delivered: bool


class ServiceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the call's local servers recorded (None: that server did not run)."""

    rest_requests: list[RecordedRestRequest] | None = None
    tool_requests: list[ToolRequest] | None = None


class ReplayToolUse(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call in the replay report.

    Attributes:
        name / outcome / delivered: as the gateway reported them.
        latency_ms: the gateway's time from the model's request to the result sent back.
        result: the tool result the model got (JSON text; None: it got none).
        requested_ms: when the receiver got the request (ms on the timeline; receiver tools only).
        receiver_ms: the receiver's time from the request to its answer (None: it did not answer).
        input: the JSON the receiver got.
        signed: the receiver verified the body's signature.
        abandoned: the gateway closed the connection before the receiver answered.
        heard_while_running_ms: assistant audio playing to the caller while the receiver worked.
    """

    name: str
    outcome: str
    latency_ms: float
    delivered: bool
    result: str | None = None
    requested_ms: float | None = None
    receiver_ms: float | None = None
    input: Any = None
    signed: bool | None = None
    abandoned: bool = False
    heard_while_running_ms: float | None = None


class ReplayCallControl(msgspec.Struct, frozen=True, kw_only=True):
    """One request to the fake Twilio REST API, on the call's timeline.

    Attributes:
        at_ms: when it arrived.
        action / target: ``dial`` (with the number or SIP URI), ``twiml``, ``complete``, or None
            (malformed: see ``problem``).
        status / code: the fake's answer (None: the connection was dropped).
        authorized: the credentials were the expected ones.
        problem: what was wrong with the request.
        prompt_heard_ms: when the caller heard the action's prompt to its end (the last
            ``call_action`` mark echoed before the request; None: not before it).
        prompt_to_request_ms: from that mark echo to the request.
    """

    at_ms: float
    action: str | None
    target: str | None
    status: int | None
    code: int | None
    authorized: bool
    problem: str | None
    prompt_heard_ms: float | None
    prompt_to_request_ms: float | None


def _ms(seconds: float, origin: float) -> float:
    return round((seconds - origin) * 1000, 1)


def _overlap_ms(start: float, end: float, answers: Sequence[AnswerPlayback], last: float) -> float:
    total = 0.0
    for answer in answers:
        a_end = answer.ended_at if answer.ended_at is not None else last
        total += max(0.0, min(end, a_end) - max(start, answer.started_at))
    return round(total * 1000, 1)


def tool_uses(
    calls: Sequence[ToolCallSeen],
    results: Sequence[str] | None,
    requests: Sequence[ToolRequest] | None,
    peer: PeerResult,
) -> list[ReplayToolUse]:
    """Join the gateway's tool calls with the results the model got and the receiver's requests.

    Results pair with the delivered calls in order (the gateway sends each result as its call
    finishes); receiver requests pair per tool name, in order of arrival.
    """
    origin = peer.origin
    last = max((e.at_ms for e in peer.timeline), default=0.0) / 1000 + origin
    delivered_results = iter(results or ())
    by_tool: dict[str, list[ToolRequest]] = {}
    for seen_request in requests or ():
        by_tool.setdefault(seen_request.tool, []).append(seen_request)
    taken: dict[str, int] = {}
    uses = []
    for call in calls:
        result = next(delivered_results, None) if call.delivered else None
        index = taken.get(call.name, 0)
        seen = by_tool.get(call.name, [])
        request: ToolRequest | None = seen[index] if index < len(seen) else None
        if request is not None:
            taken[call.name] = index + 1
        fields: dict[str, Any] = {}
        if request is not None:
            done = request.answered_at or request.abandoned_at or last
            fields = {
                "requested_ms": _ms(request.at, origin),
                "receiver_ms": None
                if request.answered_at is None
                else round((request.answered_at - request.at) * 1000, 1),
                "input": request.input,
                "signed": request.signed,
                "abandoned": request.abandoned_at is not None,
                "heard_while_running_ms": _overlap_ms(request.at, done, peer.answers, last),
            }
        uses.append(
            ReplayToolUse(
                name=call.name,
                outcome=call.outcome,
                latency_ms=call.latency_ms,
                delivered=call.delivered,
                result=result,
                **fields,
            )
        )
    return uses


def call_controls(
    requests: Sequence[RecordedRestRequest], peer: PeerResult
) -> list[ReplayCallControl]:
    """Each REST request with when the caller heard its prompt to the end: the last ``call_action``
    mark echo before it (the call played the prompt); in a call where no ``call_action`` mark was
    echoed at all, the end of the last answer before it when that played out uninterrupted (an
    intent's prompt, played as an answer)."""
    origin = peer.origin
    echoes = [e.at_ms for e in peer.timeline if e.kind == "mark echoed" and e.detail == ACTION_MARK]
    controls = []
    for request in requests:
        at_ms = _ms(request.at, origin)
        heard = max((t for t in echoes if t <= at_ms), default=None)
        if not echoes:
            before = [a for a in peer.answers if a.started_at <= request.at]
            last = before[-1] if before else None
            if (
                last is not None
                and not last.interrupted
                and last.ended_at is not None
                and last.ended_at <= request.at
            ):
                heard = _ms(last.ended_at, origin)
        controls.append(
            ReplayCallControl(
                at_ms=at_ms,
                action=request.action,
                target=request.dial,
                status=request.status,
                code=request.code,
                authorized=request.authorized,
                problem=request.problem,
                prompt_heard_ms=heard,
                prompt_to_request_ms=None if heard is None else round(at_ms - heard, 1),
            )
        )
    return controls


def service_events(services: ServiceRecord, origin: float) -> list[TimelineEvent]:
    """Timeline events for the servers' requests (arrival, answer, abandonment)."""
    from gateway.replay.peer import TimelineEvent

    events = []
    for rest in services.rest_requests or ():
        what: str = rest.action or "malformed"
        if rest.dial is not None:
            what += f" {rest.dial}"
        answer = "dropped" if rest.status is None else f"HTTP {rest.status}"
        if rest.code is not None:
            answer += f"/{rest.code}"
        events.append(
            TimelineEvent(
                at_ms=_ms(rest.at, origin), kind="twilio rest", detail=f"{what}: {answer}"
            )
        )
    for tool in services.tool_requests or ():
        events.append(
            TimelineEvent(at_ms=_ms(tool.at, origin), kind="tool request", detail=tool.tool)
        )
        if tool.answered_at is not None:
            events.append(
                TimelineEvent(
                    at_ms=_ms(tool.answered_at, origin),
                    kind="tool answer",
                    detail=f"{tool.tool}: HTTP {tool.status}",
                )
            )
        if tool.abandoned_at is not None:
            events.append(
                TimelineEvent(
                    at_ms=_ms(tool.abandoned_at, origin),
                    kind="tool abandoned",
                    detail=f"{tool.tool}: the gateway stopped waiting",
                )
            )
    return events


# ------------------------------------------------------------------------------------ checks


def _contains(got: object, wanted: dict[str, Any]) -> bool:
    return isinstance(got, dict) and all(got.get(k) == v for k, v in wanted.items())


def _compact(value: object) -> str:
    return msgspec.json.encode(value).decode()


def tool_checks(expect: Expectations, uses: Sequence[ReplayToolUse] | None) -> list[CheckRow]:
    """``[[expect.tools]]``: the count, then per expected call what it names (None: no record)."""
    wanted = expect.tools
    if wanted is None:
        return []
    names = " | ".join(t.name for t in wanted) or "none"
    if uses is None:
        return [("tool calls", names, "no call record", False)]
    rows: list[CheckRow] = [
        (
            "tool calls",
            names,
            " | ".join(f"{u.name} ({u.outcome})" for u in uses) or "none",
            [u.name for u in uses] == [t.name for t in wanted],
        )
    ]
    for i, (tool, use) in enumerate(zip(wanted, uses, strict=False)):
        label = f"tool {i + 1} {tool.name}"
        if tool.outcome is not None:
            rows.append(
                (f"{label} outcome", tool.outcome, use.outcome, use.outcome == tool.outcome)
            )
        if tool.input is not None:
            rows.append(
                (
                    f"{label} input",
                    _compact(tool.input),
                    "no request" if use.requested_ms is None else _compact(use.input),
                    use.input == tool.input and bool(use.signed),
                )
            )
        if tool.result is not None:
            got = None
            if use.result is not None:
                try:
                    got = msgspec.json.decode(use.result)
                except msgspec.DecodeError:
                    got = use.result
            rows.append(
                (
                    f"{label} result",
                    "contains " + _compact(tool.result),
                    "none" if use.result is None else use.result,
                    _contains(got, tool.result),
                )
            )
        if tool.max_latency_ms is not None:
            rows.append(
                (
                    f"{label} latency",
                    f"<= {tool.max_latency_ms} ms",
                    f"{use.latency_ms:.0f} ms",
                    use.latency_ms <= tool.max_latency_ms,
                )
            )
        if tool.heard_while_running:
            heard = use.heard_while_running_ms
            rows.append(
                (
                    f"{label} heard while running",
                    "> 0 ms",
                    "no request" if heard is None else f"{heard:.0f} ms",
                    heard is not None and heard > 0,
                )
            )
    return rows


def rest_checks(
    expect: Expectations, controls: Sequence[ReplayCallControl] | None
) -> list[CheckRow]:
    """``[[expect.rest]]``: the requests, in order, each well-formed and authorized, its action
    and target, and when it came relative to the prompt."""
    wanted = expect.rest
    if wanted is None:
        return []
    names = " | ".join(w.action + (f" {w.target}" if w.target else "") for w in wanted) or "none"
    if controls is None:
        return [("twilio rest", names, "no fake Twilio REST API", False)]

    def shown(c: ReplayCallControl) -> str:
        return (c.action or "malformed") + (f" {c.target}" if c.target else "")

    rows: list[CheckRow] = [
        (
            "twilio rest",
            names,
            " | ".join(shown(c) for c in controls) or "none",
            len(controls) == len(wanted)
            and all(
                c.action == w.action and (w.target is None or c.target == w.target)
                for c, w in zip(controls, wanted, strict=True)
            ),
        )
    ]
    for i, (w, c) in enumerate(zip(wanted, controls, strict=False)):
        label = f"rest {i + 1} {w.action}"
        rows.append(
            (
                f"{label} accepted",
                "authorized, well-formed",
                c.problem or ("authorized" if c.authorized else "wrong credentials"),
                c.authorized and c.problem is None,
            )
        )
        if w.after_prompt or w.within_ms is not None:
            gap = c.prompt_to_request_ms
            expected = "after the prompt was heard" + (
                f", within {w.within_ms} ms" if w.within_ms is not None else ""
            )
            rows.append(
                (
                    f"{label} timing",
                    expected,
                    "before the prompt was heard" if gap is None else f"{gap:.0f} ms after",
                    gap is not None and (w.within_ms is None or gap <= w.within_ms),
                )
            )
    return rows


# ------------------------------------------------------------------------------------ formatting


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def format_tool_sections(
    uses: Sequence[ReplayToolUse],
    controls: Sequence[ReplayCallControl],
    table: Callable[[Sequence[tuple[str, ...]], tuple[str, ...]], list[str]],
) -> list[str]:
    """The report's "tool calls" and "call control" sections (empty when there is neither)."""
    lines: list[str] = []
    if uses:
        lines.append("")
        lines.append(
            "  tool calls (latency: model asks -> result sent; receiver: request -> answer)"
        )
        rows = [
            (
                u.name,
                u.outcome,
                f"{u.latency_ms:.0f} ms",
                _opt(u.receiver_ms) if not u.abandoned else "abandoned",
                _opt(u.heard_while_running_ms),
                "yes" if u.delivered else "no",
                _short(u.result),
            )
            for u in uses
        ]
        lines.extend(
            table(
                rows,
                (
                    "tool",
                    "outcome",
                    "latency",
                    "receiver",
                    "heard meanwhile",
                    "delivered",
                    "result",
                ),
            )
        )
    if controls:
        lines.append("")
        lines.append("  call control (caller heard the prompt -> Twilio REST request)")
        control_rows: list[tuple[str, ...]] = [
            (
                f"{c.at_ms:.0f}",
                (c.action or "malformed") + (f" {c.target}" if c.target else ""),
                "dropped" if c.status is None else str(c.status),
                _opt(c.prompt_heard_ms),
                _opt(c.prompt_to_request_ms),
            )
            for c in controls
        ]
        lines.extend(
            table(control_rows, ("at", "request", "answer", "prompt heard", "prompt -> request"))
        )
    return lines


def _short(text: str | None, limit: int = 48) -> str:
    if text is None:
        return "-"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def slowest_tool_ms(uses: Sequence[ReplayToolUse]) -> float | None:
    """The slowest tool call's gateway latency (None: no tool calls)."""
    return max((u.latency_ms for u in uses), default=None)


def median_prompt_to_request_ms(controls: Sequence[ReplayCallControl]) -> float | None:
    """The median time from the prompt heard to the REST request (None: no such request)."""
    gaps = [c.prompt_to_request_ms for c in controls if c.prompt_to_request_ms is not None]
    return round(statistics.median(gaps), 1) if gaps else None
