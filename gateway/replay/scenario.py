"""The replay scenario format: one scripted phone call, as a TOML file.

Theory of operation. A scenario says who the caller is and what they do (``[[caller]]`` steps,
executed in order by the simulated Twilio peer), how the emulated model behaves (``[model]``, the
emulator's :class:`~gateway.emulator.ModelScript`, plus ``[emulator]`` setting overrides), how the
gateway is configured for this call (``[gateway]`` overrides of ``GatewayConfig`` fields), how the
peer presents itself (``[peer]``) and what must be true afterwards (``[expect]``).

Local servers a call needs: ``[twilio_rest]`` starts a fake of Twilio's REST API
(:mod:`gateway.replay.fake_twilio`) for the built-in ``end_call`` / ``transfer_call`` tools, and
every ``[[gateway.tools]]`` entry of kind ``http`` without a ``url`` is answered by a local tool
receiver (:mod:`gateway.replay.fake_tools`) from its ``[[tool_replies]]``. ``[[expect.rest]]`` and
``[[expect.tools]]`` check what they recorded (see docs/replay.md).

Decoding is strict: msgspec Structs with ``forbid_unknown_fields``, the caller steps a tagged union
on ``kind``. Every error is a :class:`ScenarioError` naming the file's LINE: TOML syntax errors take
the line from tomllib's message, validation errors map msgspec's path (``$.caller[2].ms``) to a line
with :func:`gateway.replay.locate.line_of_path`.

Example::

    name = "barge_in_mid_answer"
    description = "The caller talks over a long answer; the gateway clears playback."

    [[caller]]
    kind = "wait_for_answer"      # the greeting
    until = "end"

    [[caller]]
    kind = "say"
    audio = "clips/opening_hours.ulaw"

    [[caller]]
    kind = "barge_in"
    at_ms = 800
    ms = 700

    [[model.turns]]
    transcript = "What are your opening hours?"
    reply = "We are open from nine to five on weekdays and ..."
    answer_ms = 4000

    [expect]
    clear_within_ms = 400
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from actors.tools import ToolOutcome
from gateway.emulator.script import ModelScript
from gateway.replay.fake_tools import ToolReply
from gateway.replay.fake_twilio import RestAnswer
from gateway.replay.locate import line_of_path

__all__ = [
    "BargeIn",
    "CallerStep",
    "Dtmf",
    "Expectations",
    "Hangup",
    "Pause",
    "PeerSettings",
    "RestExpectation",
    "Say",
    "Scenario",
    "ScenarioError",
    "ToolExpectation",
    "TwilioRestFake",
    "WaitForAnswer",
    "load_scenario",
    "parse_scenario",
]

_DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


class ScenarioError(ValueError):
    """A scenario file is malformed; names the file, the line and (when known) the field path.

    Attributes:
        path: the msgspec path of the offending field (``$.caller[2].ms``), or "" for syntax errors.
        line: 1-based line in the source.
        message: what is wrong.
        source_name: the file name (or ``<string>``).
    """

    def __init__(
        self, path: str, line: int, message: str, *, source_name: str = "<string>"
    ) -> None:
        self.path = path
        self.line = line
        self.message = message
        self.source_name = source_name
        where = f" ({path})" if path else ""
        super().__init__(f"{source_name}:{line}: {message}{where}")


class _Step(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"
):
    """Base of the caller steps (tagged by ``kind``)."""


def _check_audio_source(audio: str | None, ms: int | None) -> None:
    if (audio is None) == (ms is None):
        raise ValueError("give exactly one of `audio` (a file) or `ms` (generated speech)")
    if ms is not None and ms <= 0:
        raise ValueError("`ms` must be > 0")


class Say(_Step, frozen=True, kw_only=True, tag="say"):
    """The caller speaks: an audio file (8 kHz μ-law ``.ulaw`` or PCM16 ``.wav``, path relative to the
    scenario) or ``ms`` of generated speech-like audio from ``seed``."""

    audio: str | None = None
    ms: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_audio_source(self.audio, self.ms)


class Pause(_Step, frozen=True, kw_only=True, tag="pause"):
    """The caller is silent for ``ms`` (the peer keeps streaming silence frames, as Twilio does)."""

    ms: int

    def __post_init__(self) -> None:
        if self.ms < 0:
            raise ValueError("`ms` must be >= 0")


class WaitForAnswer(_Step, frozen=True, kw_only=True, tag="wait_for_answer"):
    """Wait until the assistant's next answer starts (``until = "start"``) or has finished playing
    (``until = "end"``, the default); fails the call after ``timeout_ms``."""

    until: Literal["start", "end"] = "end"
    timeout_ms: int = 10_000


class BargeIn(_Step, frozen=True, kw_only=True, tag="barge_in"):
    """Talk over the answer: start speaking ``at_ms`` into the answer as heard, for ``ms`` (or with the
    given ``audio`` file)."""

    at_ms: int
    ms: int | None = None
    audio: str | None = None
    seed: int = 1
    timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        _check_audio_source(self.audio, self.ms)
        if self.at_ms < 0:
            raise ValueError("`at_ms` must be >= 0")


class Dtmf(_Step, frozen=True, kw_only=True, tag="dtmf"):
    """The caller presses a key."""

    digit: str

    def __post_init__(self) -> None:
        if self.digit not in _DTMF_DIGITS:
            raise ValueError("`digit` must be one of 0-9, *, #, A-D")


class Hangup(_Step, frozen=True, kw_only=True, tag="hangup"):
    """The caller hangs up: ``stop`` then a normal close. With ``at_ms``, that far into the next
    answer as heard (a mid-answer hang-up)."""

    at_ms: int | None = None
    timeout_ms: int = 10_000


type CallerStep = Say | Pause | WaitForAnswer | BargeIn | Dtmf | Hangup


class PeerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the simulated Twilio presents itself.

    Attributes:
        sign_requests: send ``X-Twilio-Signature`` on the webhook and the upgrade when the
            gateway has a token.
        answer_webhook: POST the voice webhook first and send its ``<Parameter>`` values (the
            stream token among them) in ``start``, as Twilio does; false opens the socket with
            only ``custom_parameters`` (a replayed upgrade).
        call_sid / account_sid / stream_sid: identities in ``start`` ("" = generated per run).
        custom_parameters: ``start.customParameters`` (the TwiML ``<Parameter>`` values).
        from_ / to: the caller's and the called number (``from`` / ``to`` in TOML) in the voice
            webhook's form; ``to`` picks the gateway's route.
    """

    sign_requests: bool = True
    answer_webhook: bool = True
    call_sid: str = ""
    account_sid: str = "AC00000000000000000000000000000000"
    stream_sid: str = ""
    custom_parameters: dict[str, str] = msgspec.field(default_factory=dict)
    from_: str = msgspec.field(default="+15550100001", name="from")
    to: str = "+15550100002"


