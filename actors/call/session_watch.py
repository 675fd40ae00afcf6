"""SonicSession's two watches, sans I/O: the hold prompt during a lost session, and a barge-in the
model never heard of.

Theory of operation (explicit time: every method takes ``now``; no clock, no I/O):

* :class:`LossWatch` (kept in ``SessionMemory``, so it outlives a SonicSession restart): a lost Sonic
  session means the model can say nothing until another one takes over. If that takes longer than
  ``after_s`` (default 1 s) the caller would hear dead air, so the hold prompt is due at ``lost_at
  + after_s``; while the loss lasts it is due again ``repeat_s`` after each playing started. A
  recovery (another session took over) ends the loss.
* :class:`UnheardBargeIn`: the local VAD interrupted the assistant (TurnTaker cleared playback) but
  Sonic gave no sign of it. If the caller really spoke, Sonic hears it too and answers (a barge-in
  signal, a USER transcript or a new assistant turn follows). If the VAD heard a cough or a door,
  Sonic believes its answer was heard in full and waits: dead air. So once the caller stopped
  speaking, the model gets ``confirm_s`` to show it noticed; otherwise it is told in a USER text
  (:func:`interruption_text`), which it answers.
"""

from __future__ import annotations

from typing import Final, final

import attrs

__all__ = [
    "ENDPOINTING_PAUSE_S",
    "INTERRUPTION_PREFIX",
    "LossWatch",
    "UnheardBargeIn",
    "barge_in_confirm_s",
    "interruption_text",
]

ENDPOINTING_PAUSE_S: Final = {"HIGH": 1.5, "MEDIUM": 1.75, "LOW": 2.0}
"""Nova 2 Sonic's end-of-turn pause per ``endpointing_sensitivity`` (its documented values): the
silence after which it answers a caller turn."""

_CONFIRM_SLACK_S: Final = 1.0

INTERRUPTION_PREFIX: Final = "NOTE: "
"""Every note about an unheard interruption starts with this (a system prompt may mention it)."""


def barge_in_confirm_s(endpointing_sensitivity: str) -> float:
    """How long after the caller stopped speaking Sonic has to show it heard them: its end-of-turn
    pause plus a second for the transcript and the answer to start."""
    return ENDPOINTING_PAUSE_S.get(endpointing_sensitivity, 2.0) + _CONFIRM_SLACK_S


def interruption_text(heard_fraction: float | None) -> str:
    """The USER text that tells the model its answer was cut off by a noise, not by words."""
    heard = ""
    if heard_fraction is not None:
        heard = f" after about {round(min(max(heard_fraction, 0.0), 1.0) * 100)}% of it"
    return (
        f"{INTERRUPTION_PREFIX}A noise on the caller's line interrupted your last answer{heard}; "
        "the caller did not say anything. Continue from where you were cut off, briefly."
    )


@final
@attrs.define
class LossWatch:
    """When the hold prompt is due while a Sonic session is lost (see the module docstring).

    Attributes:
        lost_at: when the loss began (None: no session is lost).
        held_at: when the hold prompt last started during this loss (None: not yet).
    """

    lost_at: float | None = None
    held_at: float | None = None

    def lost(self, now: float) -> None:
        """A session was lost at ``now`` (a loss already running keeps its start)."""
        if self.lost_at is None:
            self.lost_at = now

    def recovered(self) -> None:
        """Another session took over: no hold prompt is due any more."""
        self.lost_at = None
        self.held_at = None

    def due_at(self, *, after_s: float, repeat_s: float) -> float | None:
        """When the hold prompt should (next) start; None when no loss runs or ``after_s`` is 0."""
        if self.lost_at is None or after_s <= 0:
            return None
        if self.held_at is None:
            return self.lost_at + after_s
        return self.held_at + repeat_s

    def held(self, now: float) -> None:
        """The hold prompt started at ``now``."""
        self.held_at = now


@final
@attrs.define
class UnheardBargeIn:
    """A local-VAD barge-in Sonic has not acknowledged, and when to tell the model of it.

    Args:
        confirm_s: after the caller stopped speaking, how long Sonic has to show it noticed.
    """

    confirm_s: float
    turn_id: int | None = None
    heard_fraction: float | None = None
    due_at: float | None = None

    def barge_in(self, turn_id: int) -> None:
        """The local VAD cut assistant turn ``turn_id`` (call turn id) off."""
        self.turn_id = turn_id
        self.heard_fraction = None
        self.due_at = None

    def heard(self, turn_id: int, fraction: float) -> None:
        """The caller heard ``fraction`` of turn ``turn_id`` (for the note's wording)."""
        if turn_id == self.turn_id:
            self.heard_fraction = fraction

    def caller_stopped(self, ended_at: float) -> None:
        """The caller stopped speaking (VAD) at ``ended_at``: Sonic has ``confirm_s`` from then."""
        if self.turn_id is not None:
            self.due_at = ended_at + self.confirm_s

    def model_noticed(self) -> None:
        """Sonic signalled a barge-in or transcribed the caller: it knows; nothing to tell."""
        self.turn_id = None
        self.heard_fraction = None
        self.due_at = None

    def model_spoke(self, turn_id: int) -> None:
        """Assistant turn ``turn_id`` started: a newer turn means the model moved on by itself."""
        if self.turn_id is not None and turn_id > self.turn_id:
            self.model_noticed()

    def take(self, now: float) -> str | None:
        """The note to send now, if it is due (then the watch is reset); else None."""
        if self.due_at is None or now < self.due_at:
            return None
        text = interruption_text(self.heard_fraction)
        self.model_noticed()
        return text
