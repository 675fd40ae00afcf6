"""Nova Sonic output events, two-step fields, barge-in marker, and Bedrock payload parts."""

from __future__ import annotations

import base64
import json
from typing import TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.wire import (
    BARGE_IN_MARKER,
    OUTPUT_EVENT_NAMES,
    AudioOutput,
    CompletionEnd,
    CompletionStart,
    OutputAudioConfiguration,
    OutputContentEnd,
    OutputContentStart,
    OutputEventBody,
    OutputTextConfiguration,
    OutputToolUseConfiguration,
    SonicEventError,
    TextOutput,
    TokenCounts,
    TokenUsage,
    ToolUse,
    UnknownOutputEvent,
    UsageDetails,
    UsageEvent,
    decode_chunk_payload,
    decode_exception_payload,
    decode_output_event,
    encode_audio_input,
    encode_chunk_payload,
    encode_exception_payload,
    encode_output_event,
    generation_stage,
    is_barge_in_marker,
    output_event_name,
)

# Output events shaped as in AWS's Nova Sonic user guide, with a "<base64>" placeholder.
COMPLETION_START = (
    '{"event":{"completionStart":{"sessionId":"S","promptName":"P","completionId":"K"}}}'
)
CONTENT_START_TEXT = """{"event":{"contentStart":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X1","type":"TEXT",
  "role":"ASSISTANT","additionalModelFields":"{\\"generationStage\\":\\"SPECULATIVE\\"}",
  "textOutputConfiguration":{"mediaType":"text/plain"}}}}"""
TEXT_OUTPUT = """{"event":{"textOutput":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X1",
  "role":"ASSISTANT","content":"Your order shipped yesterday."}}}"""
CONTENT_END_TEXT = """{"event":{"contentEnd":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X1","type":"TEXT",
  "stopReason":"PARTIAL_TURN"}}}"""
CONTENT_START_AUDIO = """{"event":{"contentStart":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X2","type":"AUDIO",
  "role":"ASSISTANT","audioOutputConfiguration":{"mediaType":"audio/lpcm","sampleRateHertz":24000,
  "sampleSizeBits":16,"encoding":"base64","channelCount":1}}}}"""
AUDIO_OUTPUT = '{"event":{"audioOutput":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X2","content":"AAABAP//"}}}'
CONTENT_END_AUDIO = """{"event":{"contentEnd":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X2","type":"AUDIO",
  "stopReason":"END_TURN"}}}"""
USAGE_EVENT = """{"event":{"usageEvent":{"sessionId":"S","promptName":"P","completionId":"K",
  "details":{"delta":{"input":{"speechTokens":0,"textTokens":0},"output":{"speechTokens":0,"textTokens":0}},
             "total":{"input":{"speechTokens":0,"textTokens":0},"output":{"speechTokens":0,"textTokens":0}}},
  "totalInputTokens":0,"totalOutputTokens":0,"totalTokens":0}}}"""
COMPLETION_END = '{"event":{"completionEnd":{"sessionId":"S","promptName":"P","completionId":"K","stopReason":"END_TURN"}}}'
CONTENT_START_TOOL = """{"event":{"contentStart":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X3","type":"TOOL",
  "role":"TOOL","toolUseOutputConfiguration":{"mediaType":"application/json"}}}}"""
TOOL_USE = """{"event":{"toolUse":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X3",
  "toolName":"get_order","toolUseId":"U","content":"{\\"orderId\\":\\"42\\"}"}}}"""
CONTENT_END_TOOL = """{"event":{"contentEnd":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X3","type":"TOOL",
  "stopReason":"TOOL_USE"}}}"""

EXAMPLES = {
    "completionStart": COMPLETION_START,
    "contentStart-text": CONTENT_START_TEXT,
    "textOutput": TEXT_OUTPUT,
    "contentEnd-text": CONTENT_END_TEXT,
    "contentStart-audio": CONTENT_START_AUDIO,
    "audioOutput": AUDIO_OUTPUT,
    "contentEnd-audio": CONTENT_END_AUDIO,
    "usageEvent": USAGE_EVENT,
    "completionEnd": COMPLETION_END,
    "contentStart-tool": CONTENT_START_TOOL,
    "toolUse": TOOL_USE,
    "contentEnd-tool": CONTENT_END_TOOL,
}


class _Ids(TypedDict):
    session_id: str
    prompt_name: str
    completion_id: str


IDS: _Ids = {"session_id": "S", "prompt_name": "P", "completion_id": "K"}


