"""Caller turn detection from the received audio itself (sans-I/O).

Theory of operation. :class:`TurnDetector` sees the caller's LPCM16 mono audio at the session's
declared input rate, cut into analysis frames of ``frame_ms``. A frame is *voiced* when its RMS level
is above ``threshold_dbfs``. Speech begins after ``onset_ms`` of consecutive voiced frames
(:class:`SpeechOnset`, which the shell uses for barge-in) and the turn ends after
``end_of_turn_silence_ms`` of consecutive unvoiced frames (:class:`TurnEnded`). All durations are
*audio* time (samples received), never wall time, so a client that sends faster or slower than real
time sees the same turns.

The level computation is a small local RMS gate kept behind :class:`LevelGate`; it is deliberately
minimal (one threshold, no adaptation), which is all the emulator needs to react to synthetic speech
versus digital silence.
"""

from __future__ import annotations

import math
from typing import Final, final

import attrs
import numpy as np

__all__ = ["LevelGate", "SpeechOnset", "TurnDetector", "TurnEnded", "TurnEvent"]

_FULL_SCALE: Final = 32768.0


@final
@attrs.frozen
class SpeechOnset:
    """Caller speech began at ``audio_ms`` (audio time since the audio block opened)."""

    audio_ms: float


@final
@attrs.frozen
class TurnEnded:
    """A caller turn ended at ``audio_ms``: speech, then ``end_of_turn_silence_ms`` of silence."""

    audio_ms: float
    speech_ms: float


type TurnEvent = SpeechOnset | TurnEnded


@final
class LevelGate:
    """Is an analysis frame voiced? RMS level in dBFS against a fixed threshold."""

    def __init__(self, threshold_dbfs: float) -> None:
        self._threshold_rms = _FULL_SCALE * 10.0 ** (threshold_dbfs / 20.0)

    def voiced(self, frame: np.ndarray[tuple[int], np.dtype[np.int16]]) -> bool:
        """True when the frame's RMS is above the threshold."""
        if frame.size == 0:
            return False
        samples = frame.astype(np.float32)
        rms = math.sqrt(float(np.dot(samples, samples)) / frame.size)
        return bool(rms > self._threshold_rms)


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
        frame_ms: float = 20.0,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        self._rate = sample_rate
        self._frame_samples = max(1, round(sample_rate * frame_ms / 1000.0))
        self._frame_ms = 1000.0 * self._frame_samples / sample_rate
        self._onset_frames = max(1, math.ceil(onset_ms / self._frame_ms))
        self._silence_frames = max(1, math.ceil(end_of_turn_silence_ms / self._frame_ms))
        self._gate = LevelGate(threshold_dbfs)
        self._pending = bytearray()
        self._frames = 0
        self._voiced_run = 0
        self._silent_run = 0
        self._in_speech = False
        self._speech_start_frame = 0
        self.samples_received = 0

    @property
    def in_speech(self) -> bool:
        """True between a speech onset and the end of that turn."""
        return self._in_speech

    def feed(self, pcm: bytes) -> list[TurnEvent]:
        """Consume caller PCM16 (little-endian mono); return the events it completes."""
        self.samples_received += len(pcm) // 2
        self._pending += pcm
        step = self._frame_samples * 2
        usable = len(self._pending) - len(self._pending) % step
        if usable == 0:
            return []
        samples = np.frombuffer(bytes(self._pending[:usable]), dtype="<i2")
        del self._pending[:usable]
        events: list[TurnEvent] = []
        for start in range(0, samples.size, self._frame_samples):
            event = self._frame(samples[start : start + self._frame_samples])
            if event is not None:
                events.append(event)
        return events

    def _frame(self, frame: np.ndarray[tuple[int], np.dtype[np.int16]]) -> TurnEvent | None:
        self._frames += 1
        if self._gate.voiced(frame):
            self._voiced_run += 1
            self._silent_run = 0
            if not self._in_speech and self._voiced_run >= self._onset_frames:
                self._in_speech = True
                self._speech_start_frame = self._frames - self._voiced_run
                return SpeechOnset(audio_ms=self._speech_start_frame * self._frame_ms)
            return None
        self._voiced_run = 0
        if not self._in_speech:
            return None
        self._silent_run += 1
        if self._silent_run < self._silence_frames:
            return None
        self._in_speech = False
        self._silent_run = 0
        end_frame = self._frames - self._silence_frames
        return TurnEnded(
            audio_ms=self._frames * self._frame_ms,
            speech_ms=(end_frame - self._speech_start_frame) * self._frame_ms,
        )
