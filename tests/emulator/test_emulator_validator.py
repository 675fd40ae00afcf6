"""SessionValidator: the service's ordering rules, without I/O."""

from __future__ import annotations

import pytest

from actors.wire import (
    AudioInput,
    AudioInputConfiguration,
    AudioOutputConfiguration,
    InferenceConfiguration,
    InputContentEnd,
    InputContentStart,
    InputEventBody,
    PromptEnd,
    PromptStart,
    SessionEnd,
    SessionStart,
    TextConfiguration,
    TextInput,
    ToolResultInput,
    ToolResultInputConfiguration,
)
from gateway.emulator import CHAT_HISTORY_MESSAGE
from gateway.emulator.validator import SessionValidator, SessionViolation

P = "P"


def session_start() -> SessionStart:
    return SessionStart(inference_configuration=InferenceConfiguration())


def prompt_start(rate: int = 24000) -> PromptStart:
    return PromptStart(
        prompt_name=P,
        text_output_configuration=TextConfiguration(),
        audio_output_configuration=AudioOutputConfiguration(
            voice_id="matthew", sample_rate_hertz=rate
        ),
    )


def text_start(name: str, role: str = "SYSTEM") -> InputContentStart:
    return InputContentStart(
        prompt_name=P,
        content_name=name,
        type="TEXT",
        interactive=False,
        role=role,  # type: ignore[arg-type]
        text_input_configuration=TextConfiguration(),
    )


def audio_start(name: str = "A", rate: int = 8000) -> InputContentStart:
    return InputContentStart(
        prompt_name=P,
        content_name=name,
        type="AUDIO",
        interactive=True,
        role="USER",
        audio_input_configuration=AudioInputConfiguration(sample_rate_hertz=rate),
    )


def text(name: str, role: str = "SYSTEM") -> list[InputEventBody]:
    return [
        text_start(name, role),
        TextInput(prompt_name=P, content_name=name, content="hi"),
        InputContentEnd(prompt_name=P, content_name=name),
    ]


def audio(name: str = "A") -> AudioInput:
    return AudioInput(prompt_name=P, content_name=name, content=b"\x00\x00")


def feed_all(events: list[InputEventBody]) -> SessionValidator:
    validator = SessionValidator()
    for event in events:
        validator.feed(event)
    return validator


def test_a_full_session_passes_and_records_rates() -> None:
    tool_start = InputContentStart(
        prompt_name=P,
        content_name="R",
        type="TOOL",
        interactive=False,
        role="TOOL",
        tool_result_input_configuration=ToolResultInputConfiguration(tool_use_id="U"),
    )
    validator = feed_all(
        [
            session_start(),
            prompt_start(16000),
            *text("S"),
            *text("H1", "USER"),
            *text("H2", "ASSISTANT"),
            audio_start(rate=8000),
            audio(),
            tool_start,
            ToolResultInput(prompt_name=P, content_name="R", content="{}"),
            InputContentEnd(prompt_name=P, content_name="R"),
            audio(),
            *text("X", "USER"),  # cross-modal text while the audio block stays open
            audio(),
            InputContentEnd(prompt_name=P, content_name="A"),
            PromptEnd(prompt_name=P),
            SessionEnd(),
        ]
    )
    assert validator.input_rate == 8000
    assert validator.output_rate == 16000
    assert validator.session_ended


def test_tool_blocks_remember_their_tool_use_id() -> None:
    validator = feed_all([session_start(), prompt_start()])
    validator.feed(
        InputContentStart(
            prompt_name=P,
            content_name="R",
            type="TOOL",
            interactive=False,
            role="TOOL",
            tool_result_input_configuration=ToolResultInputConfiguration(tool_use_id="U"),
        )
    )
    validator.feed(ToolResultInput(prompt_name=P, content_name="R", content="{}"))
    assert validator.last_block is not None
    assert validator.last_block.tool_use_id == "U"


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([prompt_start()], "first event must be sessionStart"),
        ([session_start(), session_start()], "duplicate sessionStart"),
        ([session_start(), prompt_start(), prompt_start()], "only one promptStart"),
        ([session_start(), text_start("S")], "outside a prompt"),
        ([session_start(), prompt_start(), text_start("S"), text_start("S")], "already open"),
        (
            [session_start(), prompt_start(), InputContentEnd(prompt_name=P, content_name="nope")],
            "unknown contentName",
        ),
        ([session_start(), prompt_start(), audio()], "without an open AUDIO"),
        (
            [session_start(), prompt_start(), audio_start(), text_start("T", "USER"), audio()],
            CHAT_HISTORY_MESSAGE,
        ),
        (
            [session_start(), prompt_start(), text_start("T"), audio_start(), audio()],
            CHAT_HISTORY_MESSAGE,
        ),
        (
            [session_start(), prompt_start(), *text("S"), text_start("H", "ASSISTANT")],
            "must start with a USER",
        ),
        ([session_start(), prompt_start(), audio_start(), PromptEnd(prompt_name=P)], "open"),
        ([session_start(), prompt_start(), SessionEnd()], "sessionEnd before promptEnd"),
        ([session_start(), SessionEnd(), session_start()], "after sessionEnd"),
        (
            [
                session_start(),
                prompt_start(),
                TextInput(prompt_name="Q", content_name="S", content="x"),
            ],
            "unknown promptName",
        ),
        ([session_start(), prompt_start(), audio_start("A"), audio_start("B")], "already open"),
    ],
)
def test_violations_name_the_rule(events: list[InputEventBody], message: str) -> None:
    validator = feed_all(events[:-1])
    with pytest.raises(SessionViolation, match=message) as caught:
        validator.feed(events[-1])
    assert caught.value.message


def test_chat_history_message_is_exactly_the_services() -> None:
    validator = feed_all([session_start(), prompt_start(), audio_start(), text_start("T", "USER")])
    with pytest.raises(SessionViolation) as caught:
        validator.feed(audio())
    assert caught.value.message == "Chat history should be sent completely before streaming audio."
