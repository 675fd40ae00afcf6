"""Nova Sonic events as msgspec Structs: build, encode and decode, with no I/O.

Theory of operation (reference: docs nova-sonic.md §2-4, §8):

* Every Nova Sonic event is one JSON object, externally tagged: ``{"event": {"<name>": {...}}}``.
  msgspec tags unions internally, so each direction has an *envelope*: ``InputEnvelope(event:
  InputEvent)`` where ``InputEvent`` holds one optional field per event name. Encoders wrap a body
  in its envelope; decoders unwrap it and return the body alone (``InputEventBody`` /
  ``OutputEventBody``), which is what the client and the emulator ``match`` on.
* Input events (gateway → Sonic) decode STRICTLY, like the service: unknown fields are rejected,
  ``type`` / ``role`` / sensitivity are closed Literals, and the envelope holds exactly one event.
  Only the emulator decodes them; the gateway only encodes them.
* Output events (Sonic → gateway) decode TOLERANTLY: the service adds fields over time, so unknown
  fields are ignored, ``type`` / ``role`` / ``stopReason`` stay plain strings, and an unknown event name
  becomes :class:`UnknownOutputEvent` instead of failing the call.
* ``bytes`` fields (``audioInput.content``, ``audioOutput.content``, the Bedrock ``{"bytes": ...}``
  payload part) are base64-encoded / -decoded by msgspec in the same pass as the JSON, which is the
  fastest path measured (performance.md §3). :func:`encode_audio_input` is the hot path: a dedicated
  envelope and one module-level encoder, no dict, no ``json.dumps``.
* Struct options: config structs whose fields all go on the wire carry convenient defaults and are
  encoded in full; structs with optional parts default those to ``None`` and use ``omit_defaults``
  so absent parts are left out (never a mix, or a default value would silently vanish from the wire).
* Every decode failure raises :class:`SonicEventError` (a ``RemoteProtocolError``) whose ``field``
  is the dotted path msgspec reported (``"event.promptStart.promptName"``).
* Two-step fields: ``contentStart.additionalModelFields`` is a string holding JSON
  (:func:`generation_stage`), and the barge-in marker is JSON inside ``textOutput.content``
  (:func:`is_barge_in_marker`).
"""

from __future__ import annotations

import re
from typing import Final, Literal, final

import msgspec

from actors.errors import RemoteProtocolError
from actors.wire._paths import field_path, problem

__all__ = [
    "BARGE_IN_MARKER",
    "INPUT_EVENT_NAMES",
    "OUTPUT_EVENT_NAMES",
    "TOOL_CHOICE_ANY",
    "TOOL_CHOICE_AUTO",
    "AudioInput",
    "AudioInputConfiguration",
    "AudioOutput",
    "AudioOutputConfiguration",
    "ChunkPayload",
    "CompletionEnd",
    "CompletionStart",
    "ContentRole",
    "ContentType",
    "EndpointingSensitivity",
    "ExceptionPayload",
    "GenerationStage",
    "InferenceConfiguration",
    "InputContentEnd",
    "InputContentStart",
    "InputEnvelope",
    "InputEvent",
    "InputEventBody",
    "OutputAudioConfiguration",
    "OutputContentEnd",
    "OutputContentStart",
    "OutputEnvelope",
    "OutputEvent",
    "OutputEventBody",
    "OutputTextConfiguration",
    "OutputToolUseConfiguration",
    "PromptEnd",
    "PromptStart",
    "SessionEnd",
    "SessionStart",
    "SonicEventError",
    "TextConfiguration",
    "TextInput",
    "TextOutput",
    "TokenCounts",
    "TokenUsage",
    "Tool",
    "ToolChoice",
    "ToolChoiceAny",
    "ToolChoiceAuto",
    "ToolChoiceTool",
    "ToolConfiguration",
    "ToolInputSchema",
    "ToolResult",
    "ToolResultInputConfiguration",
    "ToolSpec",
    "ToolUse",
    "ToolUseOutputConfiguration",
    "TurnDetectionConfiguration",
    "UnknownOutputEvent",
    "UsageDetails",
    "UsageEvent",
    "decode_chunk_payload",
    "decode_exception_payload",
    "decode_input_event",
    "decode_output_event",
    "encode_audio_input",
    "encode_chunk_payload",
    "encode_exception_payload",
    "encode_input_event",
    "encode_output_event",
    "generation_stage",
    "input_event_name",
    "is_barge_in_marker",
    "output_event_name",
]


