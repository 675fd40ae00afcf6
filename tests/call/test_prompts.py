"""The prompt cache: bundled clips, WAV files at any rate and channel count, clear errors."""

from __future__ import annotations

import io
import wave
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.call import (
    PROMPT_NAMES,
    CallDeps,
    PromptCache,
    PromptFile,
    PromptFormatError,
    load_prompt_cache,
)
from actors.call.deps import load_goodbye, load_greeting
from actors.call.prompts import MAX_PROMPT_SECONDS, bundled_prompt, check_ulaw, ulaw_from_wav
from actors.errors import ConfigError
from audiocodec import ulaw_decode

if TYPE_CHECKING:
    from pathlib import Path

AMPLITUDE = 16384.0


def _wav(
    rate: int, channels: int, freq: float = 1000.0, seconds: float = 0.5, width: int = 2
) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = AMPLITUDE * np.sin(2 * np.pi * freq * t)
    samples = np.repeat(mono[:, np.newaxis], channels, axis=1)
    if width == 2:
        frames = np.rint(samples).astype("<i2").tobytes()
    elif width == 3:
        ints = np.rint(samples * 256).astype("<i4")
        frames = b"".join(v.to_bytes(3, "little", signed=True) for v in ints.ravel().tolist())
    else:  # 8-bit unsigned
        frames = (np.rint(samples / 256) + 128).astype(np.uint8).tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


def _decoded(ulaw: bytes) -> np.ndarray:  # type: ignore[type-arg]
    return np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.float64)


def test_bundled_defaults_are_present_and_non_empty() -> None:
    cache = PromptCache.bundled()
    for name in PROMPT_NAMES:
        clip = cache.get(name)
        assert 0.5 * 8000 < len(clip) <= MAX_PROMPT_SECONDS * 8000, name
        assert clip == bundled_prompt(name)
        assert np.sqrt(np.mean(_decoded(clip) ** 2)) > 300, f"{name} is not speech-level audio"
    assert cache.greeting == load_greeting()
    assert cache.goodbye == load_goodbye()
    assert set(cache.sources.values()) == {"bundled"}
    assert cache.durations_ms()["greeting"] == len(cache.greeting) // 8


def test_cache_rejects_missing_or_empty_clips() -> None:
    clips = dict.fromkeys(PROMPT_NAMES, b"\xff" * 80)
    clips["sorry"] = b""
    with pytest.raises(ValueError, match="sorry"):
        PromptCache(clips)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_at_any_rate_and_channel_count_becomes_8khz_ulaw(rate: int, channels: int) -> None:
    ulaw = ulaw_from_wav(_wav(rate, channels))
    assert len(ulaw) == 4000  # 0.5 s at 8 kHz
    steady = _decoded(ulaw)[400:3600]  # 0.4 s: whole 1 kHz periods, away from the edges
    spectrum = np.abs(np.fft.rfft(steady))
    peak_hz = int(np.argmax(spectrum)) * 8000 / len(steady)
    assert peak_hz == 1000.0
    level_db = 20 * np.log10(np.sqrt(2 * np.mean(steady**2)) / AMPLITUDE)
    assert abs(level_db) < 0.2  # μ-law's own quantisation, nothing lost in the resampling


@pytest.mark.parametrize("width", [1, 3])
def test_8_and_24_bit_wavs_are_accepted(width: int) -> None:
    steady = _decoded(ulaw_from_wav(_wav(44100, 3, width=width)))[400:3600]
    level_db = 20 * np.log10(np.sqrt(2 * np.mean(steady**2)) / AMPLITUDE)
    assert abs(level_db) < 0.5


def test_high_frequency_content_is_filtered_not_aliased() -> None:
    # 6 kHz at 44.1 kHz would alias to 2 kHz at 8 kHz without the low-pass.
    steady = _decoded(ulaw_from_wav(_wav(44100, 2, freq=6000.0)))[400:3600]
    assert np.sqrt(np.mean(steady**2)) < 2.0  # μ-law's smallest steps: silence


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a readable PCM WAV"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "not a readable PCM WAV"),
        (b"\xff" * 1000, "not a readable PCM WAV"),
        (_wav(8000, 1, seconds=0.0), "no samples"),
        (_wav(44057, 1, seconds=0.01), "cannot resample 44057 Hz"),
    ],
)
def test_bad_wavs_are_format_errors(data: bytes, reason: str) -> None:
    with pytest.raises(PromptFormatError, match=reason):
        ulaw_from_wav(data)


def test_too_long_and_empty_clips_are_format_errors() -> None:
    with pytest.raises(PromptFormatError, match="longer than"):
        check_ulaw(b"\xff" * (MAX_PROMPT_SECONDS * 8000 + 1))
    with pytest.raises(PromptFormatError, match="empty"):
        check_ulaw(b"")


def test_float_wav_is_a_format_error() -> None:
    header = bytearray(_wav(8000, 1, seconds=0.01))
    header[20:22] = (3).to_bytes(2, "little")  # WAVE_FORMAT_IEEE_FLOAT
    with pytest.raises(PromptFormatError, match="not a readable PCM WAV"):
        ulaw_from_wav(bytes(header))


def test_load_order_wav_then_cache_dir_then_bundled(tmp_path: Path) -> None:
    (tmp_path / "hold.wav").write_bytes(_wav(44100, 2))
    cache_dir = tmp_path / "rendered"
    cache_dir.mkdir()
    (cache_dir / "hold.ulaw").write_bytes(b"\x00" * 800)  # shadowed by the WAV
    (cache_dir / "sorry.ulaw").write_bytes(b"\x7f" * 800)
    cache = load_prompt_cache(
        {"hold": PromptFile(key="prompts.hold_wav", path=tmp_path / "hold.wav")},
        cache_dir=cache_dir,
    )
    assert cache.sources == {
        "greeting": "bundled",
        "hold": "wav",
        "transferring": "bundled",
        "goodbye": "bundled",
        "sorry": "cache_dir",
    }
    assert len(cache.get("hold")) == 4000
    assert cache.get("sorry") == b"\x7f" * 800
    assert cache.greeting == bundled_prompt("greeting")


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"not a wav", "not a readable PCM WAV"), (None, "cannot read it")],
)
def test_bad_files_are_config_errors_naming_the_key(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "greeting.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load_prompt_cache({"greeting": PromptFile(key="call.greeting_wav", path=path)})
    assert raised.value.key == "call.greeting_wav"
    assert expected in str(raised.value)
    assert str(path) in str(raised.value)


def test_empty_rendered_clip_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "goodbye.ulaw").write_bytes(b"")
    with pytest.raises(
        ConfigError, match=r"prompts.cache_dir: .*goodbye.ulaw \(the clip is empty\)"
    ):
        load_prompt_cache(cache_dir=tmp_path)


def test_call_deps_default_to_the_bundled_prompts() -> None:
    field = {f.name: f for f in CallDeps.__attrs_attrs__}  # type: ignore[attr-defined]
    assert field["prompts"].default.factory().clips == PromptCache.bundled().clips


@given(
    st.binary(max_size=200).map(lambda tail: b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + tail)
    | st.binary(max_size=64).map(lambda tail: _wav(8000, 1, seconds=0.01)[:36] + tail)
    | st.binary(max_size=300)
)
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_a_clip_or_a_format_error(data: bytes) -> None:
    try:
        clip = ulaw_from_wav(data)
    except PromptFormatError:
        return
    assert clip
