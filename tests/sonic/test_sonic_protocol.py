"""The sans-I/O stream protocol: event order, batching, text units, close, and output decoding."""

from __future__ import annotations

import pytest

from actors.errors import LocalProtocolError
from actors.sonic import (
    AssistantText,
    HistoryTurn,
    SonicAudio,
    SonicAudioEnded,
    SonicAudioStarted,
    SonicBargeIn,
    SonicProtocol,
    SonicSettings,
    SonicTool,
    ToolUseRequested,
    UserTranscript,
)
from actors.sonic.protocol import MERGED_EVENT_SAMPLES
from actors.wire import (
    AudioInput,
    AudioOutput,
    CompletionEnd,
    InputContentStart,
    OutputAudioConfiguration,
    OutputContentEnd,
    OutputContentStart,
    PromptStart,
    SessionStart,
    TextInput,
    TextOutput,
    ToolUse,
    decode_input_event,
    encode_output_event,
    input_event_name,
)

IDS = {"session_id": "S", "prompt_name": "P", "completion_id": "K"}


def _names(events: list[bytes]) -> list[str]:
    return [input_event_name(decode_input_event(e)) for e in events]


def _ready(settings: SonicSettings | None = None) -> SonicProtocol:
    p = SonicProtocol(settings or SonicSettings(), prompt_name="P")
    p.prelude()
    p.mark_ready()
    return p


def test_prelude_has_session_prompt_and_system_text() -> None:
    p = SonicProtocol(
        SonicSettings(system_prompt="Be brief.", voice_id="tiffany", output_rate=16000)
    )
    events = [decode_input_event(e) for e in p.prelude()]
    assert [input_event_name(e) for e in events] == [
        "sessionStart",
        "promptStart",
        "contentStart",
        "textInput",
        "contentEnd",
    ]
    session, prompt, start, text = events[0], events[1], events[2], events[3]
    assert isinstance(session, SessionStart)
    assert session.turn_detection_configuration is not None
    assert isinstance(prompt, PromptStart)
    assert prompt.audio_output_configuration.voice_id == "tiffany"
    assert prompt.audio_output_configuration.sample_rate_hertz == 16000
    assert prompt.tool_configuration is None  # no tools: no tool configuration at all
    assert isinstance(start, InputContentStart)
    assert (start.type, start.role, start.interactive) == ("TEXT", "SYSTEM", False)
    assert isinstance(text, TextInput)
    assert text.content == "Be brief."


def test_tools_are_configured_when_present() -> None:
    tool = SonicTool(name="get_order", description="Look up", input_schema_json='{"type":"object"}')
    prompt = decode_input_event(SonicProtocol(SonicSettings(tools=(tool,))).prelude()[1])
    assert isinstance(prompt, PromptStart)
    assert prompt.tool_configuration is not None
    assert prompt.tool_configuration.tools[0].tool_spec.input_schema.json == '{"type":"object"}'


def test_audio_waits_for_ready_and_history_must_start_with_user() -> None:
    p = SonicProtocol(SonicSettings())
    p.prelude()
    with pytest.raises(LocalProtocolError, match="await_output"):
        p.open_audio()
    with pytest.raises(LocalProtocolError, match="USER"):
        p.history([HistoryTurn(role="ASSISTANT", text="hi")])
    events = p.history(
        [HistoryTurn(role="USER", text="a"), HistoryTurn(role="ASSISTANT", text="b")]
    )
    assert _names(events) == ["contentStart", "textInput", "contentEnd"] * 2
    p.mark_ready()
    start = decode_input_event(p.open_audio()[0])
    assert isinstance(start, InputContentStart)
    assert (start.type, start.interactive) == ("AUDIO", True)
    with pytest.raises(LocalProtocolError):
        p.history([])