class SonicEventError(RemoteProtocolError):
    """A Nova Sonic event (or its Bedrock payload part) is malformed; ``field`` names the path."""


EndpointingSensitivity = Literal["HIGH", "MEDIUM", "LOW"]
ContentType = Literal["TEXT", "AUDIO", "TOOL"]
ContentRole = Literal["SYSTEM", "USER", "ASSISTANT", "TOOL", "SYSTEM_SPEECH"]
GenerationStage = Literal["SPECULATIVE", "FINAL"]


# --------------------------------------------------------------------------------------------------
# Input events (gateway → Sonic): strict.


class _Strict(
    msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel", forbid_unknown_fields=True
):
    """Input-side base: camelCase keys, unknown keys rejected, every field encoded."""


class _StrictOptional(_Strict, frozen=True, omit_defaults=True):
    """Input-side base for structs with optional parts (defaults are None and left out)."""


class InferenceConfiguration(_Strict, frozen=True):
    """``sessionStart.inferenceConfiguration``."""

    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7


class TurnDetectionConfiguration(_Strict, frozen=True):
    """``sessionStart.turnDetectionConfiguration`` (Nova 2): HIGH answers soonest, LOW waits longest."""

    endpointing_sensitivity: EndpointingSensitivity = "MEDIUM"


class TextConfiguration(_Strict, frozen=True):
    """``textOutputConfiguration`` / ``textInputConfiguration`` on the input side."""

    media_type: str = "text/plain"


class AudioOutputConfiguration(_Strict, frozen=True):
    """``promptStart.audioOutputConfiguration``: what Sonic should speak, and in which voice."""

    voice_id: str
    media_type: str = "audio/lpcm"
    sample_rate_hertz: int = 24000
    sample_size_bits: int = 16
    channel_count: int = 1
    encoding: str = "base64"
    audio_type: str = "SPEECH"


class ToolUseOutputConfiguration(_Strict, frozen=True):
    """``promptStart.toolUseOutputConfiguration`` (send only when tools are configured)."""

    media_type: str = "application/json"


class ToolInputSchema(_Strict, frozen=True):
    """``toolSpec.inputSchema``: ``json`` is a STRING holding the JSON Schema."""

    json: str


class ToolSpec(_Strict, frozen=True):
    """One tool's name, description and input schema."""

    name: str
    description: str
    input_schema: ToolInputSchema


class Tool(_Strict, frozen=True):
    """``toolConfiguration.tools[]`` item."""

    tool_spec: ToolSpec


class ToolChoiceAuto(_Strict, frozen=True):
    """``{"auto": {}}``: the model decides (the default)."""


class ToolChoiceAny(_Strict, frozen=True):
    """``{"any": {}}``: the model must call some tool."""


class ToolChoiceTool(_Strict, frozen=True):
    """``{"tool": {"name": ...}}``: the model must call this tool."""

    name: str


class ToolChoice(_StrictOptional, frozen=True):
    """``toolConfiguration.toolChoice`` (Converse-style shapes; exactly one member is set)."""

    auto: ToolChoiceAuto | None = None
    any: ToolChoiceAny | None = None
    tool: ToolChoiceTool | None = None

    def __post_init__(self) -> None:
        # ValueError here becomes a ValidationError (hence SonicEventError) when decoding.
        if (self.auto is not None) + (self.any is not None) + (self.tool is not None) != 1:
            raise ValueError("toolChoice needs exactly one of auto, any, tool")


TOOL_CHOICE_AUTO: Final = ToolChoice(auto=ToolChoiceAuto())
TOOL_CHOICE_ANY: Final = ToolChoice(any=ToolChoiceAny())


class ToolConfiguration(_StrictOptional, frozen=True):
    """``promptStart.toolConfiguration``."""

    tools: list[Tool]
    tool_choice: ToolChoice | None = None


class AudioInputConfiguration(_Strict, frozen=True):
    """``contentStart.audioInputConfiguration`` for the caller's audio block."""

    media_type: str = "audio/lpcm"
    sample_rate_hertz: int = 16000
    sample_size_bits: int = 16
    channel_count: int = 1
    audio_type: str = "SPEECH"
    encoding: str = "base64"


