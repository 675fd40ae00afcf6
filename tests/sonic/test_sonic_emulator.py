"""The real SDK client (CRT HTTP/2, SigV4, event-stream) against the Nova Sonic emulator.

Every test opens real TLS + HTTP/2 connections to a local emulator; nothing reaches the internet.
Audio is sent in real time only where turn detection needs it, with short answers and think times.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import pytest

import audiocodec
from actors.errors import SonicFatalError, SonicRetryableError
from actors.sonic import (
    AssistantText,
    HandedOver,
    HistoryTurn,
    PoolSettings,
    SessionClosed,
    SonicAudio,
    SonicAudioEnded,
    SonicConnector,
    SonicEvent,
    SonicSettings,
    SonicStream,
    StaticCredentials,
    UserTranscript,
)
from actors.wire import InputContentStart, TextConfiguration, encode_audio_input, encode_input_event
from gateway.emulator import EmulatorSettings, Fault, run_emulator
from gateway.emulator.session import SessionRunner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from gateway.emulator import Emulator

pytestmark = pytest.mark.anyio

FRAME = 640  # 20 ms at 16 kHz
FAST = {"think_ms": 30, "answer_ms": 300, "end_of_turn_silence_ms": 300.0}


@contextlib.asynccontextmanager
async def sonic_env(
    emulator: dict[str, Any] | None = None,
    pool: PoolSettings | None = None,
    **sonic: Any,
) -> AsyncIterator[tuple[Emulator, SonicConnector]]:
    async with run_emulator(EmulatorSettings(**(FAST | (emulator or {})))) as emu:
        settings = SonicSettings(
            endpoint_uri=emu.endpoint_uri, ca_bundle=Path(emu.ca_path), **sonic
        )
        async with SonicConnector(
            settings, credentials=StaticCredentials(), pool=pool or PoolSettings(size=0)
        ) as connector:
            yield emu, connector


def caller_audio(ms: int, seed: int) -> bytes:
    """Speech then quiet noise (not digital silence, so every slice of it is unique)."""
    speech = audiocodec.speech_like(16000, min(ms, 700), seed)
    rng = np.random.default_rng(seed + 1000)
    quiet = rng.integers(-20, 20, size=16 * (ms - min(ms, 700)), dtype=np.int16).tobytes()
    return speech + quiet


async def feed_realtime(conv: Any, pcm: bytes) -> None:
    for offset in range(0, len(pcm), FRAME):
        await conv.send_audio(pcm[offset : offset + FRAME])
        await anyio.sleep(0.02)


async def collect_until(conv: Any, stop: type, seconds: float) -> list[SonicEvent]:
    events: list[SonicEvent] = []
    with anyio.move_on_after(seconds):
        async for event in conv.events:
            events.append(event)
            if isinstance(event, stop):
                break
    return events


async def test_full_session_and_orderly_close() -> None:
    async with sonic_env() as (emu, connector):
        async with connector.conversation() as conv:
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed_realtime, conv, caller_audio(1200, 1))
                events = await collect_until(conv, SonicAudioEnded, 10)
                tg.cancel_scope.cancel()
            final = await collect_until(conv, AssistantText, 5)
            await conv.aclose()
            rest = [e async for e in conv.events]
        events += final
        assert any(isinstance(e, UserTranscript) and e.final for e in events)
        assert any(isinstance(e, SonicAudio) for e in events)
        assert AssistantText in {type(e) for e in final}
        assert isinstance(rest[-1], SessionClosed)
        assert [t.role for t in conv.history_snapshot()] == ["USER", "ASSISTANT"]
        record = emu.sessions[0]
        assert record.input_events[:5] == [
            "sessionStart",
            "promptStart",
            "contentStart",
            "textInput",
            "contentEnd",
        ]
        assert record.input_events[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
        assert record.end_reason == "closed"
        assert record.caller_pcm_bytes == conv.statistics()["caller_audio_bytes"]


async def _run_until_failure(stream: SonicStream, seconds: float = 5.0) -> BaseException:
    async def deliver(_: SonicStream, __: list[SonicEvent]) -> None:
        return None

    with anyio.fail_after(seconds):
        try:
            await stream.run(deliver)
        except (SonicRetryableError, SonicFatalError) as exc:
            return exc
    raise AssertionError("the stream ended without an error")


def _text_start(stream: SonicStream, role: str) -> bytes:
    return encode_input_event(
        InputContentStart(
            prompt_name=stream.protocol.prompt_name,
            content_name="bad-block",
            type="TEXT",
            interactive=False,
            role=role,  # type: ignore[arg-type]
            text_input_configuration=TextConfiguration(),
        )
    )


@pytest.mark.parametrize(
    "case", ["audio_inside_text", "history_starts_with_assistant", "unknown_field"]
)
async def test_validation_of_our_request_is_fatal(case: str) -> None:
    async with sonic_env() as (_, connector):
        stream = await connector.open_stream()
        async with anyio.create_task_group() as tg:
            if case == "audio_inside_text":
                unit = [
                    *stream.protocol.open_audio(),
                    _text_start(stream, "USER"),
                    encode_audio_input(stream.protocol.prompt_name, "x", bytes(FRAME)),
                ]
            elif case == "history_starts_with_assistant":
                unit = [_text_start(stream, "ASSISTANT")]
            else:
                unit = [b'{"event":{"promptEnd":{"promptName":"P","bogus":1}}}']
            await stream.send_unit(unit)
            error = await _run_until_failure(stream)
            tg.cancel_scope.cancel()
        await stream.close()
        assert isinstance(error, SonicFatalError)
        assert error.kind == "validationException"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("validationException", "validationException"),  # "System instability detected"
        ("modelTimeoutException", "modelTimeoutException"),
        ("throttlingException", "throttlingException"),
        ("internalServerException", "internalServerException"),
        ("modelStreamErrorException", "modelStreamErrorException"),
        ("serviceUnavailableException", "serviceUnavailableException"),
        ("reset", None),
    ],
)
async def test_service_faults_are_retryable(kind: str, expected: str | None) -> None:
    async with sonic_env() as (emu, connector):
        stream = await connector.open_stream()
        await stream.send_unit(stream.protocol.open_audio())
        emu.inject_fault(Fault(kind=kind), target="current")  # type: ignore[arg-type]
        error = await _run_until_failure(stream)
        await stream.close()
        assert isinstance(error, SonicRetryableError), error
        if expected is not None:
            assert error.kind == expected
        with pytest.raises(SonicRetryableError):  # sends after the failure raise it too
            await stream.send_unit(stream.protocol.audio(bytes(FRAME)))


async def test_slow_first_byte_within_and_beyond_open_timeout() -> None:
    async with sonic_env(open_timeout_s=1.0) as (emu, connector):
        emu.inject_fault(Fault(kind="slow_first_byte", after_ms=300))
        stream = await connector.open_stream()
        await stream.close()
        emu.inject_fault(Fault(kind="slow_first_byte", after_ms=2500))
        with pytest.raises(SonicRetryableError) as info:
            await connector.open_stream()
        assert info.value.kind == "openTimeout"


async def test_stall_is_detected_once_an_answer_is_due() -> None:
    async with sonic_env(stall_timeout_s=0.5) as (emu, connector):
        stream = await connector.open_stream()
        await stream.send_unit(stream.protocol.open_audio())
        emu.inject_fault(Fault(kind="stall"), target="current")
        stream.expect_output()  # a caller turn ended: the model owes an answer
        error = await _run_until_failure(stream)
        await stream.close()
        assert isinstance(error, SonicRetryableError)
        assert error.kind == "stall"


async def test_a_quiet_stream_is_not_a_stall() -> None:
    # Without a turn to answer the service may stay quiet as long as the caller does.
    async with sonic_env(stall_timeout_s=0.2) as (_, connector):
        stream = await connector.open_stream()
        await stream.send_unit(stream.protocol.open_audio())

        async def deliver(_: SonicStream, __: list[SonicEvent]) -> None:
            return None

        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.run, deliver)
            await anyio.sleep(0.8)
            assert stream.failure is None
            await stream.close()  # ends the response: the receive loop returns by itself
        assert stream.failure is None


async def test_retryable_error_mid_call_reopens_with_history() -> None:
    async with sonic_env() as (emu, connector):
        async with connector.conversation() as conv:
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed_realtime, conv, caller_audio(1200, 2) + caller_audio(2000, 3))
                await collect_until(conv, AssistantText, 10)
                await collect_until(conv, AssistantText, 5)  # the FINAL text
                emu.inject_fault(Fault(kind="throttlingException"), target="current")
                events = await collect_until(conv, HandedOver, 5)
                tg.cancel_scope.cancel()
            assert events[-1] == HandedOver(reason="error:throttlingException", session_index=1)
        assert len(emu.sessions) == 2
        assert emu.sessions[1].end_reason == "closed"
        # The new session got the system prompt plus USER and ASSISTANT history blocks.
        assert emu.sessions[1].input_events.count("textInput") == 3


async def test_a_conversation_seeded_with_history_sends_it_first() -> None:
    # What a restarted SonicSession does: continue from the call's history, not from blank.
    seed = [
        HistoryTurn(role="ASSISTANT", text="Hello, how can I help?"),  # dropped: must start USER
        HistoryTurn(role="USER", text="What are your opening hours?"),
        HistoryTurn(role="ASSISTANT", text="Nine to five."),
    ]
    async with sonic_env() as (emu, connector):
        async with connector.conversation(history=seed) as conv:
            await conv.send_audio(bytes(FRAME) * 5)
        # The orderly close (audio contentEnd, promptEnd, sessionEnd) came after everything else.
        events = emu.sessions[0].input_events
        # System prompt + USER + ASSISTANT history blocks, all before the audio block opens.
        assert events.count("textInput") == 3
        assert events.index("audioInput") > max(
            i for i, name in enumerate(events) if name == "textInput"
        )


async def test_fatal_error_mid_call_raises_from_the_conversation() -> None:
    async with sonic_env() as (emu, connector):
        with pytest.raises(SonicFatalError):  # noqa: PT012 - raised by the block's exit
            async with connector.conversation() as conv:
                emu.inject_fault(
                    Fault(kind="validationException", message="Invalid input request"),
                    target="current",
                )
                await collect_until(conv, SessionClosed, 5)


async def test_handover_before_the_cap_loses_no_caller_audio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: dict[int, bytearray] = {}
    original = SessionRunner._on_audio

    def recording(self: SessionRunner, pcm: bytes) -> None:
        received.setdefault(self.record.number, bytearray()).extend(pcm)
        original(self, pcm)

    monkeypatch.setattr(SessionRunner, "_on_audio", recording)
    sent = b"".join(caller_audio(1400, seed) for seed in range(4))  # 5.6 s, a turn every 1.4 s
    async with sonic_env(
        emulator={"session_cap_s": 3.5},
        handover_after_s=1.5,
        handover_grace_s=1.0,
        handover_quiet_s=0.3,
        replay_audio_ms=1000,
    ) as (emu, connector):
        async with connector.conversation() as conv:
            handovers: list[HandedOver] = []

            async def consume() -> None:
                handovers.extend([e async for e in conv.events if isinstance(e, HandedOver)])

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await feed_realtime(conv, sent)
                await conv.aclose()
        assert handovers, "no handover happened"
        assert all(h.reason == "age" for h in handovers)
        assert all(s.end_reason == "closed" for s in emu.sessions), [
            s.end_reason for s in emu.sessions
        ]
    # Every session received one contiguous slice of what we sent; together they cover all of it.
    covered = 0
    for number in sorted(received):
        chunk = bytes(received[number])
        start = sent.find(chunk)
        assert start >= 0, f"session {number} received audio we never sent"
        assert start <= covered, f"caller audio {covered}..{start} reached no session"
        covered = max(covered, start + len(chunk))
    assert covered == len(sent)
    assert len(received) >= 2


async def test_pool_stream_level_hit_then_miss() -> None:
    pool = PoolSettings(size=1, level="stream", refill=False, max_idle_s=30)
    async with sonic_env(pool=pool) as (emu, connector):
        await connector.wait_warm()
        first = await connector.open_stream()
        second = await connector.open_stream()
        stats = connector.statistics()
        assert (stats.hits, stats.misses, stats.pre_opened) == (1, 1, 1)
        async with connector.conversation() as conv:  # a pooled stream carries a whole call
            await conv.send_audio(bytes(FRAME))
        await first.close()
        await second.close()
        assert len(emu.sessions) == 3


async def test_pool_connect_level_hit_and_disabled_miss() -> None:
    async with sonic_env(pool=PoolSettings(size=1, level="connect")) as (emu, connector):
        await connector.wait_warm()
        assert connector.statistics().open_connections == 1
        assert connector.statistics().nodelay_sockets == 1  # TCP_NODELAY set on the CRT socket
        assert not emu.sessions  # pre-connecting opened no Bedrock stream
        stream = await connector.open_stream()
        await stream.close()
        assert connector.statistics().hits == 1
    async with sonic_env(pool=PoolSettings(size=0)) as (_, connector):
        stream = await connector.open_stream()
        await stream.close()
        assert (connector.statistics().hits, connector.statistics().misses) == (0, 1)


async def test_recycled_before_max_idle() -> None:
    pool = PoolSettings(size=1, level="stream", max_idle_s=1.0)
    async with sonic_env(pool=pool) as (emu, connector):
        await connector.wait_warm()
        await anyio.sleep(1.5)  # past max_idle_s: the pooled stream must have been recycled
        assert connector.statistics().recycled >= 1
        assert emu.sessions[0].end_reason == "closed"
