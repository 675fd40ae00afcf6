"""Nova Sonic OUTPUT events (Sonic → gateway): Structs, the tolerant decoder, two-step fields.

Rules: the service adds fields over time, so unknown fields are ignored, ``type`` / ``role`` /
``stopReason`` stay plain strings, and an envelope carrying only unknown event names decodes to
:class:`UnknownOutputEvent` rather than failing the call. A known event with a missing or wrongly
typed field still raises :class:`SonicEventError`. ``additionalModelFields`` (JSON in a string) and
the barge-in marker (JSON inside ``textOutput.content``) are read in a second step.
"""

from __future__ import annotations

import re
from typing import Final, Literal, final

import msgspec

from actors.wire.nova_sonic._common import (
    DECODE_ERRORS,
    ENCODER,
    SonicEventError,
    camel,
    event_error,
)

__all__ = [
    "BARGE_IN_MARKER",
    "OUTPUT_EVENT_NAMES",
    "AudioOutput",
    "CompletionEnd",
    "CompletionStart",
    "GenerationStage",
    "OutputAudioConfiguration",
    "OutputContentEnd",
    "OutputContentStart",
    "OutputEnvelope",
    "OutputEvent",
    "OutputEventBody",
    "OutputTextConfiguration",
    "OutputToolUseConfiguration",
    "TextOutput",
    "TokenCounts",
    "TokenUsage",
    "ToolUse",
    "UnknownOutputEvent",
    "UsageDetails",
    "UsageEvent",
    "decode_output_event",
    "encode_output_event",
    "generation_stage",
    "is_barge_in_marker",
    "output_event_name",
]

GenerationStage = Literal["SPECULATIVE", "FINAL"]