class TwilioRestFake(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[twilio_rest]``: start a fake of Twilio's REST API for the call.

    The gateway's ``twilio.api_base_url`` points at it; unless ``[gateway.twilio]`` sets them, the
    gateway gets ``account_sid`` = the peer's account and a replay API key, which the fake expects.

    Attributes:
        answers: answers to the first requests, one each (``ok``, ``not_found``, ``invalid_state``,
            ``error``, ``drop``); later requests are answered as Twilio would (200 while the call
            is live, 404/20404 once it has ended).
    """

    answers: list[RestAnswer] = msgspec.field(default_factory=list)


class RestExpectation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[expect.rest]]``: one request the fake Twilio REST API must have received.

    Attributes:
        action: ``dial`` (new TwiML with a ``<Dial>``: a transfer) or ``complete``
            (``Status=completed``: a hang-up).
        target: ``dial`` only: the number or SIP URI dialled.
        after_prompt: the request came after the caller heard the action's prompt to its end
            (the ``call_action`` mark was echoed; for an intent's prompt, played as an answer,
            that answer played out uninterrupted).
        within_ms: at most this long after that mark echo.
    """

    action: Literal["dial", "complete"]
    target: str | None = None
    after_prompt: bool = True
    within_ms: int | None = None

    def __post_init__(self) -> None:
        if self.target is not None and self.action != "dial":
            raise ValueError('`target` is only for action = "dial"')
        if self.within_ms is not None and self.within_ms <= 0:
            raise ValueError("`within_ms` must be > 0")


class ToolExpectation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[expect.tools]]``: one tool call the gateway made (matched in the order the calls
    finished; receiver requests of the same tool in the order they arrived).

    Attributes:
        name: the tool.
        outcome: how the gateway says it ended (``ok``, ``timeout``, ...).
        input: the JSON the tool receiver got (tools the receiver answers only).
        result: members the tool result the model got must contain (``{ error = "timeout" }``).
        max_latency_ms: the gateway's time from the model's request to the result sent.
        heard_while_running: the caller heard the assistant while the receiver worked on the
            request (the model kept talking; tools the receiver answers only).
    """

    name: str
    outcome: ToolOutcome | None = None
    input: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    max_latency_ms: int | None = None
    heard_while_running: bool = False


class Expectations(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What must hold after the call; ``None`` / empty means "not checked".

    Attributes:
        greeting_within_ms: ``start`` sent -> first assistant media received.
        response_latency_ms: max over caller turns of end of speech -> first assistant media received.
        clear_within_ms: barge-in signal (caller starts talking over the answer) -> ``clear`` received.
        max_heard_after_barge_in_ms: assistant audio the caller still heard after barging in.
        transcript: lines ``"USER: ..."`` / ``"ASSISTANT: ..."`` that must appear, in order, in the
            call's record (each matches a record line of that role containing the text, ignoring
            case and spacing).
        heard_contains: texts that must appear in the record's assistant lines (what was heard).
        min_heard_ms: total assistant audio the caller heard.
        ends_cleanly: socket closed normally, no call error, gateway back to zero live calls.
        rejected: the upgrade was refused with HTTP 403 and no call started.
        handovers: at least this many Sonic session handovers.
        recovered_faults: at least this many Sonic faults recovered within the call.
        answers: exactly this many assistant answers heard (the greeting counts): a turn answered
            twice fails as surely as one not answered.
        text_inputs: the interactive USER texts the model must have received (DTMF entries,
            intent notes): exactly this many, in order, each containing its text (ignoring case
            and spacing).
        rest: the requests the fake Twilio REST API received: exactly these, in order (``[]``:
            none); needs ``[twilio_rest]``.
        tools: the tool calls the gateway made: exactly these, in the order they finished.
        system_prompt_contains: every Sonic session of the call got a system prompt containing
            this text (ignoring case and spacing): the persona of the call's route.
        voice: every Sonic session of the call asked for this voice.
        intents: the names of the intents the gateway must have matched, exactly, in order.
        intent_media_within_ms: each matched intent's prompt: match -> first media sent (the
            gateway's own figure).
    """

    greeting_within_ms: int | None = None
    response_latency_ms: int | None = None
    clear_within_ms: int | None = None
    max_heard_after_barge_in_ms: int | None = None
    transcript: list[str] = msgspec.field(default_factory=list)
    heard_contains: list[str] = msgspec.field(default_factory=list)
    min_heard_ms: int | None = None
    ends_cleanly: bool | None = None
    rejected: bool = False
    handovers: int | None = None
    recovered_faults: int | None = None
    answers: int | None = None
    text_inputs: list[str] | None = None
    rest: list[RestExpectation] | None = None
    tools: list[ToolExpectation] | None = None
    system_prompt_contains: str | None = None
    voice: str | None = None
    intents: list[str] | None = None
    intent_media_within_ms: float | None = None

    def __post_init__(self) -> None:
        for line in self.transcript:
            if not re.match(r"^(USER|ASSISTANT):\s*\S", line):
                raise ValueError(
                    f"transcript line {line!r} must look like 'USER: ...' or 'ASSISTANT: ...'"
                )