class ToolResultInputConfiguration(_Strict, frozen=True):
    """``contentStart.toolResultInputConfiguration``: which ``toolUseId`` this block answers."""

    tool_use_id: str
    type: str = "TEXT"
    text_input_configuration: TextConfiguration = msgspec.field(default_factory=TextConfiguration)


class SessionStart(_StrictOptional, frozen=True):
    """``sessionStart``: first event of a stream."""

    inference_configuration: InferenceConfiguration
    turn_detection_configuration: TurnDetectionConfiguration | None = None


class PromptStart(_StrictOptional, frozen=True):
    """``promptStart``: output formats, voice and tools. Leave tool parts None when there are none."""

    prompt_name: str
    text_output_configuration: TextConfiguration
    audio_output_configuration: AudioOutputConfiguration
    tool_use_output_configuration: ToolUseOutputConfiguration | None = None
    tool_configuration: ToolConfiguration | None = None


_CONFIG_FOR_TYPE: Final = {
    "TEXT": "text_input_configuration",
    "AUDIO": "audio_input_configuration",
    "TOOL": "tool_result_input_configuration",
}


class InputContentStart(_StrictOptional, frozen=True):
    """``contentStart`` (input): opens a TEXT, AUDIO or TOOL block named ``content_name``.

    The configuration matching ``type`` must be present (TEXT → ``text_input_configuration``, AUDIO →
    ``audio_input_configuration``, TOOL → ``tool_result_input_configuration``).
    """

    prompt_name: str
    content_name: str
    type: ContentType
    interactive: bool
    role: ContentRole
    text_input_configuration: TextConfiguration | None = None
    audio_input_configuration: AudioInputConfiguration | None = None
    tool_result_input_configuration: ToolResultInputConfiguration | None = None

    def __post_init__(self) -> None:
        needed = _CONFIG_FOR_TYPE[self.type]
        if getattr(self, needed) is None:
            raise ValueError(f"contentStart of type {self.type} needs {needed}")


class TextInput(_Strict, frozen=True):
    """``textInput``: system prompt, history or cross-modal USER text."""

    prompt_name: str
    content_name: str
    content: str


class AudioInput(_Strict, frozen=True):
    """``audioInput``: LPCM16 mono; ``content`` is raw PCM here and base64 on the wire."""

    prompt_name: str
    content_name: str
    content: bytes


class ToolResult(_Strict, frozen=True):
    """``toolResult``: ``content`` is stringified JSON."""

    prompt_name: str
    content_name: str
    content: str


class InputContentEnd(_Strict, frozen=True):
    """``contentEnd`` (input): closes the block ``content_name``."""

    prompt_name: str
    content_name: str


class PromptEnd(_Strict, frozen=True):
    """``promptEnd``."""

    prompt_name: str


class SessionEnd(_Strict, frozen=True):
    """``sessionEnd``: ``{}``; last event before closing the input stream."""


InputEventBody = (
    SessionStart
    | PromptStart
    | InputContentStart
    | TextInput
    | AudioInput
    | ToolResult
    | InputContentEnd
    | PromptEnd
    | SessionEnd
)


class InputEvent(_StrictOptional, frozen=True):
    """The ``event`` object of an input event: exactly one field is set."""

    session_start: SessionStart | None = None
    prompt_start: PromptStart | None = None
    content_start: InputContentStart | None = None
    text_input: TextInput | None = None
    audio_input: AudioInput | None = None
    tool_result: ToolResult | None = None
    content_end: InputContentEnd | None = None
    prompt_end: PromptEnd | None = None
    session_end: SessionEnd | None = None


class InputEnvelope(_Strict, frozen=True):
    """``{"event": {...}}`` for input events."""

    event: InputEvent


# Attribute name in InputEvent for each body type, and the wire (camelCase) name.
_INPUT_ATTR: Final[dict[type[InputEventBody], str]] = {
    SessionStart: "session_start",
    PromptStart: "prompt_start",
    InputContentStart: "content_start",
    TextInput: "text_input",
    AudioInput: "audio_input",
    ToolResult: "tool_result",
    InputContentEnd: "content_end",
    PromptEnd: "prompt_end",
    SessionEnd: "session_end",
}


def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(part.title() for part in rest)


_INPUT_NAME: Final[dict[type[InputEventBody], str]] = {t: _camel(a) for t, a in _INPUT_ATTR.items()}
INPUT_EVENT_NAMES: Final[frozenset[str]] = frozenset(_INPUT_NAME.values())
_INPUT_ATTRS: Final = tuple(_INPUT_ATTR.values())
_NO_INPUT_EVENT: Final = InputEvent()  # encoders fill in the one field they need


