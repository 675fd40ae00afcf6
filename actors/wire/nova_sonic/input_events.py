"""Nova Sonic INPUT events (gateway → Sonic): Structs, encoders, and the service-strict decoder.

Rules: camelCase keys (``rename="camel"``); decoding rejects unknown fields, closed Literals for
``type`` / ``role`` / sensitivity, and an envelope must hold exactly one event, as the service does.
Config structs whose fields all go on the wire carry convenient defaults and are encoded in full;
structs with optional parts default those to None and use ``omit_defaults`` (never both in one
struct, or a default value would silently vanish from the wire). ``audioInput`` has its own envelope
so the hot path builds three small Structs and makes one encoder call.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from actors.wire.nova_sonic._common import (
    DECODE_ERRORS,
    ENCODER,
    SonicEventError,
    camel,
    event_error,
)

__all__ = [
    "INPUT_EVENT_NAMES",
    "TOOL_CHOICE_ANY",
    "TOOL_CHOICE_AUTO",
    "AudioInput",
    "AudioInputConfiguration",
    "AudioOutputConfiguration",
    "ContentRole",
    "ContentType",
    "EndpointingSensitivity",
    "InferenceConfiguration",
    "InputContentEnd",
    "InputContentStart",
    "InputEnvelope",
    "InputEvent",
    "InputEventBody",
    "PromptEnd",
    "PromptStart",
    "PromptTool",
    "SessionEnd",
    "SessionStart",
    "TextConfiguration",
    "TextInput",
    "ToolChoice",
    "ToolChoiceAny",
    "ToolChoiceAuto",
    "ToolChoiceTool",
    "ToolConfiguration",
    "ToolInputSchema",
    "ToolResultInput",
    "ToolResultInputConfiguration",
    "ToolSpec",
    "ToolUseOutputConfiguration",
    "TurnDetectionConfiguration",
    "decode_input_event",
    "encode_audio_input",
    "encode_input_event",
    "input_event_name",
]

EndpointingSensitivity = Literal["HIGH", "MEDIUM", "LOW"]
ContentType = Literal["TEXT", "AUDIO", "TOOL"]
ContentRole = Literal["SYSTEM", "USER", "ASSISTANT", "TOOL", "SYSTEM_SPEECH"]


class _Strict(
    msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel", forbid_unknown_fields=True
):
    """Input-side base: camelCase keys, unknown keys rejected, every field encoded."""


class _StrictOptional(_Strict, frozen=True, kw_only=True, omit_defaults=True):
    """Input-side base for structs with optional parts (defaults are None and left out)."""


class InferenceConfiguration(_Strict, frozen=True, kw_only=True):
    """``sessionStart.inferenceConfiguration``."""

    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7


class TurnDetectionConfiguration(_Strict, frozen=True, kw_only=True):
    """``sessionStart.turnDetectionConfiguration`` (Nova 2): HIGH answers soonest, LOW waits longest."""

    endpointing_sensitivity: EndpointingSensitivity = "MEDIUM"


class TextConfiguration(_Strict, frozen=True, kw_only=True):
    """``textOutputConfiguration`` / ``textInputConfiguration`` on the input side."""

    media_type: str = "text/plain"


class AudioOutputConfiguration(_Strict, frozen=True, kw_only=True):
    """``promptStart.audioOutputConfiguration``: what Sonic should speak, and in which voice."""

    voice_id: str
    media_type: str = "audio/lpcm"
    sample_rate_hertz: int = 24000
    sample_size_bits: int = 16
    channel_count: int = 1
    encoding: str = "base64"
    audio_type: str = "SPEECH"


class ToolUseOutputConfiguration(_Strict, frozen=True, kw_only=True):
    """``promptStart.toolUseOutputConfiguration`` (send only when tools are configured)."""

    media_type: str = "application/json"


class ToolInputSchema(_Strict, frozen=True, kw_only=True):
    """``toolSpec.inputSchema``: ``json`` is a STRING holding the JSON Schema."""

    json: str


class ToolSpec(_Strict, frozen=True, kw_only=True):
    """One tool's name, description and input schema."""

    name: str
    description: str
    input_schema: ToolInputSchema


class PromptTool(_Strict, frozen=True, kw_only=True):
    """``toolConfiguration.tools[]`` item."""

    tool_spec: ToolSpec


class ToolChoiceAuto(_Strict, frozen=True, kw_only=True):
    """``{"auto": {}}``: the model decides (the default)."""


class ToolChoiceAny(_Strict, frozen=True, kw_only=True):
    """``{"any": {}}``: the model must call some tool."""


class ToolChoiceTool(_Strict, frozen=True, kw_only=True):
    """``{"tool": {"name": ...}}``: the model must call this tool."""

    name: str


class ToolChoice(_StrictOptional, frozen=True, kw_only=True):
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


class ToolConfiguration(_StrictOptional, frozen=True, kw_only=True):
    """``promptStart.toolConfiguration``."""

    tools: list[PromptTool]
    tool_choice: ToolChoice | None = None


class AudioInputConfiguration(_Strict, frozen=True, kw_only=True):
    """``contentStart.audioInputConfiguration`` for the caller's audio block."""

    media_type: str = "audio/lpcm"
    sample_rate_hertz: int = 16000
    sample_size_bits: int = 16
    channel_count: int = 1
    audio_type: str = "SPEECH"
    encoding: str = "base64"


class ToolResultInputConfiguration(_Strict, frozen=True, kw_only=True):
    """``contentStart.toolResultInputConfiguration``: which ``toolUseId`` this block answers."""

    tool_use_id: str
    type: str = "TEXT"
    text_input_configuration: TextConfiguration = msgspec.field(default_factory=TextConfiguration)


