"""Benchmark: µs of CPU per 20 ms frame on the gateway's audio paths.

Run from the repository root::

    .venv/bin/python scripts/bench_codecs.py [--rounds 15] [--frames 2000]

Each path runs over a cycle of real frames (``speech_like`` audio through the real wire models and
codecs, a fresh stateful Resampler per path). A round times ``--frames`` iterations with
``time.process_time_ns`` (CPU time of this process, so a noisy neighbour's steal shows up less than
in wall time); the figure is the median over rounds, with the fastest round beside it. The
garbage collector is paused while timing. Targets (this 2-core machine): <= 25 µs per frame each
way with resampling, <= 10 µs at 8 kHz. Not a test: numbers vary 20-40 % between runs.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import audiocodec
from actors import wire
from audiocodec import Resampler

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
PROMPT = "prompt-3f0c2b1e-8d7a-4c52-9e61-0a4b5c6d7e8f"
CONTENT = "content-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
SESSION = "session-1"
COMPLETION = "completion-1"
FRAMES_IN_CYCLE = 50  # one second of distinct frames


def _frames(pcm: bytes, size: int) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)][:FRAMES_IN_CYCLE]


def _twilio_media_messages() -> list[bytes]:
    ulaw = audiocodec.ulaw_encode(audiocodec.speech_like(8000, 1000, seed=1))
    return [
        wire.encode_twilio_inbound(
            wire.TwilioMedia(
                sequence_number=i + 2,
                stream_sid=STREAM_SID,
                media=wire.MediaPayload(
                    track="inbound", chunk=i + 1, timestamp=20 * i, payload=frame
                ),
            )
        )
        for i, frame in enumerate(_frames(ulaw, 160))
    ]


def _audio_output_events(rate: int) -> list[bytes]:
    pcm = audiocodec.speech_like(rate, 1000, seed=2)
    return [
        wire.encode_output_event(
            wire.AudioOutput(
                session_id=SESSION,
                prompt_name=PROMPT,
                completion_id=COMPLETION,
                content_id=CONTENT,
                content=frame,
            )
        )
        for frame in _frames(pcm, audiocodec.frame_bytes(rate))
    ]


def _time(
    step: Callable[[bytes], object], inputs: Sequence[bytes], frames: int, rounds: int
) -> tuple[float, float]:
    cycle = (list(inputs) * (frames // len(inputs) + 1))[:frames]
    for item in cycle[: min(200, frames)]:  # warm-up: caches, branch predictors, first-call paths
        step(item)
    per_round: list[float] = []
    gc.disable()
    try:
        for _ in range(rounds):
            start = time.process_time_ns()
            for item in cycle:
                step(item)
            per_round.append((time.process_time_ns() - start) / frames / 1000.0)
    finally:
        gc.enable()
    return statistics.median(per_round), min(per_round)


def _paths() -> list[tuple[str, Callable[[bytes], object], list[bytes], float]]:
    twilio = _twilio_media_messages()
    out24 = _audio_output_events(24000)
    out8 = _audio_output_events(8000)
    ulaw = _frames(audiocodec.ulaw_encode(audiocodec.speech_like(8000, 1000, seed=1)), 160)
    pcm8 = [audiocodec.ulaw_decode(frame) for frame in ulaw]
    pcm24 = _frames(audiocodec.speech_like(24000, 1000, seed=3), 960)
    decode_twilio = wire.decode_twilio_inbound
    decode_output = wire.decode_output_event
    encode_input = wire.encode_audio_input
    encode_media = wire.encode_twilio_media
    ulaw_decode, ulaw_encode = audiocodec.ulaw_decode, audiocodec.ulaw_encode
    TwilioMedia, AudioOutput = wire.TwilioMedia, wire.AudioOutput

    def twilio_to_pcm8(data: bytes) -> bytes:
        msg = decode_twilio(data)
        assert isinstance(msg, TwilioMedia)
        return ulaw_decode(msg.media.payload)

    up = Resampler(8000, 16000)

    def twilio_to_pcm16(data: bytes) -> bytes:
        msg = decode_twilio(data)
        assert isinstance(msg, TwilioMedia)
        return up.process(ulaw_decode(msg.media.payload))

    def pcm8_to_audio_input(pcm: bytes) -> bytes:
        return encode_input(PROMPT, CONTENT, pcm)

    up2 = Resampler(8000, 16000)

    def pcm8_to_audio_input16(pcm: bytes) -> bytes:
        return encode_input(PROMPT, CONTENT, up2.process(pcm))

    def twilio_to_audio_input8(data: bytes) -> bytes:
        msg = decode_twilio(data)
        assert isinstance(msg, TwilioMedia)
        return encode_input(PROMPT, CONTENT, ulaw_decode(msg.media.payload))

    up3 = Resampler(8000, 16000)

    def twilio_to_audio_input16(data: bytes) -> bytes:
        msg = decode_twilio(data)
        assert isinstance(msg, TwilioMedia)
        return encode_input(PROMPT, CONTENT, up3.process(ulaw_decode(msg.media.payload)))

    down = Resampler(24000, 8000)

    def output24_to_twilio(data: bytes) -> bytes:
        event = decode_output(data)
        assert isinstance(event, AudioOutput)
        return encode_media(STREAM_SID, ulaw_encode(down.process(event.content)))

    def output8_to_twilio(data: bytes) -> bytes:
        event = decode_output(data)
        assert isinstance(event, AudioOutput)
        return encode_media(STREAM_SID, ulaw_encode(event.content))

    resamplers = {
        pair: Resampler(*pair)
        for pair in [(8000, 16000), (24000, 8000), (16000, 8000), (8000, 24000)]
    }
    pcm_by_rate = {
        8000: pcm8,
        16000: _frames(audiocodec.speech_like(16000, 1000, seed=4), 640),
        24000: pcm24,
    }
    rows: list[tuple[str, Callable[[bytes], object], list[bytes], float]] = [
        ("in   Twilio media -> PCM 8 kHz (decode, μ-law)", twilio_to_pcm8, twilio, 10.0),
        ("in   Twilio media -> PCM 16 kHz (+ resample 8->16k)", twilio_to_pcm16, twilio, 25.0),
        ("in   PCM 8 kHz -> audioInput 8 kHz", pcm8_to_audio_input, pcm8, 10.0),
        (
            "in   PCM 8 kHz -> audioInput 16 kHz (+ resample 8->16k)",
            pcm8_to_audio_input16,
            pcm8,
            25.0,
        ),
        (
            "in   Twilio media -> audioInput 8 kHz (whole path)",
            twilio_to_audio_input8,
            twilio,
            10.0,
        ),
        (
            "in   Twilio media -> audioInput 16 kHz (whole path)",
            twilio_to_audio_input16,
            twilio,
            25.0,
        ),
        (
            "out  audioOutput 24 kHz -> Twilio media (resample 24->8k)",
            output24_to_twilio,
            out24,
            25.0,
        ),
        ("out  audioOutput 8 kHz -> Twilio media", output8_to_twilio, out8, 10.0),
        ("g711 decode 160 B, audioop", ulaw_decode, ulaw, 0.0),
        ("g711 decode 160 B, numpy LUT", audiocodec.ulaw_decode_lut, ulaw, 0.0),
        ("g711 encode 320 B, audioop", ulaw_encode, pcm8, 0.0),
        ("g711 encode 320 B, numpy LUT", audiocodec.ulaw_encode_lut, pcm8, 0.0),
    ]
    for (rate_in, rate_out), resampler in resamplers.items():
        rows.append(
            (
                f"resample {rate_in // 1000}->{rate_out // 1000}k alone",
                resampler.process,
                pcm_by_rate[rate_in],
                0.0,
            )
        )
    return rows


def _kernel_rows(calls: int) -> None:
    """The resampler's two kernels (dot / matmul) per pair and chunk: CPU, and GIL behaviour.

    "keeps GIL" is measured: the same calls run while another thread spins in Python; a kernel
    that releases the GIL then waits for that thread's switch interval (milliseconds per call).
    """
    print(f"\n{'resampler kernel':34} {'chunk':>6} {'dot µs':>7} {'matmul µs':>9}  keeps GIL")
    for pair, chunk_ms in [((8000, 16000), 20), ((8000, 16000), 200), ((24000, 8000), 100)]:
        pcm = audiocodec.speech_like(pair[0], chunk_ms, seed=5)
        figures: dict[bool, tuple[float, bool]] = {}
        for in_place in (False, True):
            resampler = Resampler(*pair)
            resampler._in_place = in_place
            step = resampler.process
            median, _ = _time(step, [pcm], calls, 5)
            figures[in_place] = (median, _keeps_gil(step, pcm))
        (dot, dot_keeps), (mm, mm_keeps) = figures[False], figures[True]
        print(
            f"{pair[0] // 1000}->{pair[1] // 1000}k{'':29} {chunk_ms:4} ms {dot:7.1f} {mm:9.1f}"
            f"  dot {'yes' if dot_keeps else 'no'}, matmul {'yes' if mm_keeps else 'no'}"
        )


def _keeps_gil(step: Callable[[bytes], object], pcm: bytes) -> bool:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        start = time.perf_counter()
        for _ in range(20):
            step(pcm)
        per_call = (time.perf_counter() - start) / 20
    finally:
        stop.set()
        spinner.join()
    return per_call < 0.001  # a release costs the spinner's switch interval (5 ms)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument(
        "--kernels", action="store_true", help="also compare the resampler's dot and matmul kernels"
    )
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, audioop in use: {audiocodec.has_audioop()}")
    print(
        f"{args.rounds} rounds x {args.frames} frames; µs of CPU per 20 ms frame (median / best round)"
    )
    print(f"{'path':62} {'median':>7} {'best':>7} {'target':>7}")
    for name, step, inputs, target in _paths():
        median, best = _time(step, inputs, args.frames, args.rounds)
        mark = ""
        if target:
            mark = f"<= {target:>3.0f}" + ("" if median <= target else "  OVER")
        print(f"{name:62} {median:7.2f} {best:7.2f} {mark}")
    if args.kernels:
        _kernel_rows(min(args.frames, 500))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