class _Tolerant(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    """Output-side base: camelCase keys, unknown keys ignored, every field encoded."""


class _TolerantOptional(_Tolerant, frozen=True, kw_only=True, omit_defaults=True):
    """Output-side base for structs with optional parts (defaults are None and left out)."""


class OutputTextConfiguration(_Tolerant, frozen=True, kw_only=True):
    """``contentStart.textOutputConfiguration`` on the output side."""

    media_type: str = "text/plain"


class OutputAudioConfiguration(_Tolerant, frozen=True, kw_only=True):
    """``contentStart.audioOutputConfiguration`` on the output side: the format of ``audioOutput``."""

    media_type: str = "audio/lpcm"
    sample_rate_hertz: int = 24000
    sample_size_bits: int = 16
    encoding: str = "base64"
    channel_count: int = 1


class OutputToolUseConfiguration(_Tolerant, frozen=True, kw_only=True):
    """``contentStart.toolUseOutputConfiguration`` on the output side."""

    media_type: str = "application/json"


class CompletionStart(_Tolerant, frozen=True, kw_only=True):
    """``completionStart``: a model turn (completion) begins."""

    session_id: str
    prompt_name: str
    completion_id: str


class OutputContentStart(_TolerantOptional, frozen=True, kw_only=True):
    """``contentStart`` (output): a TEXT, AUDIO or TOOL block ``content_id`` begins.

    ``additional_model_fields`` is a string of JSON; read it with :func:`generation_stage`.
    """

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    type: str
    role: str
    additional_model_fields: str | None = None
    text_output_configuration: OutputTextConfiguration | None = None
    audio_output_configuration: OutputAudioConfiguration | None = None
    tool_use_output_configuration: OutputToolUseConfiguration | None = None


class TextOutput(_Tolerant, frozen=True, kw_only=True):
    """``textOutput``: transcript (USER) or reply text (ASSISTANT); may be the barge-in marker."""

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    role: str
    content: str


class AudioOutput(_Tolerant, frozen=True, kw_only=True):
    """``audioOutput``: LPCM16 mono; ``content`` is raw PCM here and base64 on the wire."""

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    content: bytes


class ToolUse(_Tolerant, frozen=True, kw_only=True):
    """``toolUse``: the model calls ``tool_name``; ``content`` is the input as a JSON string."""

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    tool_name: str
    tool_use_id: str
    content: str


class OutputContentEnd(_Tolerant, frozen=True, kw_only=True):
    """``contentEnd`` (output): ``stop_reason`` is PARTIAL_TURN, END_TURN, INTERRUPTED or TOOL_USE."""

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    type: str
    stop_reason: str


class TokenCounts(_Tolerant, frozen=True, kw_only=True):
    """Speech and text tokens in one direction."""

    speech_tokens: int = 0
    text_tokens: int = 0


class TokenUsage(_Tolerant, frozen=True, kw_only=True):
    """Token counts for input and output."""

    input: TokenCounts = msgspec.field(default_factory=TokenCounts)
    output: TokenCounts = msgspec.field(default_factory=TokenCounts)


class UsageDetails(_Tolerant, frozen=True, kw_only=True):
    """``usageEvent.details``: the change since the last usage event and the running total."""

    delta: TokenUsage = msgspec.field(default_factory=TokenUsage)
    total: TokenUsage = msgspec.field(default_factory=TokenUsage)


class UsageEvent(_Tolerant, frozen=True, kw_only=True):
    """``usageEvent``: token accounting; arrives any time, repeatedly."""

    session_id: str
    prompt_name: str
    completion_id: str
    details: UsageDetails = msgspec.field(default_factory=UsageDetails)
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_tokens: int = 0


class CompletionEnd(_Tolerant, frozen=True, kw_only=True):
    """``completionEnd``: the model turn is over."""

    session_id: str
    prompt_name: str
    completion_id: str
    stop_reason: str


@final
class UnknownOutputEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An output event whose name this version does not know; ignore it, maybe log ``name``."""

    name: str


OutputEventBody = (
    CompletionStart
    | OutputContentStart
    | TextOutput
    | AudioOutput
    | ToolUse
    | OutputContentEnd
    | UsageEvent
    | CompletionEnd
    | UnknownOutputEvent
)


class OutputEvent(_TolerantOptional, frozen=True, kw_only=True):
    """The ``event`` object of an output event: one known field is set (unknown names are ignored)."""

    completion_start: CompletionStart | None = None
    content_start: OutputContentStart | None = None
    text_output: TextOutput | None = None
    audio_output: AudioOutput | None = None
    tool_use: ToolUse | None = None
    content_end: OutputContentEnd | None = None
    usage_event: UsageEvent | None = None
    completion_end: CompletionEnd | None = None


class OutputEnvelope(_Tolerant, frozen=True, kw_only=True):
    """``{"event": {...}}`` for output events."""

    event: OutputEvent


class _RawOutputEnvelope(msgspec.Struct, frozen=True, gc=False):
    """Second look at an envelope with no known event: which names did it carry?"""

    event: dict[str, msgspec.Raw]


_OUTPUT_ATTR: Final[dict[type[OutputEventBody], str]] = {
    # audioOutput first: it is by far the most frequent, and decode scans in this order.
    AudioOutput: "audio_output",
    TextOutput: "text_output",
    OutputContentStart: "content_start",
    OutputContentEnd: "content_end",
    UsageEvent: "usage_event",
    CompletionStart: "completion_start",
    CompletionEnd: "completion_end",
    ToolUse: "tool_use",
}
_OUTPUT_NAME: Final[dict[type[OutputEventBody], str]] = {
    t: camel(a) for t, a in _OUTPUT_ATTR.items()
}
OUTPUT_EVENT_NAMES: Final[frozenset[str]] = frozenset(_OUTPUT_NAME.values())
_OUTPUT_ATTRS: Final = tuple(_OUTPUT_ATTR.values())
_NO_OUTPUT_EVENT: Final = OutputEvent()
_OUTPUT_DECODER: Final = msgspec.json.Decoder(OutputEnvelope)
_RAW_OUTPUT_DECODER: Final = msgspec.json.Decoder(_RawOutputEnvelope)


def output_event_name(body: OutputEventBody) -> str:
    """Return the wire name of an output event body (``"audioOutput"``; an unknown one's own name)."""
    if isinstance(body, UnknownOutputEvent):
        return body.name
    return _OUTPUT_NAME[type(body)]


def encode_output_event(body: OutputEventBody) -> bytes:
    """Encode one output event (the emulator's side); an unknown event encodes with an empty body."""
    if isinstance(body, UnknownOutputEvent):
        return ENCODER.encode({"event": {body.name: {}}})
    event = msgspec.structs.replace(_NO_OUTPUT_EVENT, **{_OUTPUT_ATTR[type(body)]: body})
    return ENCODER.encode(OutputEnvelope(event=event))


def decode_output_event(data: bytes | str) -> OutputEventBody:
    """Decode one output event tolerantly (unknown fields ignored, unknown names reported).

    Returns:
        The event body, or :class:`UnknownOutputEvent` when the envelope holds only names this
        version does not know.

    Raises:
        SonicEventError: not JSON, a known event with a missing or wrongly typed field, an empty
            envelope, or several known events in one envelope; ``field`` names the path.
    """
    try:
        event = _OUTPUT_DECODER.decode(data).event
    except DECODE_ERRORS as exc:
        raise event_error(exc, "output event") from exc
    found: OutputEventBody | None = None
    for attr in _OUTPUT_ATTRS:
        body = getattr(event, attr)
        if body is not None:
            if found is not None:
                raise SonicEventError("more than one output event in one envelope", field="event")
            found = body
    if found is not None:
        return found
    return _unknown_output_event(data)


def _unknown_output_event(data: bytes | str) -> UnknownOutputEvent:
    # Rare path: no known event was set. Either the names are new to us, or a known one was null.
    names = list(_RAW_OUTPUT_DECODER.decode(data).event)
    if not names:
        raise SonicEventError("empty output event envelope", field="event")
    for name in names:
        if name in OUTPUT_EVENT_NAMES:
            raise SonicEventError("output event body is null", field=f"event.{name}")
    return UnknownOutputEvent(name=names[0])


class _AdditionalModelFields(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    generation_stage: str | None = None


_ADDITIONAL_FIELDS_DECODER: Final = msgspec.json.Decoder(_AdditionalModelFields)


def generation_stage(content_start: OutputContentStart) -> GenerationStage | None:
    """Return SPECULATIVE or FINAL from ``additionalModelFields``, or None if absent or garbled.

    SPECULATIVE text previews what will be said and never goes into history; FINAL is the text to
    log and replay.
    """
    raw = content_start.additional_model_fields
    if not raw:
        return None
    try:
        stage = _ADDITIONAL_FIELDS_DECODER.decode(raw).generation_stage
    except DECODE_ERRORS:
        return None
    if stage == "SPECULATIVE":
        return "SPECULATIVE"
    if stage == "FINAL":
        return "FINAL"
    return None


BARGE_IN_MARKER: Final = '{ "interrupted" : true }'
_BARGE_IN_PATTERN: Final = re.compile(r'\{\s*"interrupted"\s*:\s*true\s*\}')


class _InterruptedFlag(msgspec.Struct, frozen=True, gc=False):
    interrupted: bool = False


_INTERRUPTED_DECODER: Final = msgspec.json.Decoder(_InterruptedFlag)


def is_barge_in_marker(text: str) -> bool:
    """Return True if a ``textOutput`` content carries Sonic's barge-in marker.

    Matches ``{ "interrupted" : true }`` anywhere in the text with any whitespace, and a JSON object
    whose ``interrupted`` member is true (other members allowed).
    """
    if "interrupted" not in text:  # the common case: a transcript, answered in one scan
        return False
    if _BARGE_IN_PATTERN.search(text):
        return True
    stripped = text.strip()
    if not stripped.startswith("{"):
        return False
    try:
        return _INTERRUPTED_DECODER.decode(stripped).interrupted
    except DECODE_ERRORS:
        return False