class Scenario(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One scripted call.

    Attributes:
        name: short identifier (file stem by convention).
        description: one sentence for the report.
        caller: the caller's steps, in order; after the last step the caller hangs up.
        model: the emulated model's script.
        emulator: overrides of ``EmulatorSettings`` fields (e.g. ``session_cap_s``, ``think_ms``).
        gateway: overrides of ``GatewayConfig`` fields (e.g. ``handover_after_s``,
            ``twilio_auth_token``).
        peer: how the simulated Twilio presents itself.
        twilio_rest: start a fake of Twilio's REST API for the call (None: none).
        tool_replies: the tool receiver's scripted answers, per tool in order (the last one
            repeats); it answers every ``http`` tool in ``[gateway.tools]`` without a ``url``.
        expect: what must hold afterwards.
        base_dir: directory the audio paths are relative to (set by :func:`load_scenario`).
    """

    name: str
    description: str = ""
    caller: list[CallerStep] = msgspec.field(default_factory=list)
    model: ModelScript = msgspec.field(default_factory=ModelScript)
    emulator: dict[str, Any] = msgspec.field(default_factory=dict)
    gateway: dict[str, Any] = msgspec.field(default_factory=dict)
    peer: PeerSettings = msgspec.field(default_factory=PeerSettings)
    twilio_rest: TwilioRestFake | None = None
    tool_replies: list[ToolReply] = msgspec.field(default_factory=list)
    expect: Expectations = msgspec.field(default_factory=Expectations)
    base_dir: str = "."

    def resolve(self, relative: str) -> Path:
        """Return ``relative`` (an audio path from a step) resolved against the scenario's folder."""
        return Path(self.base_dir) / relative

    def received_tools(self) -> list[str]:
        """The tools the local receiver answers: ``[gateway.tools]`` entries of kind ``http``
        without a ``url``, in order."""
        tools = self.gateway.get("tools")
        if not isinstance(tools, list):
            return []
        return [
            str(t.get("name"))
            for t in tools
            if isinstance(t, dict) and t.get("kind", "http") == "http" and "url" not in t
        ]


