"""What the Sonic client tells its consumer: typed internal events, not wire schemas.

Rules: frozen msgspec Structs, one closed union :data:`SonicEvent`; past-tense names. Audio travels
as ``bytes`` with its sample rate. Assistant turns carry a ``turn_id`` unique within a conversation
(across handovers), so PlaybackEgress's "heard" report can name the turn it is about. Failures are
never events: they are raised as :class:`~actors.errors.SonicError` (the error taxonomy); a
recovery in progress is reported (:class:`SessionLost`, then :class:`HandedOver`) because the
caller hears nothing meanwhile.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "AssistantText",
    "BargeInSource",
    "CompletionEnded",
    "HandedOver",
    "SessionClosed",
    "SessionLost",
    "SonicAudio",
    "SonicAudioEnded",
    "SonicAudioStarted",
    "SonicBargeIn",
    "SonicEvent",
    "ToolUseRequested",
    "Usage",
    "UserTranscript",
]

BargeInSource = Literal["marker", "interrupted"]


class UserTranscript(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Sonic's transcript of the caller (never empty; ``final`` for the FINAL stage)."""

    text: str
    final: bool


class AssistantText(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Assistant text: SPECULATIVE previews what will be said, FINAL is what was generated."""

    text: str
    stage: Literal["SPECULATIVE", "FINAL"]
    turn_id: int


class SonicAudioStarted(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The first assistant audio of turn ``turn_id`` is about to arrive."""

    turn_id: int
    rate: int


class SonicAudio(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A chunk of assistant speech: LPCM16 mono at ``rate`` Hz (arrives faster than real time)."""

    pcm: bytes
    rate: int
    turn_id: int


class SonicAudioEnded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """No more audio for turn ``turn_id`` (END_TURN, INTERRUPTED, or SESSION_LOST on a reopen)."""

    turn_id: int
    stop_reason: str


class SonicBargeIn(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Sonic reports the caller interrupted turn ``turn_id``; once per turn whatever the signal."""

    turn_id: int
    source: BargeInSource


class ToolUseRequested(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The model calls a tool; answer with ``SonicConversation.send_tool_result`` exactly once."""

    tool_use_id: str
    name: str
    arguments_json: str


class Usage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Running token totals of the current session."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class CompletionEnded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A model completion ended."""

    stop_reason: str


class HandedOver(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The conversation moved to a new Sonic session (planned, or recovering a retryable error).

    ``reason`` is ``"age"``, ``"credentials"`` or ``"error:<kind>"``; ``session_index`` counts
    sessions from 0 (the first).
    """

    reason: str
    session_index: int


class SessionLost(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The current Sonic session failed with a retryable error (``kind``); the conversation is
    opening another. :class:`HandedOver` (``"error:<kind>"``) follows once one took over; if none
    can, the conversation raises instead. Nothing is heard from Sonic in between."""

    kind: str


class SessionClosed(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The conversation ended in order (``reason`` is ``"closed"``); the last event."""

    reason: str


SonicEvent = (
    UserTranscript
    | AssistantText
    | SonicAudioStarted
    | SonicAudio
    | SonicAudioEnded
    | SonicBargeIn
    | ToolUseRequested
    | Usage
    | CompletionEnded
    | HandedOver
    | SessionLost
    | SessionClosed
)