@pytest.mark.parametrize("example", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_documented_example_decodes_and_re_encodes_to_the_same_json(example: str) -> None:
    body = decode_output_event(example)
    encoded = encode_output_event(body)
    assert json.loads(encoded) == json.loads(example)
    assert decode_output_event(encoded) == body


def test_documented_examples_cover_every_output_event() -> None:
    names = {output_event_name(decode_output_event(example)) for example in EXAMPLES.values()}
    assert names == OUTPUT_EVENT_NAMES


def test_documented_examples_decode_to_the_expected_values() -> None:
    assert decode_output_event(COMPLETION_START) == CompletionStart(**IDS)
    assert decode_output_event(CONTENT_START_TEXT) == OutputContentStart(
        **IDS,
        content_id="X1",
        type="TEXT",
        role="ASSISTANT",
        additional_model_fields='{"generationStage":"SPECULATIVE"}',
        text_output_configuration=OutputTextConfiguration(media_type="text/plain"),
    )
    assert decode_output_event(TEXT_OUTPUT) == TextOutput(
        **IDS, content_id="X1", role="ASSISTANT", content="Your order shipped yesterday."
    )
    assert decode_output_event(CONTENT_START_AUDIO) == OutputContentStart(
        **IDS,
        content_id="X2",
        type="AUDIO",
        role="ASSISTANT",
        audio_output_configuration=OutputAudioConfiguration(sample_rate_hertz=24000),
    )
    assert decode_output_event(AUDIO_OUTPUT) == AudioOutput(
        **IDS, content_id="X2", content=base64.b64decode("AAABAP//")
    )
    assert decode_output_event(CONTENT_END_AUDIO) == OutputContentEnd(
        **IDS, content_id="X2", type="AUDIO", stop_reason="END_TURN"
    )
    assert decode_output_event(COMPLETION_END) == CompletionEnd(**IDS, stop_reason="END_TURN")


def test_tool_use_example() -> None:
    start = decode_output_event(CONTENT_START_TOOL)
    assert isinstance(start, OutputContentStart)
    assert start.tool_use_output_configuration == OutputToolUseConfiguration()
    assert decode_output_event(TOOL_USE) == ToolUse(
        **IDS, content_id="X3", tool_name="get_order", tool_use_id="U", content='{"orderId":"42"}'
    )
    end = decode_output_event(CONTENT_END_TOOL)
    assert isinstance(end, OutputContentEnd)
    assert end.stop_reason == "TOOL_USE"


def test_usage_event_example_and_counts() -> None:
    assert decode_output_event(USAGE_EVENT) == UsageEvent(**IDS)
    usage = UsageEvent(
        **IDS,
        details=UsageDetails(
            delta=TokenUsage(input=TokenCounts(speech_tokens=3), output=TokenCounts(text_tokens=4)),
            total=TokenUsage(input=TokenCounts(speech_tokens=30, text_tokens=1)),
        ),
        total_input_tokens=31,
        total_output_tokens=4,
        total_tokens=35,
    )
    encoded = encode_output_event(usage)
    assert json.loads(encoded)["event"]["usageEvent"]["details"]["delta"]["input"] == {
        "speechTokens": 3,
        "textTokens": 0,
    }
    assert decode_output_event(encoded) == usage


# ----------------------------------------------------------------------------- tolerance


def test_unknown_fields_are_ignored_at_every_level() -> None:
    event = json.loads(CONTENT_START_AUDIO)
    event["event"]["contentStart"]["newField"] = {"x": [1, 2]}
    event["event"]["contentStart"]["audioOutputConfiguration"]["bitrate"] = 384
    event["traceId"] = "T"
    assert decode_output_event(json.dumps(event)) == decode_output_event(CONTENT_START_AUDIO)


def test_unknown_stop_reasons_and_roles_are_kept_as_strings() -> None:
    end = decode_output_event(CONTENT_END_TEXT.replace("PARTIAL_TURN", "SOMETHING_NEW"))
    assert isinstance(end, OutputContentEnd)
    assert end.stop_reason == "SOMETHING_NEW"


def test_unknown_output_event_is_tolerated() -> None:
    body = decode_output_event('{"event":{"speculativeThought":{"sessionId":"S","x":1}}}')
    assert body == UnknownOutputEvent(name="speculativeThought")
    assert output_event_name(body) == "speculativeThought"
    assert decode_output_event(encode_output_event(body)) == body


def test_unknown_event_next_to_a_known_one_yields_the_known_one() -> None:
    body = decode_output_event('{"event":{"futureEvent":{},' + COMPLETION_START[10:])
    assert body == CompletionStart(**IDS)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        pytest.param(
            '{"event":{"audioOutput":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X","content":"%%"}}}',
            "event.audioOutput.content",
            id="audio-not-base64",
        ),
        pytest.param(
            '{"event":{"textOutput":{"sessionId":"S","promptName":"P","completionId":"K","contentId":"X","content":"hi"}}}',
            "event.textOutput.role",
            id="missing-role",
        ),
        pytest.param(
            '{"event":{"usageEvent":{"sessionId":"S","promptName":"P","completionId":"K","totalTokens":"many"}}}',
            "event.usageEvent.totalTokens",
            id="wrong-type",
        ),
        pytest.param('{"event":{}}', "event", id="empty-envelope"),
        pytest.param('{"event":{"audioOutput":null}}', "event.audioOutput", id="null-body"),
        pytest.param(
            '{"event":{"completionStart":{"sessionId":"S","promptName":"P","completionId":"K"},'
            '"completionEnd":{"sessionId":"S","promptName":"P","completionId":"K","stopReason":"END_TURN"}}}',
            "event",
            id="two-known-events",
        ),
        pytest.param('{"evt":{}}', "event", id="no-envelope"),
    ],
)
def test_malformed_output_event_names_the_field(event: str, field: str) -> None:
    with pytest.raises(SonicEventError) as info:
        decode_output_event(event)
    assert info.value.field == field


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=200))
def test_decode_raises_only_the_project_error(data: bytes | str) -> None:
    try:
        body = decode_output_event(data)
    except SonicEventError:
        return
    assert output_event_name(body)