@pytest.mark.parametrize("batch_ms", [20, 40, 60])
def test_audio_is_batched_exactly(batch_ms: int) -> None:
    p = _ready(SonicSettings(audio_batch_ms=batch_ms))
    p.open_audio()
    frame = bytes(range(256)) * 2 + bytes(128)  # 640 bytes = 20 ms at 16 kHz
    events: list[bytes] = []
    for _ in range(9):
        events += p.audio(frame)
    sizes = [len(e.content) for e in map(decode_input_event, events) if isinstance(e, AudioInput)]
    assert sizes == [640 * batch_ms // 20] * (9 * 20 // batch_ms)
    tail = p.flush_audio()
    assert len(tail) == (0 if 9 * 20 % batch_ms == 0 else 1)
    assert p.audio_bytes_sent == 9 * 640


@pytest.mark.parametrize(
    ("rate", "frames", "sizes_ms"),
    [
        (16000, 1, [20]),  # one frame: one event, as it arrived
        (16000, 5, [60, 40]),  # 1024 samples hold three 20 ms frames at 16 kHz
        (16000, 20, [60] * 6 + [40]),
        (8000, 5, [100]),
        (24000, 5, [40, 40, 20]),
    ],
)
def test_several_frames_at_once_go_in_events_of_up_to_1024_samples(
    rate: int, frames: int, sizes_ms: list[int]
) -> None:
    p = _ready(SonicSettings(input_rate=rate))
    p.open_audio()
    per_ms = rate * 2 // 1000
    pcm = bytes(i % 251 for i in range(frames * 20 * per_ms))
    audio = [e for e in map(decode_input_event, p.audio(pcm)) if isinstance(e, AudioInput)]
    assert [len(e.content) // per_ms for e in audio] == sizes_ms
    assert all(len(e.content) // 2 <= MERGED_EVENT_SAMPLES for e in audio)
    assert b"".join(e.content for e in audio) == pcm  # in order, nothing lost or repeated
    assert p.audio_bytes_sent == len(pcm)
    assert p.flush_audio() == []


def test_text_units_and_orderly_close() -> None:
    p = _ready()
    p.open_audio()
    p.audio(b"\x01\x00" * 100)  # a partial batch stays pending
    assert _names(p.user_text("digits 1 2 3")) == ["contentStart", "textInput", "contentEnd"]
    assert _names(p.tool_result("U", '{"ok":true}')) == ["contentStart", "toolResult", "contentEnd"]
    assert _names(p.close()) == ["audioInput", "contentEnd", "promptEnd", "sessionEnd"]
    assert p.close() == []
    with pytest.raises(LocalProtocolError):
        p.audio(b"\x00\x00")


def _out(body: object) -> bytes:
    return encode_output_event(body)  # type: ignore[arg-type]


def _start(cid: str, type_: str, role: str, stage: str | None = None) -> bytes:
    fields = None if stage is None else f'{{"generationStage":"{stage}"}}'
    audio = OutputAudioConfiguration() if type_ == "AUDIO" else None
    return _out(
        OutputContentStart(
            **IDS,
            content_id=cid,
            type=type_,
            role=role,
            additional_model_fields=fields,
            audio_output_configuration=audio,
        )
    )


def _end(cid: str, type_: str, reason: str) -> bytes:
    return _out(OutputContentEnd(**IDS, content_id=cid, type=type_, stop_reason=reason))


def _text(cid: str, role: str, content: str) -> bytes:
    return _out(TextOutput(**IDS, content_id=cid, role=role, content=content))


def _audio(cid: str) -> bytes:
    return _out(AudioOutput(**IDS, content_id=cid, content=b"\x00\x01" * 240))


def _feed(p: SonicProtocol, *frames: bytes) -> list[object]:
    events: list[object] = []
    for frame in frames:
        events += p.receive(frame)
    return events


def test_a_turn_decodes_into_internal_events() -> None:
    p = _ready()
    events = _feed(
        p,
        _start("u", "TEXT", "USER", "FINAL"),
        _text("u", "USER", "  "),
        _text("u", "USER", "where is my order"),
        _end("u", "TEXT", "PARTIAL_TURN"),
        _start("s", "TEXT", "ASSISTANT", "SPECULATIVE"),
        _text("s", "ASSISTANT", "It shipped."),
        _end("s", "TEXT", "PARTIAL_TURN"),
        _start("a", "AUDIO", "ASSISTANT"),
        _audio("a"),
        _audio("a"),
        _end("a", "AUDIO", "END_TURN"),
        _start("f", "TEXT", "ASSISTANT", "FINAL"),
        _text("f", "ASSISTANT", "It shipped."),
        _end("f", "TEXT", "END_TURN"),
        _out(ToolUse(**IDS, content_id="t", tool_name="get_order", tool_use_id="U", content="{}")),
        _out(CompletionEnd(**IDS, stop_reason="END_TURN")),
    )
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "UserTranscript",
        "AssistantText",
        "SonicAudioStarted",
        "SonicAudio",
        "SonicAudio",
        "SonicAudioEnded",
        "AssistantText",
        "ToolUseRequested",
        "CompletionEnded",
    ]
    assert events[0] == UserTranscript(text="where is my order", final=True)
    assert events[1] == AssistantText(text="It shipped.", stage="SPECULATIVE", turn_id=1)
    assert events[2] == SonicAudioStarted(turn_id=1, rate=24000)
    assert isinstance(events[3], SonicAudio)
    assert events[5] == SonicAudioEnded(turn_id=1, stop_reason="END_TURN")
    assert events[6] == AssistantText(text="It shipped.", stage="FINAL", turn_id=1)
    assert events[7] == ToolUseRequested(tool_use_id="U", name="get_order", arguments_json="{}")


def test_both_barge_in_signals_make_one_barge_in_and_late_audio_is_dropped() -> None:
    p = _ready()
    events = _feed(
        p,
        _start("s", "TEXT", "ASSISTANT", "SPECULATIVE"),
        _text("s", "ASSISTANT", "A long answer"),
        _end("s", "TEXT", "PARTIAL_TURN"),
        _start("a", "AUDIO", "ASSISTANT"),
        _audio("a"),
        _text("s", "ASSISTANT", '{ "interrupted" : true }'),
        _audio("a"),
        _end("a", "AUDIO", "END_TURN"),
        _start("f", "TEXT", "ASSISTANT", "FINAL"),
        _text("f", "ASSISTANT", "A long"),
        _end("f", "TEXT", "INTERRUPTED"),
    )
    barge = [e for e in events if isinstance(e, SonicBargeIn)]
    assert barge == [SonicBargeIn(turn_id=1, source="marker")]
    ended = [e for e in events if isinstance(e, SonicAudioEnded)]
    assert ended == [SonicAudioEnded(turn_id=1, stop_reason="INTERRUPTED")]
    assert sum(isinstance(e, SonicAudio) for e in events) == 1
    assert p.statistics()["audio_dropped"] == 1
    # The next answer is a new turn and can be interrupted again.
    more = _feed(
        p,
        _start("s2", "TEXT", "ASSISTANT", "SPECULATIVE"),
        _start("a2", "AUDIO", "ASSISTANT"),
        _end("a2", "AUDIO", "INTERRUPTED"),
    )
    assert SonicBargeIn(turn_id=2, source="interrupted") in more


def test_barge_in_after_audio_end_turn_is_still_reported() -> None:
    # pipecat 757667fd4: the audio block ends END_TURN first, then FINAL text ends INTERRUPTED.
    p = _ready()
    events = _feed(
        p,
        _start("a", "AUDIO", "ASSISTANT"),
        _audio("a"),
        _end("a", "AUDIO", "END_TURN"),
        _start("f", "TEXT", "ASSISTANT", "FINAL"),
        _text("f", "ASSISTANT", "partial"),
        _end("f", "TEXT", "INTERRUPTED"),
    )
    assert [e for e in events if isinstance(e, SonicBargeIn)] == [
        SonicBargeIn(turn_id=1, source="interrupted")
    ]
