"""WAV files in and out, PCM16 mono, with the standard library's :mod:`wave`.

Reading accepts uncompressed 16-bit PCM, mono or stereo; stereo is mixed down to mono as the
floor of the channel mean. Anything else (8/24/32-bit, float, compressed, more channels, a broken
header) raises :class:`AudioFormatError`, which names what was found. Writing always produces
16-bit mono. Only the file I/O of these two helpers touches the outside world.

:func:`read_wav_mono` is the lenient reader for files a user supplies (prompt clips): integer PCM
of 8, 16, 24 or 32 bits and any number of channels, mixed down to PCM16 mono.
"""

from __future__ import annotations

import io
import os
import struct
import wave
from typing import final

import numpy as np

__all__ = ["AudioFormatError", "encode_wav", "read_wav", "read_wav_mono", "write_wav"]


@final
class AudioFormatError(ValueError):
    """Audio data is not in a format this package reads (the message says what it found)."""


def read_wav(source: str | os.PathLike[str] | bytes) -> tuple[bytes, int]:
    """Read a 16-bit PCM WAV file into mono PCM16 LE.

    Args:
        source: a file path, or the file's bytes.

    Returns:
        ``(pcm, sample_rate)``.

    Raises:
        AudioFormatError: not a WAV file, or not 16-bit PCM mono/stereo.
        OSError: the file cannot be read.
    """
    channels, width, rate, frames = _read_frames(source)
    if width != 2:
        raise AudioFormatError(f"expected 16-bit samples, got {8 * width}-bit")
    if channels == 1:
        return frames, rate
    if channels == 2:
        stereo = np.frombuffer(frames, dtype="<i2").astype(np.int32).reshape(-1, 2)
        mono = (stereo[:, 0] + stereo[:, 1]) >> 1
        return mono.astype("<i2").tobytes(), rate
    raise AudioFormatError(f"expected mono or stereo, got {channels} channels")


def read_wav_mono(source: str | os.PathLike[str] | bytes) -> tuple[bytes, int]:
    """Read an integer PCM WAV file (8/16/24/32-bit, any channel count) into mono PCM16 LE.

    Channels are averaged; samples wider than 16 bits are scaled to 16 bits; both round half to
    even. 8-bit WAV samples are unsigned (offset 128), the others signed little-endian.

    Args:
        source: a file path, or the file's bytes.

    Returns:
        ``(pcm, sample_rate)``.

    Raises:
        AudioFormatError: not a WAV file, not integer PCM, no channels or no sample rate.
        OSError: the file cannot be read.
    """
    channels, width, rate, frames = _read_frames(source)
    if channels < 1 or rate < 1:
        raise AudioFormatError(f"bad header: {channels} channels at {rate} Hz")
    if width not in (1, 2, 3, 4):
        raise AudioFormatError(f"expected 8, 16, 24 or 32-bit samples, got {8 * width}-bit")
    usable = len(frames) - len(frames) % (width * channels)
    raw = np.frombuffer(frames[:usable], dtype=np.uint8).reshape(-1, width)
    if width == 1:
        values = raw[:, 0].astype(np.float64) - 128.0
    else:
        # Little-endian two's complement of any width: assemble, then sign-extend.
        ints = np.zeros(len(raw), dtype=np.int64)
        for byte in range(width):
            ints |= raw[:, byte].astype(np.int64) << (8 * byte)
        sign = np.int64(1) << (8 * width - 1)
        values = ((ints ^ sign) - sign).astype(np.float64)
    scale = 2.0 ** (8 * width - 16) if width > 1 else 1.0 / 256.0
    mono = values.reshape(-1, channels).mean(axis=1) / scale
    np.rint(mono, out=mono)
    np.clip(mono, -32768.0, 32767.0, out=mono)
    return mono.astype("<i2").tobytes(), rate


def _read_frames(source: str | os.PathLike[str] | bytes) -> tuple[int, int, int, bytes]:
    """``(channels, sample width in bytes, rate, frames)`` of a WAV file, or AudioFormatError."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    # wave raises RuntimeError, struct.error or ValueError on some malformed chunks too.
    try:
        with wave.open(handle, "rb") as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError, RuntimeError, ValueError, struct.error) as exc:
        detail = f": {exc}" if str(exc) else " (truncated)"
        raise AudioFormatError(f"not a readable PCM WAV file{detail}") from exc
    return channels, width, rate, frames


def encode_wav(pcm: bytes, rate: int) -> bytes:
    """Return a complete 16-bit mono WAV file holding ``pcm`` (PCM16 LE) at ``rate``."""
    if len(pcm) % 2:
        raise ValueError(f"PCM16 data must have an even length, got {len(pcm)} bytes")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


def write_wav(path: str | os.PathLike[str], pcm: bytes, rate: int) -> None:
    """Write ``pcm`` (PCM16 LE mono) at ``rate`` to a 16-bit mono WAV file at ``path``."""
    data = encode_wav(pcm, rate)
    with open(path, "wb") as file:
        file.write(data)