class _AudioInputEvent(_Strict, frozen=True):
    audio_input: AudioInput


class _AudioInputEnvelope(_Strict, frozen=True):
    event: _AudioInputEvent


# One reusable encoder for every event: msgspec encoders are cheap to call, costly to build.
_ENCODER: Final = msgspec.json.Encoder()
_INPUT_DECODER: Final = msgspec.json.Decoder(InputEnvelope)


def input_event_name(body: InputEventBody) -> str:
    """Return the wire name of an input event body (``"audioInput"``)."""
    return _INPUT_NAME[type(body)]


def encode_input_event(body: InputEventBody) -> bytes:
    """Encode one input event as ``{"event": {"<name>": {...}}}`` JSON bytes."""
    if type(body) is AudioInput:
        return _ENCODER.encode(_AudioInputEnvelope(event=_AudioInputEvent(audio_input=body)))
    event = msgspec.structs.replace(_NO_INPUT_EVENT, **{_INPUT_ATTR[type(body)]: body})
    return _ENCODER.encode(InputEnvelope(event=event))


def encode_audio_input(prompt_name: str, content_name: str, pcm: bytes) -> bytes:
    """Encode an ``audioInput`` event from raw LPCM16 bytes (hot path: JSON + base64 in one pass)."""
    body = AudioInput(prompt_name=prompt_name, content_name=content_name, content=pcm)
    return _ENCODER.encode(_AudioInputEnvelope(event=_AudioInputEvent(audio_input=body)))


def _event_error(exc: msgspec.DecodeError, what: str) -> SonicEventError:
    return SonicEventError(f"malformed {what}: {problem(exc)}", field=field_path(exc))


def decode_input_event(data: bytes | str) -> InputEventBody:
    """Decode one input event strictly, as the service does (used by the emulator).

    Raises:
        SonicEventError: not JSON, unknown or missing field, wrong type or value, or not exactly
            one event in the envelope; ``field`` names the path (``"event.promptStart.promptName"``).
    """
    try:
        event = _INPUT_DECODER.decode(data).event
    except msgspec.DecodeError as exc:
        raise _event_error(exc, "input event") from exc
    bodies = [body for attr in _INPUT_ATTRS if (body := getattr(event, attr)) is not None]
    if len(bodies) != 1:
        raise SonicEventError(f"expected exactly one input event, got {len(bodies)}", field="event")
    return bodies[0]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------------
# Output events (Sonic → gateway): tolerant.