_TOML_LINE: Final = re.compile(r"at line (\d+)")
_UNKNOWN_FIELD: Final = re.compile(r"unknown field `([^`]*)`")
_ERROR_PATH: Final = re.compile(r"^(.*) - at `(\$[^`]*)`$", re.DOTALL)


def parse_scenario(text: str, *, source_name: str = "<string>", base_dir: str = ".") -> Scenario:
    """Decode a scenario from TOML text.

    Raises:
        ScenarioError: syntax or validation error, naming the line.
    """
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = _TOML_LINE.search(str(error))
        line = int(found.group(1)) if found is not None else max(1, len(text.splitlines()))
        raise ScenarioError("", line, f"TOML syntax: {error}", source_name=source_name) from None
    if re.search(r"(?m)^\s*base_dir\s*=", text):
        raise ScenarioError(
            "$.base_dir",
            line_of_path(text, "$.base_dir"),
            "`base_dir` is set by the loader, not in the file",
            source_name=source_name,
        )
    try:
        scenario = msgspec.toml.decode(text, type=Scenario)
    except msgspec.ValidationError as error:
        raise _located(text, str(error), source_name) from None
    problem = _cross_check(scenario)
    if problem is not None:
        path, message = problem
        raise ScenarioError(path, line_of_path(text, path), message, source_name=source_name)
    return msgspec.structs.replace(scenario, base_dir=base_dir)


def _cross_check(scenario: Scenario) -> tuple[str, str] | None:
    """What ties the sections together: ``(path, message)`` of the first problem, or None."""
    received = scenario.received_tools()
    for i, reply in enumerate(scenario.tool_replies):
        if reply.tool not in received:
            return (
                f"$.tool_replies[{i}].tool",
                f"{reply.tool!r} is not an http tool in [[gateway.tools]] without a `url`",
            )
    expect = scenario.expect
    if expect.rest is not None and scenario.twilio_rest is None:
        return "$.expect.rest[0]", "checks requests to the fake Twilio REST API: add [twilio_rest]"
    for i, tool in enumerate(expect.tools or ()):
        if (tool.input is not None or tool.heard_while_running) and tool.name not in received:
            return (
                f"$.expect.tools[{i}]",
                f"`input` and `heard_while_running` need {tool.name!r} answered by the local"
                " receiver (an http tool in [[gateway.tools]] without a `url`)",
            )
    return None


def _located(text: str, message: str, source_name: str) -> ScenarioError:
    found = _ERROR_PATH.match(message)
    if found is None:
        return ScenarioError("$", 1, message, source_name=source_name)
    what, path = found.groups()
    unknown = _UNKNOWN_FIELD.search(what)
    field = unknown.group(1) if unknown is not None else None
    line = line_of_path(text, path, field=field)
    shown_path = f"{path}.{field}" if field is not None else path
    return ScenarioError(shown_path, line, what, source_name=source_name)


def load_scenario(path: str | Path) -> Scenario:
    """Read and decode a scenario file; audio paths in it are relative to its folder.

    Raises:
        ScenarioError: syntax or validation error, naming the line.
        OSError: the file cannot be read.
    """
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    return parse_scenario(text, source_name=str(file), base_dir=str(file.parent))