@settings(max_examples=100, deadline=None)
@given(pcm=st.binary(max_size=4096), content_id=st.text(max_size=30))
def test_audio_output_round_trips_for_any_bytes(pcm: bytes, content_id: str) -> None:
    body: OutputEventBody = AudioOutput(**IDS, content_id=content_id, content=pcm)
    assert decode_output_event(encode_output_event(body)) == body


# ----------------------------------------------------------------------------- two-step fields


def _content_start(additional: str | None) -> OutputContentStart:
    return OutputContentStart(
        **IDS, content_id="X", type="TEXT", role="ASSISTANT", additional_model_fields=additional
    )


@pytest.mark.parametrize(
    ("additional", "stage"),
    [
        ('{"generationStage":"SPECULATIVE"}', "SPECULATIVE"),
        ('{"generationStage":"FINAL"}', "FINAL"),
        ('{ "generationStage" : "FINAL", "other": [1] }', "FINAL"),
        ('{"generationStage":"DRAFT"}', None),
        ('{"generationStage":7}', None),
        ('{"somethingElse":true}', None),
        ("not json", None),
        ('["FINAL"]', None),
        ("", None),
        (None, None),
    ],
)
def test_generation_stage(additional: str | None, stage: str | None) -> None:
    assert generation_stage(_content_start(additional)) == stage


def test_generation_stage_of_the_documented_example() -> None:
    start = decode_output_event(CONTENT_START_TEXT)
    assert isinstance(start, OutputContentStart)
    assert generation_stage(start) == "SPECULATIVE"


@pytest.mark.parametrize(
    ("text", "marker"),
    [
        (BARGE_IN_MARKER, True),
        ('{ "interrupted" : true }', True),
        ('{"interrupted":true}', True),
        ('{\n  "interrupted": true\n}', True),
        ('Sure, I can help. { "interrupted" : true }', True),
        ('{"interrupted": true, "at": 1.5}', True),
        ('{"interrupted": false}', False),
        ('{"interrupted": "yes"}', False),
        ("I was interrupted yesterday.", False),
        ("{ interrupted }", False),
        ("", False),
        ("Your order shipped yesterday.", False),
    ],
)
def test_barge_in_marker(text: str, marker: bool) -> None:
    assert is_barge_in_marker(text) is marker


def test_barge_in_marker_arrives_in_a_text_output() -> None:
    body = encode_output_event(
        TextOutput(**IDS, content_id="X1", role="ASSISTANT", content=BARGE_IN_MARKER)
    )
    decoded = decode_output_event(body)
    assert isinstance(decoded, TextOutput)
    assert is_barge_in_marker(decoded.content)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=100))
def test_barge_in_marker_never_raises(text: str) -> None:
    assert is_barge_in_marker(text) in (True, False)


# ----------------------------------------------------------------------------- Bedrock payload parts


def test_chunk_payload_wraps_a_nova_event_in_base64() -> None:
    event = encode_audio_input("P", "A1", b"\x01\x02")
    payload = encode_chunk_payload(event)
    assert json.loads(payload) == {"bytes": base64.b64encode(event).decode()}
    assert decode_chunk_payload(payload) == event


@settings(max_examples=100, deadline=None)
@given(event=st.binary(max_size=1024))
def test_chunk_payload_round_trips(event: bytes) -> None:
    assert decode_chunk_payload(encode_chunk_payload(event)) == event


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"bytes": "%%"}', "bytes"),
        (b'{"byte": "AAAA"}', "bytes"),
        (b'{"bytes": 1}', "bytes"),
        (b"nope", None),
    ],
)
def test_malformed_chunk_payload_names_the_field(payload: bytes, field: str | None) -> None:
    with pytest.raises(SonicEventError) as info:
        decode_chunk_payload(payload)
    assert info.value.field == field


def test_exception_payload_round_trips() -> None:
    message = 'Model has timed out in processing the request "quoted"'
    payload = encode_exception_payload(message)
    assert json.loads(payload) == {"message": message}
    assert decode_exception_payload(payload) == message
    with pytest.raises(SonicEventError) as info:
        decode_exception_payload(b"{}")
    assert info.value.field == "message"
