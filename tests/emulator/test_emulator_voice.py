"""Pre-encoded reply audio: frames equal the library's, the cache renders once, lateness is kept."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from smithy_aws_event_stream.events import Event

from actors.wire import (
    AudioOutput,
    UsageEvent,
    decode_chunk_payload,
    decode_output_event,
    encode_chunk_payload,
    encode_output_event,
)
from audiocodec import speech_like
from gateway.emulator import EmulatorSettings, run_emulator, serve_forever
from gateway.emulator.framing import encode_event_frame
from gateway.emulator.stats import lateness_histogram, lateness_report
from gateway.emulator.voice import AudioFrameEncoder, VoiceCache, render_reply

if TYPE_CHECKING:
    from pathlib import Path

    from gateway.emulator import Emulator


def decode_frame(frame: bytes) -> Any:
    message = Event.decode(io.BytesIO(frame))
    assert message is not None
    assert message.message.headers[":event-type"] == "chunk"
    return decode_output_event(decode_chunk_payload(message.message.payload))


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
@pytest.mark.parametrize("prompt_name", ["p", "prompt-1234", 'quote"and\\slash', "ünï"])
def test_fast_frames_decode_to_the_library_event(rate: int, prompt_name: str) -> None:
    chunk_bytes = rate * 100 // 1000 * 2
    rendered = render_reply(rate, 730, seed=3, chunk_bytes=chunk_bytes)
    pcm = speech_like(rate, 730, 3)
    ids = {
        "session_id": "11111111-2222-3333-4444-555555555555",
        "prompt_name": prompt_name,
        "completion_id": "c" * 36,
        "content_id": "d" * 35,  # any id length: the padding keeps base64 parts aligned
    }
    encoder = AudioFrameEncoder(**ids)
    assert rendered.total_bytes == len(pcm)
    offset = 0
    for size, tail in zip(rendered.pcm_sizes, rendered.tails, strict=True):
        expected = AudioOutput(**ids, content=pcm[offset : offset + size])
        library = encode_event_frame(encode_chunk_payload(encode_output_event(expected)))
        assert decode_frame(encoder.frame(tail)) == expected == decode_frame(library)
        offset += size
    assert offset == len(pcm)


def test_lateness_histogram_percentiles() -> None:
    histogram = lateness_histogram()
    assert lateness_report(histogram)["p50"] is None
    for _ in range(98):
        histogram.record(0.4)
    histogram.record(12.0)
    histogram.record(2500.0)  # beyond the last bound
    snap = lateness_report(histogram)
    assert snap["count"] == 100
    assert snap["p50"] == 0.5
    assert snap["p99"] == 15.0
    assert snap["max"] == 2500.0
    buckets = snap["buckets"]
    assert isinstance(buckets, dict)
    assert buckets["le_0.5"] == 98
    assert buckets["gt_last"] == 1


@pytest.mark.anyio
async def test_voice_cache_renders_each_reply_once() -> None:
    cache = VoiceCache(capacity=2)
    results: list[Any] = []

    async def ask(seed: int) -> None:
        results.append(await cache.get(16000, 300, seed, 3200))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(ask, 1)
    assert cache.renders == 1
    assert all(r is results[0] for r in results)
    await cache.get(16000, 300, 2, 3200)
    await cache.get(16000, 300, 3, 3200)  # evicts seed 1 (least recently used)
    await cache.get(16000, 300, 1, 3200)
    assert cache.renders == 4


@pytest.mark.anyio
async def test_reply_lateness_is_recorded(sonic_client_class: Any, pcm_helpers: Any) -> None:
    settings = EmulatorSettings(answer_ms=500, think_ms=20, end_of_turn_silence_ms=300)
    async with run_emulator(settings) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        try:
            await client.start()
            await client.audio(pcm_helpers.speech(16000, 300) + pcm_helpers.silence(16000, 400))
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
        finally:
            await client.close()
        lateness = emu.reply_lateness()
        snapshot = emu.snapshot()
    assert lateness["count"] == 5  # 500 ms in 100 ms chunks
    assert isinstance(lateness["max"], float)
    assert snapshot["replies_rendered"] == 1
    assert snapshot["reply_lateness_ms"] == lateness


@pytest.mark.anyio
async def test_serve_forever_writes_the_stats_file(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    ready = anyio.Event()

    def on_ready(emulator: Emulator) -> None:
        del emulator
        ready.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: serve_forever(EmulatorSettings(), on_ready=on_ready, stats_file=path)
            )
            await ready.wait()
            tg.cancel_scope.cancel()  # the last write happens on the way out
    data = json.loads(path.read_text())
    assert data["sessions"] == 0
    assert data["connections_opened"] == 0
    assert data["reply_lateness_ms"]["count"] == 0
    assert isinstance(data["at"], float)