class SessionStart(_StrictOptional, frozen=True, kw_only=True):
    """``sessionStart``: first event of a stream."""

    inference_configuration: InferenceConfiguration
    turn_detection_configuration: TurnDetectionConfiguration | None = None


class PromptStart(_StrictOptional, frozen=True, kw_only=True):
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


class InputContentStart(_StrictOptional, frozen=True, kw_only=True):
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
            raise ValueError(f"contentStart of type {self.type} needs {camel(needed)}")


class TextInput(_Strict, frozen=True, kw_only=True):
    """``textInput``: system prompt, history or cross-modal USER text."""

    prompt_name: str
    content_name: str
    content: str


class AudioInput(_Strict, frozen=True, kw_only=True):
    """``audioInput``: LPCM16 mono; ``content`` is raw PCM here and base64 on the wire."""

    prompt_name: str
    content_name: str
    content: bytes


class ToolResultInput(_Strict, frozen=True, kw_only=True):
    """``toolResult``: ``content`` is stringified JSON."""

    prompt_name: str
    content_name: str
    content: str


class InputContentEnd(_Strict, frozen=True, kw_only=True):
    """``contentEnd`` (input): closes the block ``content_name``."""

    prompt_name: str
    content_name: str


class PromptEnd(_Strict, frozen=True, kw_only=True):
    """``promptEnd``."""

    prompt_name: str


class SessionEnd(_Strict, frozen=True, kw_only=True):
    """``sessionEnd``: ``{}``; last event before closing the input stream."""


InputEventBody = (
    SessionStart
    | PromptStart
    | InputContentStart
    | TextInput
    | AudioInput
    | ToolResultInput
    | InputContentEnd
    | PromptEnd
    | SessionEnd
)


class InputEvent(_StrictOptional, frozen=True, kw_only=True):
    """The ``event`` object of an input event: exactly one field is set."""

    session_start: SessionStart | None = None
    prompt_start: PromptStart | None = None
    content_start: InputContentStart | None = None
    text_input: TextInput | None = None
    audio_input: AudioInput | None = None
    tool_result: ToolResultInput | None = None
    content_end: InputContentEnd | None = None
    prompt_end: PromptEnd | None = None
    session_end: SessionEnd | None = None


class InputEnvelope(_Strict, frozen=True, kw_only=True):
    """``{"event": {...}}`` for input events."""

    event: InputEvent


# Attribute name in InputEvent for each body type, and the wire (camelCase) name.
_INPUT_ATTR: Final[dict[type[InputEventBody], str]] = {
    SessionStart: "session_start",
    PromptStart: "prompt_start",
    InputContentStart: "content_start",
    TextInput: "text_input",
    AudioInput: "audio_input",
    ToolResultInput: "tool_result",
    InputContentEnd: "content_end",
    PromptEnd: "prompt_end",
    SessionEnd: "session_end",
}


_INPUT_NAME: Final[dict[type[InputEventBody], str]] = {t: camel(a) for t, a in _INPUT_ATTR.items()}
INPUT_EVENT_NAMES: Final[frozenset[str]] = frozenset(_INPUT_NAME.values())
_INPUT_ATTRS: Final = tuple(_INPUT_ATTR.values())
_NO_INPUT_EVENT: Final = InputEvent()  # encoders fill in the one field they need


class _AudioInputEvent(_Strict, frozen=True, kw_only=True):
    audio_input: AudioInput


class _AudioInputEnvelope(_Strict, frozen=True, kw_only=True):
    event: _AudioInputEvent


_INPUT_DECODER: Final = msgspec.json.Decoder(InputEnvelope)


def input_event_name(body: InputEventBody) -> str:
    """Return the wire name of an input event body (``"audioInput"``)."""
    return _INPUT_NAME[type(body)]


def encode_input_event(body: InputEventBody) -> bytes:
    """Encode one input event as ``{"event": {"<name>": {...}}}`` JSON bytes."""
    if type(body) is AudioInput:
        return ENCODER.encode(_AudioInputEnvelope(event=_AudioInputEvent(audio_input=body)))
    event = msgspec.structs.replace(_NO_INPUT_EVENT, **{_INPUT_ATTR[type(body)]: body})
    return ENCODER.encode(InputEnvelope(event=event))


def encode_audio_input(prompt_name: str, content_name: str, pcm: bytes) -> bytes:
    """Encode an ``audioInput`` event from raw LPCM16 bytes (hot path: JSON + base64 in one pass)."""
    body = AudioInput(prompt_name=prompt_name, content_name=content_name, content=pcm)
    return ENCODER.encode(_AudioInputEnvelope(event=_AudioInputEvent(audio_input=body)))


def decode_input_event(data: bytes | str) -> InputEventBody:
    """Decode one input event strictly, as the service does (used by the emulator).

    Raises:
        SonicEventError: not JSON, unknown or missing field, wrong type or value, or not exactly
            one event in the envelope; ``field`` names the path (``"event.promptStart.promptName"``).
    """
    try:
        event = _INPUT_DECODER.decode(data).event
    except DECODE_ERRORS as exc:
        raise event_error(exc, "input event") from exc
    bodies: list[InputEventBody] = [
        body for attr in _INPUT_ATTRS if (body := getattr(event, attr)) is not None
    ]
    if len(bodies) != 1:
        raise SonicEventError(f"expected exactly one input event, got {len(bodies)}", field="event")
    return bodies[0]
