"""The message catalogue of one call: every message that crosses a mailbox inside the actor tree.

Rules:

* Every message is a frozen msgspec Struct (``frozen=True, kw_only=True, gc=False``); commands are
  imperative (``ClearPlayback``), events past tense (``MarkEchoed``). Audio travels as ``bytes``
  with its format in the message (``pcm`` is PCM16 LE mono at ``rate`` Hz).
* ``at`` is always ``anyio.current_time()`` of the sender when the fact became known: never wall
  clock. Latency figures are differences of these values.
* Each inbox has ONE closed union below (``*Control`` / ``*Data``); receivers ``match`` on it
  exhaustively and end with ``case _: assert_never(msg)``.
* Wire schemas (Twilio frames, Nova Sonic events) are not here: the edge actors translate them.

Who sends what (the arrows of docs/call.md)::

    TwilioIngress  -> SonicSession.data      CallerAudio
                   -> SonicSession.control   CallerDtmf
                   -> TurnTaker.control      CallerSpeechStarted, CallerSpeechStopped
                   -> PlaybackEgress.control MarkEchoed
    SonicSession   -> PlaybackEgress.data    AssistantAudio, AssistantAudioEnded
                   -> TurnTaker.control      AssistantTurnStarted, AssistantTurnEnded,
                                             UserTranscribed, BargeInDetected, IntentMatched
    TurnTaker      -> PlaybackEgress.control ClearPlayback, PlayPrompt
                   -> SonicSession.control   HeardReport, PromptPlayed, CallerSpeechStopped
                                             (forwarded), LocalBargeIn
    PlaybackEgress -> TurnTaker.control      PlaybackStarted, PlaybackFinished

Turn ids: assistant turn ``0`` is the greeting; Sonic's assistant turns are numbered from 1 by
SonicSession (one turn = one assistant AUDIO content block), monotonic for the whole call, across
session restarts and handovers. An intent's prompt takes the next id when it matches (SonicSession
allocates it), so every later Sonic turn has a higher one. Playback generations start at 0 and are bumped by TurnTaker on
every barge-in (``ClearPlayback.generation`` is the NEW generation).
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "GREETING_TURN_ID",
    "AssistantAudio",
    "AssistantAudioEnded",
    "AssistantTurnEnded",
    "AssistantTurnStarted",
    "BargeInDetected",
    "BargeInSource",
    "CallerAudio",
    "CallerDtmf",
    "CallerSpeechStarted",
    "CallerSpeechStopped",
    "ClearPlayback",
    "ClearSource",
    "HeardReport",
    "IntentMatched",
    "LocalBargeIn",
    "MarkEchoed",
    "PlayPrompt",
    "PlaybackControl",
    "PlaybackData",
    "PlaybackFinished",
    "PlaybackStarted",
    "PromptPlayed",
    "SonicControl",
    "SonicData",
    "TurnControl",
    "UserTranscribed",
    "caller_audio_ms",
]

GREETING_TURN_ID = 0
"""The pre-rendered greeting is assistant turn 0, played in generation 0."""

BargeInSource = Literal["sonic_marker", "sonic_interrupted", "local_vad"]
"""Where a barge-in came from: Sonic's ``{"interrupted": true}`` text marker, Sonic's
``contentEnd`` with ``stopReason: INTERRUPTED``, or the local VAD's minimum-speech guard."""

ClearSource = BargeInSource | Literal["intent"]
"""Why playback is cleared: a barge-in, or an intent's prompt taking the floor."""


