"""20 ms framing of μ-law and PCM16 byte streams, silence and durations.

Twilio Media Streams carry 20 ms of 8 kHz μ-law per ``media`` message (160 bytes), and the
gateway keeps 20 ms as its unit everywhere. Peers send chunks of any size, so :class:`Framer`
carries the remainder between calls and cuts exact frames; :meth:`Framer.flush` releases (or
pads) the last partial frame. Everything here is plain ``bytes`` arithmetic: no numpy, no state
besides a Framer's pending remainder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

from audiocodec.g711 import ULAW_SILENCE

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "FRAME_MS",
    "PCM8K_FRAME_BYTES",
    "PCM16K_FRAME_BYTES",
    "PCM24K_FRAME_BYTES",
    "ULAW_FRAME_BYTES",
    "ULAW_RATE",
    "Framer",
    "duration_ms",
    "frame_bytes",
    "join_frames",
    "silence_pcm",
    "silence_ulaw",
    "split_frames",
]

FRAME_MS: Final = 20
"""The gateway's audio frame: Twilio sends and expects 20 ms per ``media`` message."""
ULAW_RATE: Final = 8000
ULAW_FRAME_BYTES: Final = 160
"""20 ms of 8 kHz μ-law (one byte per sample)."""
PCM8K_FRAME_BYTES: Final = 320
PCM16K_FRAME_BYTES: Final = 640
PCM24K_FRAME_BYTES: Final = 960


def frame_bytes(rate: int, ms: int = FRAME_MS, sample_width: int = 2) -> int:
    """Bytes in ``ms`` milliseconds of mono audio.

    Args:
        rate: sample rate in Hz.
        ms: duration in milliseconds.
        sample_width: bytes per sample (2 for PCM16, 1 for μ-law).

    Returns:
        The byte count.

    Raises:
        ValueError: the duration is not a whole number of samples, or an argument is negative.
    """
    if rate <= 0 or ms < 0 or sample_width <= 0:
        raise ValueError(f"invalid frame: rate={rate} ms={ms} sample_width={sample_width}")
    samples, rest = divmod(rate * ms, 1000)
    if rest:
        raise ValueError(f"{ms} ms at {rate} Hz is not a whole number of samples")
    return samples * sample_width


def split_frames(data: bytes, frame_size: int) -> tuple[list[bytes], bytes]:
    """Cut ``data`` into whole frames.

    Args:
        data: the byte stream.
        frame_size: bytes per frame (> 0).

    Returns:
        The frames and the remainder (shorter than one frame, possibly empty).
    """
    if frame_size <= 0:
        raise ValueError(f"frame_size must be positive, got {frame_size}")
    whole = len(data) - len(data) % frame_size
    frames = [data[i : i + frame_size] for i in range(0, whole, frame_size)]
    return frames, data[whole:]


def join_frames(frames: Iterable[bytes]) -> bytes:
    """Concatenate frames back into one byte stream (inverse of :func:`split_frames`)."""
    return b"".join(frames)


def silence_ulaw(ms: int) -> bytes:
    """``ms`` milliseconds of 8 kHz μ-law silence (code 0xFF)."""
    return bytes([ULAW_SILENCE]) * frame_bytes(ULAW_RATE, ms, 1)


def silence_pcm(rate: int, ms: int) -> bytes:
    """``ms`` milliseconds of PCM16 silence at ``rate``."""
    return bytes(frame_bytes(rate, ms, 2))


def duration_ms(nbytes: int, rate: int, sample_width: int = 2) -> float:
    """Duration in milliseconds of ``nbytes`` of mono audio."""
    return 1000.0 * nbytes / (rate * sample_width)


@final
class Framer:
    """Cuts a byte stream arriving in arbitrary chunks into exact frames.

    Args:
        frame_size: bytes per frame (160 for 20 ms μ-law).
        fill: the byte that pads a partial last frame; 0xFF (:data:`ULAW_SILENCE`) for μ-law,
            0x00 for PCM16.
    """

    __slots__ = ("_fill", "_frame_size", "_pending")

    def __init__(self, frame_size: int, *, fill: int = 0x00) -> None:
        if frame_size <= 0:
            raise ValueError(f"frame_size must be positive, got {frame_size}")
        if not 0 <= fill <= 255:
            raise ValueError(f"fill must be a byte value, got {fill}")
        self._frame_size = frame_size
        self._fill = bytes([fill])
        self._pending = bytearray()

    @property
    def frame_size(self) -> int:
        """Bytes per frame."""
        return self._frame_size

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of their frame (< ``frame_size``)."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[bytes]:
        """Add a chunk; return every frame completed by it (possibly none)."""
        size = self._frame_size
        if not self._pending:
            if len(data) == size:  # the common case: already one frame, no copy
                return [data]
            frames, rest = split_frames(data, size)
            self._pending += rest
            return frames
        self._pending += data
        whole = len(self._pending) - len(self._pending) % size
        frames = [bytes(self._pending[i : i + size]) for i in range(0, whole, size)]
        del self._pending[:whole]
        return frames

    def flush(self, pad: bool = False) -> bytes:
        """Release the partial frame and start empty.

        Args:
            pad: fill the partial frame up to ``frame_size`` with the fill byte. An empty
                remainder stays empty either way.

        Returns:
            The remainder (padded to a whole frame if ``pad``), possibly empty.
        """
        rest = bytes(self._pending)
        self._pending.clear()
        if pad and rest:
            rest += self._fill * (self._frame_size - len(rest))
        return rest
