"""The emulator through the REAL Bedrock SDK client (CRT HTTP/2 over TLS, trusting the emulator CA)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from aws_sdk_bedrock_runtime import models

from actors.wire import (
    BARGE_IN_MARKER,
    AudioOutput,
    CompletionEnd,
    CompletionStart,
    OutputContentEnd,
    OutputContentStart,
    TextOutput,
    ToolUse,
    UsageEvent,
    generation_stage,
)
from gateway.emulator import (
    CHAT_HISTORY_MESSAGE,
    SESSION_CAP_MESSAGE,
    Emulator,
    EmulatorSettings,
    Fault,
    ModelScript,
    ScriptedToolUse,
    ScriptedTurn,
    run_emulator,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

FAST = EmulatorSettings(
    answer_ms=400, think_ms=20, end_of_turn_silence_ms=300, close_grace_s=2.0, output_chunk_ms=100
)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with run_emulator(FAST) as emu:
        yield emu


@pytest.fixture
def new_client(emulator: Emulator, sonic_client_class: Any) -> Any:
    clients: list[Any] = []

    def make(**kwargs: Any) -> Any:
        client = sonic_client_class(emulator.endpoint_uri, str(emulator.ca_path), **kwargs)
        clients.append(client)
        return client

    return make


async def caller_turn(client: Any, pcm: Any, speech_ms: int = 300, silence_ms: int = 400) -> None:
    await client.audio(
        pcm.speech(client.in_rate, speech_ms) + pcm.silence(client.in_rate, silence_ms)
    )


def kinds(events: list[Any]) -> list[str]:
    out = []
    for e in events:
        match e:
            case OutputContentStart():
                out.append(f"start:{e.type}:{e.role}:{generation_stage(e) or '-'}")
            case OutputContentEnd():
                out.append(f"end:{e.type}:{e.stop_reason}")
            case TextOutput():
                out.append(f"text:{e.role}")
            case AudioOutput():
                if not out or out[-1] != "audio":
                    out.append("audio")
            case _:
                out.append(type(e).__name__)
    return out


async def test_full_session_default_persona(
    emulator: Emulator, new_client: Any, pcm_helpers: Any
) -> None:
    client = new_client(in_rate=16000, out_rate=24000)
    try:
        await client.start()
        await caller_turn(client, pcm_helpers)
        await client.receive_until(lambda e: isinstance(e, UsageEvent))
        await client.finish()
        await client.drain()
    finally:
        await client.close()
    assert kinds(client.events) == [
        "CompletionStart",
        "start:TEXT:USER:FINAL",
        "text:USER",
        "end:TEXT:PARTIAL_TURN",
        "start:TEXT:ASSISTANT:SPECULATIVE",
        "text:ASSISTANT",
        "end:TEXT:PARTIAL_TURN",
        "start:AUDIO:ASSISTANT:-",
        "audio",
        "end:AUDIO:END_TURN",
        "start:TEXT:ASSISTANT:FINAL",
        "text:ASSISTANT",
        "end:TEXT:END_TURN",
        "UsageEvent",
        "CompletionEnd",
    ]
    audio = b"".join(e.content for e in client.events if isinstance(e, AudioOutput))
    assert len(audio) == 2 * 24000 * FAST.answer_ms // 1000
    start = client.events[0]
    assert isinstance(start, CompletionStart)
    assert start.prompt_name == client.prompt
    assert all(
        getattr(e, "completion_id", start.completion_id) == start.completion_id
        for e in client.events
    )
    assert client.events[2].content == "caller turn 1"
    usage = next(e for e in client.events if isinstance(e, UsageEvent))
    assert usage.total_tokens > 0
    assert isinstance(client.events[-1], CompletionEnd)
    (session,) = emulator.sessions
    assert session.end_reason == "closed"
    assert session.input_rate == 16000
    assert session.output_rate == 24000
    assert session.caller_pcm_bytes == 2 * 16000 * 700 // 1000
    assert session.input_events[:3] == ["sessionStart", "promptStart", "contentStart"]
    assert session.input_events[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert session.turns == 1
    assert session.transcripts == ["caller turn 1"]


async def test_8k_both_ways(emulator: Emulator, new_client: Any, pcm_helpers: Any) -> None:
    client = new_client(in_rate=8000, out_rate=8000)
    try:
        await client.start()
        await caller_turn(client, pcm_helpers)
        await client.receive_until(lambda e: isinstance(e, UsageEvent))
    finally:
        await client.close()
    audio = b"".join(e.content for e in client.events if isinstance(e, AudioOutput))
    assert len(audio) == 2 * 8000 * FAST.answer_ms // 1000


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("audio_in_text", CHAT_HISTORY_MESSAGE),
        ("history_not_user", "history must start with a USER"),
        ("unknown_field", "unknown field"),
        ("audio_without_block", "without an open AUDIO"),
        ("content_end_unknown", "unknown contentName"),
    ],
)
async def test_validation_errors_raise_validation_exception(
    emulator: Emulator, new_client: Any, pcm_helpers: Any, scenario: str, message: str
) -> None:
    from actors.wire import AudioInput, InputContentEnd, InputContentStart, TextConfiguration

    client = new_client()
    try:
        if scenario == "history_not_user":
            await client.start(history=[("ASSISTANT", "hello")])
        else:
            await client.start()
        if scenario == "audio_in_text":
            await client.send(
                InputContentStart(
                    prompt_name=client.prompt,
                    content_name="late-text",
                    type="TEXT",
                    interactive=True,
                    role="USER",
                    text_input_configuration=TextConfiguration(),
                )
            )
            await client.audio(pcm_helpers.silence(16000, 20))
        elif scenario == "unknown_field":
            await client.send_raw(b'{"event":{"promptEnd":{"promptName":"x","bogus":1}}}')
        elif scenario == "audio_without_block":
            await client.send(
                AudioInput(prompt_name=client.prompt, content_name="nope", content=b"\0\0")
            )
        elif scenario == "content_end_unknown":
            await client.send(InputContentEnd(prompt_name=client.prompt, content_name="nope"))
        with pytest.raises(models.ValidationException, match=message):
            await client.drain(limit_s=5)
    finally:
        await client.close()
    assert emulator.sessions[-1].end_reason == "validationException"


EXCEPTIONS = {
    "validationException": models.ValidationException,
    "modelTimeoutException": models.ModelTimeoutException,
    "throttlingException": models.ThrottlingException,
    "internalServerException": models.InternalServerException,
    "modelStreamErrorException": models.ModelStreamErrorException,
    "serviceUnavailableException": models.ServiceUnavailableException,
}


@pytest.mark.parametrize("kind", list(EXCEPTIONS))
async def test_each_exception_fault_raises_the_typed_sdk_error(
    emulator: Emulator, new_client: Any, kind: Any
) -> None:
    emulator.inject_fault(Fault(kind=kind, after_ms=50))
    client = new_client()
    try:
        await client.start()
        with pytest.raises(EXCEPTIONS[kind]):
            await client.drain(limit_s=5)
    finally:
        await client.close()
    assert emulator.sessions[-1].end_reason == kind


async def test_fault_on_the_current_session(emulator: Emulator, new_client: Any) -> None:
    client = new_client()
    try:
        await client.start()
        # The session is running once await_output() resolved (inside start()).
        assert emulator.statistics()["active"] == 1
        emulator.inject_fault(
            Fault(kind="throttlingException", message="slow down"), target="current"
        )
        with pytest.raises(models.ThrottlingException, match="slow down"):
            await client.drain(limit_s=5)
    finally:
        await client.close()


async def test_reset_ends_the_stream_without_completion_end(
    emulator: Emulator, new_client: Any, pcm_helpers: Any
) -> None:
    # The SDK (awscrt aio) reports RST_STREAM as a plain end of stream: receive() returns None.
    emulator.inject_fault(Fault(kind="reset", after_ms=50))
    client = new_client()
    try:
        await client.start()
        await client.drain(limit_s=5)
    finally:
        await client.close()
    assert not any(isinstance(e, CompletionEnd) for e in client.events)
    assert emulator.sessions[-1].end_reason == "reset"


async def test_slow_first_byte_delays_await_output(emulator: Emulator, new_client: Any) -> None:
    emulator.inject_fault(Fault(kind="slow_first_byte", after_ms=700))
    client = new_client()
    try:
        began = anyio.current_time()
        await client.start()  # includes await_output()
        assert anyio.current_time() - began >= 0.65
    finally:
        await client.close()
    assert "slow_first_byte" in emulator.sessions[-1].faults


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_stall_is_only_seen_by_a_timeout(
    emulator: Emulator, new_client: Any, pcm_helpers: Any
) -> None:
    emulator.inject_fault(Fault(kind="stall", after_ms=0))
    client = new_client()
    try:
        await client.start()
        await caller_turn(client, pcm_helpers)
        with pytest.raises(TimeoutError):
            await client.drain(limit_s=1.5)
    finally:
        await client.close()
    assert client.events == []
    assert emulator.sessions[-1].end_reason == "stall"


async def test_session_cap_ends_with_model_timeout(
    new_client: Any, sonic_client_class: Any
) -> None:
    async with run_emulator(EmulatorSettings(session_cap_s=0.8)) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        try:
            await client.start()
            began = anyio.current_time()
            with pytest.raises(models.ModelTimeoutException, match=SESSION_CAP_MESSAGE):
                await client.drain(limit_s=5)
            assert anyio.current_time() - began >= 0.5
        finally:
            await client.close()
        assert emu.sessions[-1].end_reason == "modelTimeoutException"


async def test_barge_in_during_playback(sonic_client_class: Any, pcm_helpers: Any) -> None:
    settings = EmulatorSettings(
        answer_ms=3000, think_ms=0, end_of_turn_silence_ms=300, realtime_factor=2.0
    )
    async with run_emulator(settings) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        try:
            await client.start()
            await caller_turn(client, pcm_helpers)
            await client.receive_until(lambda e: isinstance(e, AudioOutput))
            # The caller talks over the answer (well inside its 3 s playback window).
            await client.audio(pcm_helpers.speech(16000, 200))
            await client.receive_until(
                lambda e: isinstance(e, OutputContentEnd) and e.stop_reason == "INTERRUPTED"
            )
            await client.audio(pcm_helpers.speech(16000, 100) + pcm_helpers.silence(16000, 400))
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
        finally:
            await client.close()
    seq = kinds(client.events)
    cut = seq.index("end:TEXT:INTERRUPTED")
    assert seq[cut - 4 : cut + 1] == [
        "audio",
        "end:AUDIO:END_TURN",
        "start:TEXT:ASSISTANT:FINAL",
        "text:ASSISTANT",
        "end:TEXT:INTERRUPTED",
    ]
    marker = [
        e for e in client.events if isinstance(e, TextOutput) and e.content == BARGE_IN_MARKER
    ]
    assert len(marker) == 1
    # The interrupted answer was cut short; the next turn is answered in full.
    after = seq[cut + 1 :]
    assert after[:2] == ["start:TEXT:USER:FINAL", "text:USER"]
    first_audio = [
        e for e in client.events[: client.events.index(marker[0])] if isinstance(e, AudioOutput)
    ]
    assert sum(len(e.content) for e in first_audio) < 2 * 24000 * 3
    assert emu.sessions[-1].barge_ins == 1
    assert emu.sessions[-1].transcripts == ["caller turn 1", "caller turn 2"]


async def test_scripted_turns_with_tool_use(sonic_client_class: Any, pcm_helpers: Any) -> None:
    script = ModelScript(
        turns=[
            ScriptedTurn(
                transcript="where is my order",
                reply="It shipped yesterday.",
                answer_ms=200,
                tool_use=ScriptedToolUse(name="get_order", arguments={"orderId": "42"}),
            ),
            ScriptedTurn(transcript="thanks", reply="You are welcome.", answer_ms=100),
        ]
    )
    async with run_emulator(FAST, script) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        try:
            await client.start()
            await caller_turn(client, pcm_helpers)
            tool = await client.receive_until(lambda e: isinstance(e, ToolUse))
            assert tool.tool_name == "get_order"
            assert tool.content == '{"orderId":"42"}'
            await client.tool_result(tool.tool_use_id, '{"status":"shipped"}')
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
            await caller_turn(client, pcm_helpers)
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
            await caller_turn(client, pcm_helpers)  # past the script: the default persona
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
            await client.finish()
            await client.drain()
        finally:
            await client.close()
    seq = kinds(client.events)
    assert seq[seq.index("start:TOOL:TOOL:-") : seq.index("start:TOOL:TOOL:-") + 3] == [
        "start:TOOL:TOOL:-",
        "ToolUse",
        "end:TOOL:TOOL_USE",
    ]
    texts = [(e.role, e.content) for e in client.events if isinstance(e, TextOutput)]
    assert ("USER", "where is my order") in texts
    assert ("ASSISTANT", "It shipped yesterday.") in texts
    assert ("ASSISTANT", "You are welcome.") in texts
    (session,) = emu.sessions
    assert session.tool_results == [(tool.tool_use_id, '{"status":"shipped"}')]
    assert session.transcripts == ["where is my order", "thanks", "caller turn 3"]
    assert session.end_reason == "closed"


async def test_scripted_turn_fault(sonic_client_class: Any, pcm_helpers: Any) -> None:
    script = ModelScript(turns=[ScriptedTurn(fault=Fault(kind="modelStreamErrorException"))])
    async with run_emulator(FAST, script) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        try:
            await client.start()
            await caller_turn(client, pcm_helpers)
            with pytest.raises(models.ModelStreamErrorException):
                await client.drain(limit_s=5)
        finally:
            await client.close()


async def test_wrong_path_method_content_type_and_model(
    emulator: Emulator, sign_headers: Any
) -> None:
    context = ssl.create_default_context(cafile=str(emulator.ca_path))
    async with httpx.AsyncClient(
        verify=context, base_url=emulator.endpoint_uri, http2=True
    ) as http:
        assert (await http.post("/model/x/invoke", content=b"")).status_code == 404
        path = "/model/x/invoke-with-bidirectional-stream"
        response = await http.get(path)
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        url = emulator.endpoint_uri + path
        json = {"content-type": "application/json"}
        response = await http.post(path, content=b"", headers=sign_headers(url, json))
        assert response.status_code == 400
        assert response.headers["x-amzn-errortype"].startswith("ValidationException:")
        eventstream = {"content-type": "application/vnd.amazon.eventstream"}
        response = await http.post(path, content=b"", headers=sign_headers(url, eventstream))
        assert response.status_code == 400
        assert response.headers["x-amzn-errortype"].startswith("ValidationException:")
        assert response.json() == {"message": "The provided model identifier is invalid."}
    assert emulator.statistics()["rejected_requests"] == 4
    assert emulator.sessions == []


async def test_interactive_user_text_is_recorded_and_answered(
    sonic_client_class: Any, pcm_helpers: Any
) -> None:
    script = ModelScript(
        turns=[ScriptedTurn(reply="You entered one two three four.", answer_ms=200)]
    )
    async with run_emulator(FAST, script) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        try:
            await client.start(history=[("USER", "an earlier question")])
            await client.audio(pcm_helpers.silence(client.in_rate, 100))
            await client.text_block("USER", "DTMF: 1234", interactive=True)
            await client.audio(pcm_helpers.silence(client.in_rate, 100))  # the audio block is open
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
            await client.finish()
            await client.drain()
        finally:
            await client.close()
    texts = [(e.role, e.content) for e in client.events if isinstance(e, TextOutput)]
    assert ("ASSISTANT", "You entered one two three four.") in texts
    assert not [t for t in texts if t[0] == "USER"]  # nothing to transcribe
    (session,) = emu.sessions
    assert session.text_inputs == ["DTMF: 1234"]  # history before the audio block is not input
    assert session.end_reason == "closed"