class _Message(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every internal message: immutable, keyword-only, not tracked by the GC."""

    at: float
    """``anyio.current_time()`` when the sender learned the fact."""


# --------------------------------------------------------------------------- TwilioIngress ->


class CallerAudio(_Message, frozen=True):
    """Caller audio, already converted to Sonic's input rate (ingress -> SonicSession.data)."""

    pcm: bytes
    """PCM16 LE mono."""
    rate: int
    """Sample rate of ``pcm`` in Hz (Sonic's input rate, 16000 by default)."""


def caller_audio_ms(msg: CallerAudio) -> float:
    """How much audio ``msg`` carries, in milliseconds (the caller-audio mailbox's weight)."""
    return len(msg.pcm) * 500.0 / msg.rate


class CallerDtmf(_Message, frozen=True):
    """The caller pressed a key (ingress -> SonicSession.control); the digit is PII."""

    digit: str


class CallerSpeechStarted(_Message, frozen=True):
    """The local VAD heard the caller start speaking (ingress -> TurnTaker.control).

    ``at`` is when the VAD decided; ``started_at`` is its estimate of the speech onset.
    """

    started_at: float


class CallerSpeechStopped(_Message, frozen=True):
    """The local VAD decided the caller stopped speaking (ingress -> TurnTaker.control).

    ``at`` is when the VAD decided (after its hangover); ``ended_at`` is its estimate of the end of
    speech, the start point of the per-turn latency.
    """

    ended_at: float
    speech_ms: float
    """Length of the speech segment that just ended."""


class MarkEchoed(_Message, frozen=True):
    """Twilio echoed one of our marks: played OR cleared (ingress -> PlaybackEgress.control)."""

    name: str


# --------------------------------------------------------------------------- SonicSession ->


class AssistantAudio(_Message, frozen=True):
    """Model audio of one assistant turn, as Sonic produced it (SonicSession -> PlaybackEgress.data).

    ``at`` is when SonicSession received it from the Sonic stream.
    """

    turn_id: int
    pcm: bytes
    """PCM16 LE mono."""
    rate: int
    """Sample rate of ``pcm`` in Hz (Sonic's output rate, 24000 by default)."""


class AssistantAudioEnded(_Message, frozen=True):
    """No more audio will follow for ``turn_id`` (SonicSession -> PlaybackEgress.data, in order)."""

    turn_id: int


class AssistantTurnStarted(_Message, frozen=True):
    """The first audio of assistant turn ``turn_id`` arrived from Sonic at ``at``.

    SonicSession -> TurnTaker.control; the end of model time in the per-turn latency.
    """

    turn_id: int


class AssistantTurnEnded(_Message, frozen=True):
    """Sonic finished producing audio for ``turn_id`` (SonicSession -> TurnTaker.control)."""

    turn_id: int


class UserTranscribed(_Message, frozen=True):
    """Sonic's FINAL transcript of a caller turn (SonicSession -> TurnTaker.control).

    Its arrival is the fallback end-of-speech marker when the local VAD gave none. ``text`` is PII.
    """

    text: str


class BargeInDetected(_Message, frozen=True):
    """The caller interrupted the assistant (SonicSession -> TurnTaker.control)."""

    source: BargeInSource


class IntentMatched(_Message, frozen=True):
    """An intent matched at ``at``: its prompt takes the floor NOW as turn ``turn_id``.

    SonicSession -> TurnTaker.control. ``ulaw`` is the cached prompt (8 kHz μ-law).
    """

    turn_id: int
    intent: str
    ulaw: bytes
    trigger_at: float | None
    """When the caller pressed the key that completed a DTMF trigger; None for a transcript
    (TurnTaker knows the caller's end of speech)."""


# --------------------------------------------------------------------------- TurnTaker ->


class ClearPlayback(_Message, frozen=True):
    """Stop playback NOW: send ``clear``, drop queued audio (TurnTaker -> PlaybackEgress.control).

    ``generation`` is the new playback generation: marks and audio of older generations are stale.
    Audio of turns ``<= through_turn_id`` arriving later is dropped too.
    """

    generation: int
    through_turn_id: int
    source: ClearSource
    signal_at: float
    """When the barge-in signal (or the intent's match) reached the gateway (stop-time figure)."""


class PlayPrompt(_Message, frozen=True):
    """Play a cached prompt as turn ``turn_id`` now (TurnTaker -> PlaybackEgress.control).

    ``ulaw`` is 8 kHz μ-law; the turn is complete (no more audio follows).
    """

    turn_id: int
    ulaw: bytes


class HeardReport(_Message, frozen=True):
    """How much of an interrupted assistant turn the caller heard (TurnTaker -> SonicSession).

    SonicSession truncates the model's history of that turn to what was heard.
    """

    turn_id: int
    heard_ms: float
    total_ms: float
    """Audio of the turn that reached PlaybackEgress (sent or queued) before the clear."""


class PromptPlayed(_Message, frozen=True):
    """An intent's prompt (turn ``turn_id``) is over: played to its end, or cut by a barge-in
    (TurnTaker -> SonicSession.control)."""

    turn_id: int
    interrupted: bool


class LocalBargeIn(_Message, frozen=True):
    """TurnTaker cleared playback through ``turn_id`` on the local VAD alone: Sonic gave no sign of
    the interruption, so the model does not know of it (TurnTaker -> SonicSession.control)."""

    turn_id: int


# --------------------------------------------------------------------------- PlaybackEgress ->


class PlaybackStarted(_Message, frozen=True):
    """The first media chunk of ``turn_id`` was sent to Twilio at ``at`` (-> TurnTaker.control)."""

    turn_id: int
    generation: int


class PlaybackFinished(_Message, frozen=True):
    """Playback of ``turn_id`` is over (-> TurnTaker.control).

    ``position_ms`` is what the caller heard (echoed marks of the current generation); when
    ``interrupted`` is False it equals ``total_ms``.
    """

    turn_id: int
    generation: int
    position_ms: float
    total_ms: float
    interrupted: bool


# --------------------------------------------------------------------------- inbox unions

SonicControl = CallerDtmf | HeardReport | PromptPlayed | CallerSpeechStopped | LocalBargeIn
"""SonicSession's control inbox (TurnTaker forwards the VAD's ``CallerSpeechStopped``)."""

SonicData = CallerAudio
"""SonicSession's data inbox (caller audio only)."""

TurnControl = (
    CallerSpeechStarted
    | CallerSpeechStopped
    | UserTranscribed
    | AssistantTurnStarted
    | AssistantTurnEnded
    | BargeInDetected
    | IntentMatched
    | PlaybackStarted
    | PlaybackFinished
)
"""TurnTaker's only inbox: TurnTaker sees no audio, so it has no data inbox."""

PlaybackControl = ClearPlayback | PlayPrompt | MarkEchoed
"""PlaybackEgress's control inbox: served before any audio."""

PlaybackData = AssistantAudio | AssistantAudioEnded
"""PlaybackEgress's data inbox: model audio and its in-band end-of-turn marker."""
