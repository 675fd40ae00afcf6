"""A scripted tool use with a filler, through the REAL Bedrock SDK client: Nova 2 tools are
asynchronous, so the emulated model speaks the filler while the tool runs and answers once the
result is in."""

from __future__ import annotations

from typing import Any

import pytest

from actors.wire import AudioOutput, TextOutput, ToolUse, UsageEvent
from gateway.emulator import (
    EmulatorSettings,
    ModelScript,
    ScriptedFiller,
    ScriptedToolUse,
    ScriptedTurn,
    run_emulator,
)

pytestmark = pytest.mark.anyio

FAST = EmulatorSettings(
    answer_ms=400, think_ms=20, end_of_turn_silence_ms=300, close_grace_s=2.0, output_chunk_ms=100
)


async def until_spoken(client: Any, text: str) -> None:
    """Receive until the ASSISTANT text has come twice: SPECULATIVE, then FINAL (once spoken)."""

    def said(event: Any) -> bool:
        return isinstance(event, TextOutput) and event.role == "ASSISTANT" and event.content == text

    await client.receive_until(said)
    await client.receive_until(said)


async def test_the_filler_is_spoken_before_the_result_and_the_reply_after(
    sonic_client_class: Any, pcm_helpers: Any
) -> None:
    script = ModelScript(
        turns=[
            ScriptedTurn(
                transcript="where is my order",
                reply="It shipped yesterday.",
                answer_ms=200,
                tool_use=ScriptedToolUse(
                    name="get_order",
                    arguments={"orderId": "42"},
                    filler=ScriptedFiller(text="Let me check.", ms=300),
                ),
            )
        ]
    )
    async with run_emulator(FAST, script) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        try:
            await client.start()
            await client.audio(
                pcm_helpers.speech(client.in_rate, 300) + pcm_helpers.silence(client.in_rate, 400)
            )
            tool = await client.receive_until(lambda e: isinstance(e, ToolUse))
            # No result yet: the model keeps talking.
            await until_spoken(client, "Let me check.")
            filler_audio = [e for e in client.events if isinstance(e, AudioOutput)]
            await client.tool_result(tool.tool_use_id, '{"status":"shipped"}')
            await until_spoken(client, "It shipped yesterday.")
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
            await client.finish()
            await client.drain()
        finally:
            await client.close()
    assert sum(len(e.content) for e in filler_audio) == 2 * client.out_rate * 300 // 1000
    (session,) = emu.sessions
    assert session.replies == ["Let me check.", "It shipped yesterday."]
    assert session.tool_results == [(tool.tool_use_id, '{"status":"shipped"}')]
    assert session.end_reason == "closed"
