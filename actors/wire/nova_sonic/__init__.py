"""Nova Sonic events as msgspec Structs: build, encode and decode, with no I/O.

Theory of operation (event shapes as in AWS's Amazon Nova Sonic user guide):

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
  fastest path measured (docs/performance.md §2). :func:`encode_audio_input` is the hot path: a dedicated
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

from actors.wire.nova_sonic._common import SonicEventError
from actors.wire.nova_sonic.bedrock_payload import (
    ChunkPayload,
    ExceptionPayload,
    decode_chunk_payload,
    decode_exception_payload,
    encode_chunk_payload,
    encode_exception_payload,
)
from actors.wire.nova_sonic.input_events import (
    INPUT_EVENT_NAMES,
    TOOL_CHOICE_ANY,
    TOOL_CHOICE_AUTO,
    AudioInput,
    AudioInputConfiguration,
    AudioOutputConfiguration,
    ContentRole,
    ContentType,
    EndpointingSensitivity,
    InferenceConfiguration,
    InputContentEnd,
    InputContentStart,
    InputEnvelope,
    InputEvent,
    InputEventBody,
    PromptEnd,
    PromptStart,
    PromptTool,
    SessionEnd,
    SessionStart,
    TextConfiguration,
    TextInput,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceTool,
    ToolConfiguration,
    ToolInputSchema,
    ToolResultInput,
    ToolResultInputConfiguration,
    ToolSpec,
    ToolUseOutputConfiguration,
    TurnDetectionConfiguration,
    decode_input_event,
    encode_audio_input,
    encode_input_event,
    input_event_name,
)
from actors.wire.nova_sonic.output_events import (
    BARGE_IN_MARKER,
    OUTPUT_EVENT_NAMES,
    AudioOutput,
    CompletionEnd,
    CompletionStart,
    GenerationStage,
    OutputAudioConfiguration,
    OutputContentEnd,
    OutputContentStart,
    OutputEnvelope,
    OutputEvent,
    OutputEventBody,
    OutputTextConfiguration,
    OutputToolUseConfiguration,
    TextOutput,
    TokenCounts,
    TokenUsage,
    ToolUse,
    UnknownOutputEvent,
    UsageDetails,
    UsageEvent,
    decode_output_event,
    encode_output_event,
    generation_stage,
    is_barge_in_marker,
    output_event_name,
)

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
    "PromptTool",
    "SessionEnd",
    "SessionStart",
    "SonicEventError",
    "TextConfiguration",
    "TextInput",
    "TextOutput",
    "TokenCounts",
    "TokenUsage",
    "ToolChoice",
    "ToolChoiceAny",
    "ToolChoiceAuto",
    "ToolChoiceTool",
    "ToolConfiguration",
    "ToolInputSchema",
    "ToolResultInput",
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
