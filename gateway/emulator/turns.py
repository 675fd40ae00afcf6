"""Caller turn detection from the received audio itself (sans-I/O).

Theory of operation. :class:`TurnDetector` wraps :class:`audiocodec.EnergyVad` (energy VAD with
hysteresis and an adaptive noise floor) and renames its events for the emulator: speech confirmed
after ``onset_ms`` becomes :class:`SpeechOnset` (used for barge-in), and ``end_of_turn_silence_ms``
of silence after speech becomes :class:`TurnEnded`. All durations are *audio* time (samples
received at the session's declared input rate), never wall time, so a client that sends faster or
slower than real time sees the same turns.

With ``block_ms``, audio is analysed in blocks of at least that much (the VAD's fixed cost per
call dominates at 20 ms per call): events come out up to ``block_ms`` later in wall time, at the
same audio times.
"""

from __future__ import annotations

import math
from typing import assert_never, final

import attrs

from audiocodec import EnergyVad, SpeechEnd, SpeechStart

__all__ = ["SpeechOnset", "TurnDetector", "TurnEnded", "TurnEvent"]


@final
@attrs.frozen
class SpeechOnset:
    """Caller speech began at ``audio_ms`` (audio time since the audio block opened)."""

    audio_ms: float


@final
@attrs.frozen
class TurnEnded:
    """A caller turn ended (decided at ``audio_ms``) after ``speech_ms`` of speech.

    ``silence_ms``: audio time from the end of the speech to the decision (the end-of-turn pause).
    """

    audio_ms: float
    speech_ms: float
    silence_ms: float = 0.0


type TurnEvent = SpeechOnset | TurnEnded


@final
class TurnDetector:
    """Turn caller PCM into :class:`SpeechOnset` / :class:`TurnEnded` events (audio time)."""

    def __init__(
        self,
        sample_rate: int,
        *,
        end_of_turn_silence_ms: float = 600.0,
        onset_ms: float = 60.0,
        threshold_dbfs: float = -40.0,
        block_ms: float = 0.0,
    ) -> None:
        window_ms = 10 if sample_rate % 100 == 0 else 20
        self._vad = EnergyVad(
            sample_rate,
            onset_ms=max(1, math.ceil(onset_ms)),
            release_ms=max(1, math.ceil(end_of_turn_silence_ms)),
            threshold_dbfs=threshold_dbfs,
            window_ms=window_ms,
        )
        self._speech_began_ms = 0.0
        self._block_bytes = 2 * int(sample_rate * block_ms / 1000.0)
        self._pending = bytearray()
        self.samples_received = 0

    @property
    def in_speech(self) -> bool:
        """True between a speech onset and the end of that turn."""
        return self._vad.speaking

    def feed(self, pcm: bytes) -> list[TurnEvent]:
        """Consume caller PCM16 (little-endian mono); return the events it completes."""
        self.samples_received += len(pcm) // 2
        if self._block_bytes:
            self._pending += pcm
            if len(self._pending) < self._block_bytes:
                return []
            pcm = bytes(self._pending)
            self._pending.clear()
        events: list[TurnEvent] = []
        for event in self._vad.process(pcm):
            match event:
                case SpeechStart():
                    self._speech_began_ms = event.began_ms
                    events.append(SpeechOnset(audio_ms=event.began_ms))
                case SpeechEnd():
                    events.append(
                        TurnEnded(
                            audio_ms=event.at_ms,
                            speech_ms=event.ended_ms - self._speech_began_ms,
                            silence_ms=event.at_ms - event.ended_ms,
                        )
                    )
                case _:
                    assert_never(event)
        return events
