"""Nova Sonic input events: documented examples, strict decoding, the audioInput fast path."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.errors import RemoteProtocolError
from actors.wire import (
    INPUT_EVENT_NAMES,
    TOOL_CHOICE_ANY,
    TOOL_CHOICE_AUTO,
    AudioInput,
    AudioInputConfiguration,
    AudioOutputConfiguration,
    InferenceConfiguration,
    InputContentEnd,
    InputContentStart,
    InputEventBody,
    PromptEnd,
    PromptStart,
    PromptTool,
    SessionEnd,
    SessionStart,
    SonicEventError,
    TextConfiguration,
    TextInput,
    ToolChoice,
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

# Input events shaped as in AWS's Nova Sonic user guide, with a "<base64 LPCM>" placeholder.
SESSION_START = """{"event":{"sessionStart":{
  "inferenceConfiguration":{"maxTokens":1024,"topP":0.9,"temperature":0.7},
  "turnDetectionConfiguration":{"endpointingSensitivity":"MEDIUM"}}}}"""
PROMPT_START = """{"event":{"promptStart":{"promptName":"P",
  "textOutputConfiguration":{"mediaType":"text/plain"},
  "audioOutputConfiguration":{"mediaType":"audio/lpcm","sampleRateHertz":24000,"sampleSizeBits":16,
    "channelCount":1,"voiceId":"matthew","encoding":"base64","audioType":"SPEECH"},
  "toolUseOutputConfiguration":{"mediaType":"application/json"},
  "toolConfiguration":{"tools":[{"toolSpec":{"name":"get_order","description":"Look up an order",
    "inputSchema":{"json":"{\\"type\\":\\"object\\",\\"properties\\":{\\"orderId\\":{\\"type\\":\\"string\\"}}}"}}}],
    "toolChoice":{"auto":{}}}}}}"""
CONTENT_START_TEXT = """{"event":{"contentStart":{"promptName":"P","contentName":"C1","type":"TEXT","interactive":false,
  "role":"SYSTEM","textInputConfiguration":{"mediaType":"text/plain"}}}}"""
CONTENT_START_AUDIO = """{"event":{"contentStart":{"promptName":"P","contentName":"A1","type":"AUDIO","interactive":true,"role":"USER",
  "audioInputConfiguration":{"mediaType":"audio/lpcm","sampleRateHertz":16000,"sampleSizeBits":16,
  "channelCount":1,"audioType":"SPEECH","encoding":"base64"}}}}"""
CONTENT_START_TOOL = """{"event":{"contentStart":{"promptName":"P","contentName":"T1","type":"TOOL","interactive":false,"role":"TOOL",
  "toolResultInputConfiguration":{"toolUseId":"U","type":"TEXT","textInputConfiguration":{"mediaType":"text/plain"}}}}}"""
TEXT_INPUT = '{"event":{"textInput":{"promptName":"P","contentName":"C1","content":"You are a helpful agent."}}}'
AUDIO_INPUT = '{"event":{"audioInput":{"promptName":"P","contentName":"A1","content":"AAABAP//"}}}'
TOOL_RESULT = '{"event":{"toolResult":{"promptName":"P","contentName":"T1","content":"{\\"status\\":\\"shipped\\"}"}}}'
CONTENT_END = '{"event":{"contentEnd":{"promptName":"P","contentName":"C1"}}}'
PROMPT_END = '{"event":{"promptEnd":{"promptName":"P"}}}'
SESSION_END = '{"event":{"sessionEnd":{}}}'

EXAMPLES = {
    "sessionStart": SESSION_START,
    "promptStart": PROMPT_START,
    "contentStart-text": CONTENT_START_TEXT,
    "contentStart-audio": CONTENT_START_AUDIO,
    "contentStart-tool": CONTENT_START_TOOL,
    "textInput": TEXT_INPUT,
    "audioInput": AUDIO_INPUT,
    "toolResult": TOOL_RESULT,
    "contentEnd": CONTENT_END,
    "promptEnd": PROMPT_END,
    "sessionEnd": SESSION_END,
}

TOOL = PromptTool(
    tool_spec=ToolSpec(
        name="get_order",
        description="Look up an order",
        input_schema=ToolInputSchema(
            json='{"type":"object","properties":{"orderId":{"type":"string"}}}'
        ),
    )
)

# One of every input event, built the way the client builds them.
BODIES: list[InputEventBody] = [
    SessionStart(
        inference_configuration=InferenceConfiguration(max_tokens=1024, top_p=0.9, temperature=0.7),
        turn_detection_configuration=TurnDetectionConfiguration(endpointing_sensitivity="MEDIUM"),
    ),
    SessionStart(inference_configuration=InferenceConfiguration()),
    PromptStart(
        prompt_name="P",
        text_output_configuration=TextConfiguration(),
        audio_output_configuration=AudioOutputConfiguration(voice_id="matthew"),
        tool_use_output_configuration=ToolUseOutputConfiguration(),
        tool_configuration=ToolConfiguration(tools=[TOOL], tool_choice=TOOL_CHOICE_AUTO),
    ),
    PromptStart(
        prompt_name="P",
        text_output_configuration=TextConfiguration(),
        audio_output_configuration=AudioOutputConfiguration(
            voice_id="tiffany", sample_rate_hertz=8000
        ),
    ),
    InputContentStart(
        prompt_name="P",
        content_name="C1",
        type="TEXT",
        interactive=False,
        role="SYSTEM",
        text_input_configuration=TextConfiguration(),
    ),
    InputContentStart(
        prompt_name="P",
        content_name="A1",
        type="AUDIO",
        interactive=True,
        role="USER",
        audio_input_configuration=AudioInputConfiguration(sample_rate_hertz=8000),
    ),
    InputContentStart(
        prompt_name="P",
        content_name="T1",
        type="TOOL",
        interactive=False,
        role="TOOL",
        tool_result_input_configuration=ToolResultInputConfiguration(tool_use_id="U"),
    ),
    TextInput(prompt_name="P", content_name="C1", content='You are a helpful agent. ✓ "quoted"'),
    AudioInput(prompt_name="P", content_name="A1", content=bytes(range(256))),
    ToolResultInput(prompt_name="P", content_name="T1", content='{"status":"shipped"}'),
    InputContentEnd(prompt_name="P", content_name="C1"),
    PromptEnd(prompt_name="P"),
    SessionEnd(),
]


@pytest.mark.parametrize("example", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_documented_example_decodes_and_re_encodes_to_the_same_json(example: str) -> None:
    body = decode_input_event(example)
    encoded = encode_input_event(body)
    assert json.loads(encoded) == json.loads(example)
    assert decode_input_event(encoded) == body


def test_documented_examples_cover_every_input_event() -> None:
    names = {input_event_name(decode_input_event(example)) for example in EXAMPLES.values()}
    assert names == INPUT_EVENT_NAMES


def test_documented_prompt_start_decodes_to_the_expected_values() -> None:
    assert decode_input_event(PROMPT_START) == BODIES[2]


def test_documented_audio_input_content_is_raw_pcm() -> None:
    body = decode_input_event(AUDIO_INPUT)
    assert isinstance(body, AudioInput)
    assert body.content == base64.b64decode("AAABAP//")


@pytest.mark.parametrize("body", BODIES, ids=lambda b: input_event_name(b))
def test_every_input_event_round_trips(body: InputEventBody) -> None:
    encoded = encode_input_event(body)
    assert decode_input_event(encoded) == body
    assert list(json.loads(encoded)["event"]) == [input_event_name(body)]


def test_optional_parts_are_left_out_not_sent_as_null() -> None:
    session = json.loads(encode_input_event(BODIES[1]))
    assert session == {
        "event": {
            "sessionStart": {
                "inferenceConfiguration": {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}
            }
        }
    }
    prompt = json.loads(encode_input_event(BODIES[3]))["event"]["promptStart"]
    assert "toolConfiguration" not in prompt
    assert "toolUseOutputConfiguration" not in prompt
    # Defaults that the service needs are still sent.
    assert prompt["audioOutputConfiguration"]["mediaType"] == "audio/lpcm"
    assert prompt["textOutputConfiguration"] == {"mediaType": "text/plain"}


def test_tool_choice_shapes() -> None:
    for choice, shape in [
        (TOOL_CHOICE_AUTO, {"auto": {}}),
        (TOOL_CHOICE_ANY, {"any": {}}),
        (ToolChoice(tool=ToolChoiceTool(name="x")), {"tool": {"name": "x"}}),
    ]:
        body = PromptStart(
            prompt_name="P",
            text_output_configuration=TextConfiguration(),
            audio_output_configuration=AudioOutputConfiguration(voice_id="matthew"),
            tool_configuration=ToolConfiguration(tools=[TOOL], tool_choice=choice),
        )
        encoded = encode_input_event(body)
        assert (
            json.loads(encoded)["event"]["promptStart"]["toolConfiguration"]["toolChoice"] == shape
        )
        assert decode_input_event(encoded) == body
    with pytest.raises(ValueError, match="exactly one"):
        ToolChoice()


def test_content_start_needs_the_configuration_of_its_type() -> None:
    with pytest.raises(ValueError, match="audioInputConfiguration"):
        InputContentStart(
            prompt_name="P", content_name="A", type="AUDIO", interactive=True, role="USER"
        )


# ----------------------------------------------------------------------------- audioInput fast path


def test_audio_fast_path_equals_the_generic_encoding() -> None:
    pcm = bytes(range(256)) * 3
    fast = encode_audio_input("P", "A1", pcm)
    generic = encode_input_event(AudioInput(prompt_name="P", content_name="A1", content=pcm))
    assert fast == generic
    assert json.loads(fast) == {
        "event": {
            "audioInput": {
                "promptName": "P",
                "contentName": "A1",
                "content": base64.b64encode(pcm).decode(),
            }
        }
    }


@settings(max_examples=150, deadline=None)
@given(pcm=st.binary(max_size=2048), prompt=st.text(max_size=40), content=st.text(max_size=40))
def test_audio_input_round_trips_for_any_bytes_and_names(
    pcm: bytes, prompt: str, content: str
) -> None:
    encoded = encode_audio_input(prompt, content, pcm)
    assert decode_input_event(encoded) == AudioInput(
        prompt_name=prompt, content_name=content, content=pcm
    )


# ----------------------------------------------------------------------------- strict decoding


@pytest.mark.parametrize(
    ("event", "field"),
    [
        pytest.param(
            '{"event":{"promptEnd":{"promptName":"P","extra":1}}}',
            "event.promptEnd.extra",
            id="unknown-field",
        ),
        pytest.param(
            CONTENT_START_AUDIO.replace('"encoding":"base64"', '"encoding":"base64","bitrate":1'),
            "event.contentStart.audioInputConfiguration.bitrate",
            id="unknown-nested-field",
        ),
        pytest.param(
            '{"event":{"promptEnd":{}}}', "event.promptEnd.promptName", id="missing-field"
        ),
        pytest.param(
            '{"event":{"promptStart":{"promptName":1}}}',
            "event.promptStart.promptName",
            id="wrong-type",
        ),
        pytest.param(
            '{"event":{"audioInput":{"promptName":"P","contentName":"A","content":"%%%"}}}',
            "event.audioInput.content",
            id="content-not-base64",
        ),
        pytest.param(
            CONTENT_START_TEXT.replace('"SYSTEM"', '"NARRATOR"'),
            "event.contentStart.role",
            id="bad-role",
        ),
        pytest.param(
            SESSION_START.replace('"MEDIUM"', '"EXTREME"'),
            "event.sessionStart.turnDetectionConfiguration.endpointingSensitivity",
            id="bad-sensitivity",
        ),
        pytest.param(
            PROMPT_START.replace('"inputSchema":{"json":', '"inputSchema":{"jsonx":'),
            "event.promptStart.toolConfiguration.tools[0].toolSpec.inputSchema.jsonx",
            id="unknown-field-in-list",
        ),
        pytest.param(
            '{"event":{"contentStart":{"promptName":"P","contentName":"C","type":"TEXT","interactive":true,"role":"USER"}}}',
            "event.contentStart",
            id="text-without-text-configuration",
        ),
        pytest.param('{"event":{"sessionFinish":{}}}', "event.sessionFinish", id="unknown-event"),
        pytest.param('{"event":{}}', "event", id="no-event"),
        pytest.param(
            '{"event":{"promptEnd":{"promptName":"P"},"sessionEnd":{}}}', "event", id="two-events"
        ),
        pytest.param('{"events":{}}', "events", id="bad-envelope"),
    ],
)
def test_strict_decode_names_the_offending_path(event: str, field: str) -> None:
    with pytest.raises(SonicEventError) as info:
        decode_input_event(event)
    assert info.value.field == field
    assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"null", "\ud800", b"\x00"])
def test_non_events_raise_the_project_error(data: bytes | str) -> None:
    with pytest.raises(SonicEventError):
        decode_input_event(data)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=200))
def test_decode_raises_only_the_project_error(data: bytes | str) -> None:
    with contextlib.suppress(SonicEventError):
        decode_input_event(data)