class _Tolerant(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    """Output-side base: camelCase keys, unknown keys ignored, every field encoded."""


class _TolerantOptional(_Tolerant, frozen=True, omit_defaults=True):
    """Output-side base for structs with optional parts (defaults are None and left out)."""


class OutputTextConfiguration(_Tolerant, frozen=True):
    """``contentStart.textOutputConfiguration`` on the output side."""

    media_type: str = "text/plain"


class OutputAudioConfiguration(_Tolerant, frozen=True):
    """``contentStart.audioOutputConfiguration`` on the output side: the format of ``audioOutput``."""

    media_type: str = "audio/lpcm"
    sample_rate_hertz: int = 24000
    sample_size_bits: int = 16
    encoding: str = "base64"
    channel_count: int = 1


class OutputToolUseConfiguration(_Tolerant, frozen=True):
    """``contentStart.toolUseOutputConfiguration`` on the output side."""

    media_type: str = "application/json"


class CompletionStart(_Tolerant, frozen=True):
    """``completionStart``: a model turn (completion) begins."""

    session_id: str
    prompt_name: str
    completion_id: str


class OutputContentStart(_TolerantOptional, frozen=True):
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


class TextOutput(_Tolerant, frozen=True):
    """``textOutput``: transcript (USER) or reply text (ASSISTANT); may be the barge-in marker."""

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    role: str
    content: str


class AudioOutput(_Tolerant, frozen=True):
    """``audioOutput``: LPCM16 mono; ``content`` is raw PCM here and base64 on the wire."""

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    content: bytes


class ToolUse(_Tolerant, frozen=True):
    """``toolUse``: the model calls ``tool_name``; ``content`` is the input as a JSON string."""

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    tool_name: str
    tool_use_id: str
    content: str


class OutputContentEnd(_Tolerant, frozen=True):
    """``contentEnd`` (output): ``stop_reason`` is PARTIAL_TURN, END_TURN, INTERRUPTED or TOOL_USE."""

    session_id: str
    prompt_name: str
    completion_id: str
    content_id: str
    type: str
    stop_reason: str


class TokenCounts(_Tolerant, frozen=True):
    """Speech and text tokens in one direction."""

    speech_tokens: int = 0
    text_tokens: int = 0


class TokenUsage(_Tolerant, frozen=True):
    """Token counts for input and output."""

    input: TokenCounts = msgspec.field(default_factory=TokenCounts)
    output: TokenCounts = msgspec.field(default_factory=TokenCounts)


class UsageDetails(_Tolerant, frozen=True):
    """``usageEvent.details``: the change since the last usage event and the running total."""

    delta: TokenUsage = msgspec.field(default_factory=TokenUsage)
    total: TokenUsage = msgspec.field(default_factory=TokenUsage)


class UsageEvent(_Tolerant, frozen=True):
    """``usageEvent``: token accounting; arrives any time, repeatedly."""

    session_id: str
    prompt_name: str
    completion_id: str
    details: UsageDetails = msgspec.field(default_factory=UsageDetails)
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_tokens: int = 0


class CompletionEnd(_Tolerant, frozen=True):
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


class OutputEvent(_TolerantOptional, frozen=True):
    """The ``event`` object of an output event: one known field is set (unknown names are ignored)."""

    completion_start: CompletionStart | None = None
    content_start: OutputContentStart | None = None
    text_output: TextOutput | None = None
    audio_output: AudioOutput | None = None
    tool_use: ToolUse | None = None
    content_end: OutputContentEnd | None = None
    usage_event: UsageEvent | None = None
    completion_end: CompletionEnd | None = None


class OutputEnvelope(_Tolerant, frozen=True):
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
    t: _camel(a) for t, a in _OUTPUT_ATTR.items()
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
        return _ENCODER.encode({"event": {body.name: {}}})
    event = msgspec.structs.replace(_NO_OUTPUT_EVENT, **{_OUTPUT_ATTR[type(body)]: body})
    return _ENCODER.encode(OutputEnvelope(event=event))


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
    except msgspec.DecodeError as exc:
        raise _event_error(exc, "output event") from exc
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
    log and replay (nova-sonic.md §4.1).
    """
    raw = content_start.additional_model_fields
    if not raw:
        return None
    try:
        stage = _ADDITIONAL_FIELDS_DECODER.decode(raw).generation_stage
    except msgspec.DecodeError:
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
    except msgspec.DecodeError:
        return False


# --------------------------------------------------------------------------------------------------
# Bedrock payload parts: each Nova JSON event travels base64-encoded inside {"bytes": "..."}.


class ChunkPayload(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Payload of an event-stream ``chunk`` frame: ``{"bytes": "<base64 of one Nova JSON event>"}``."""

    bytes_: bytes = msgspec.field(name="bytes")


class ExceptionPayload(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Payload of an event-stream ``exception`` frame: ``{"message": "..."}``."""

    message: str


_CHUNK_DECODER: Final = msgspec.json.Decoder(ChunkPayload)
_EXCEPTION_DECODER: Final = msgspec.json.Decoder(ExceptionPayload)


def encode_chunk_payload(event_json: bytes) -> bytes:
    """Wrap one Nova JSON event as a chunk frame payload."""
    return _ENCODER.encode(ChunkPayload(bytes_=event_json))


def decode_chunk_payload(data: bytes | str) -> bytes:
    """Unwrap a chunk frame payload into the Nova JSON event bytes.

    Raises:
        SonicEventError: not JSON, no ``bytes`` member, or ``bytes`` is not base64.
    """
    try:
        return _CHUNK_DECODER.decode(data).bytes_
    except msgspec.DecodeError as exc:
        raise _event_error(exc, "chunk payload") from exc


def encode_exception_payload(message: str) -> bytes:
    """Build an exception frame payload (the emulator's error injection)."""
    return _ENCODER.encode(ExceptionPayload(message=message))


def decode_exception_payload(data: bytes | str) -> str:
    """Return the ``message`` of an exception frame payload.

    Raises:
        SonicEventError: not JSON or no string ``message``.
    """
    try:
        return _EXCEPTION_DECODER.decode(data).message
    except msgspec.DecodeError as exc:
        raise _event_error(exc, "exception payload") from exc
