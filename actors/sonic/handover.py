"""When to move a conversation to a new Sonic session: the sans-I/O handover planner.

Theory of operation (the "continuation" pattern: a new session seeded with the history):

* A stream is *due* for replacement at ``min(opened_at + handover_after_s, credentials expire -
  credential_refresh_margin_s)``. From then on the next stream is prepared in the background
  (opened, prelude sent, ready), which costs the call nothing.
* The switch waits for a *turn boundary*: no assistant turn open and no assistant audio for
  ``handover_quiet_s`` (livekit's "END_TURN plus ~1 s without audio"), which also covers an idle
  call, so idle calls rotate too. If no boundary comes within ``handover_grace_s`` of the due
  time, the switch happens anyway (the 8-minute cap is worse than a cut answer).
* A failed stream is replaced at once (reason ``error:<kind>``), attempts are counted, and after
  ``max_reopen_attempts`` consecutive failures the error goes to the supervisor; backoff doubles
  from ``reopen_backoff_s``.
* A *next* stream that fails to open (or to take over) costs the call nothing yet: the current
  stream is healthy. Preparation is retried with a backoff doubling from ``reopen_backoff_s`` up to
  :data:`PREPARE_BACKOFF_MAX_S`, for as long as the current stream lives; a fatal error stops the
  retries for this stream. When the current stream then reaches Sonic's cap it fails like any
  other, and the failure path above reopens with history.

Every method takes ``now`` (``anyio.current_time()``) explicitly; no clock, no I/O.
"""

from __future__ import annotations

import math
from enum import Enum, auto
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from actors.sonic.settings import SonicSettings

__all__ = ["PREPARE_BACKOFF_MAX_S", "HandoverAction", "HandoverPlanner"]

PREPARE_BACKOFF_MAX_S: Final = 5.0
"""Longest wait between two attempts to open the next stream (the backoff doubles up to it): a
stream due at 6 minutes has about 2 minutes left before Sonic's 8-minute cap, so ~25 attempts."""


class HandoverAction(Enum):
    """What the conversation should do now."""

    WAIT = auto()
    PREPARE = auto()
    SWITCH = auto()


@final
class HandoverPlanner:
    """Decides preparation and switch times for the current stream (see the module docstring)."""

    def __init__(self, settings: SonicSettings) -> None:
        self._s = settings
        self._due_at = math.inf
        self._reason = "age"
        self._turn_open = False
        self._last_audio_at = -math.inf
        self._failures = 0
        self._prepare_failures = 0
        self._prepare_at = -math.inf

    def stream_started(self, *, now: float, credentials_expire_at: float | None) -> None:
        """A new stream became current at ``now``; plan its replacement."""
        by_age = now + self._s.handover_after_s
        by_credentials = math.inf
        if credentials_expire_at is not None:
            by_credentials = credentials_expire_at - self._s.credential_refresh_margin_s
        self._due_at = min(by_age, by_credentials)
        self._reason = "credentials" if by_credentials < by_age else "age"
        self._turn_open = False
        self._prepare_failures = 0
        self._prepare_at = -math.inf

    @property
    def due_at(self) -> float:
        """When the current stream should be replaced."""
        return self._due_at

    @property
    def reason(self) -> str:
        """Why it will be replaced (``"age"`` or ``"credentials"``)."""
        return self._reason

    def assistant_turn(self, *, now: float, open_: bool) -> None:
        """An assistant turn opened (first audio / speculative text) or ended (END_TURN, barge-in)."""
        self._turn_open = open_
        self._last_audio_at = now

    def assistant_audio(self, now: float) -> None:
        """Assistant audio arrived (any chunk)."""
        self._last_audio_at = now

    def at_boundary(self, now: float) -> bool:
        """True when no assistant turn is open and the assistant has been quiet long enough."""
        return not self._turn_open and now - self._last_audio_at >= self._s.handover_quiet_s

    def decide(self, now: float, *, next_ready: bool) -> HandoverAction:
        """What to do at ``now``: nothing yet, prepare the next stream, or switch to it."""
        if now < self._due_at:
            return HandoverAction.WAIT
        if not next_ready:
            return HandoverAction.PREPARE if now >= self._prepare_at else HandoverAction.WAIT
        if self.at_boundary(now) or now >= self._due_at + self._s.handover_grace_s:
            return HandoverAction.SWITCH
        return HandoverAction.WAIT

    def next_wakeup(self, now: float, *, next_ready: bool = True) -> float:
        """The next time :meth:`decide` may answer differently (absent new notes).

        With no next stream ready that is the next preparation attempt (inf after a fatal
        failure: then only a new note, such as the current stream failing, changes anything).
        """
        if now < self._due_at:
            return self._due_at
        if not next_ready:
            return max(now, self._prepare_at)
        candidates = [self._due_at + self._s.handover_grace_s]
        if not self._turn_open:
            candidates.append(self._last_audio_at + self._s.handover_quiet_s)
        return max(now, min(candidates))

    # ---------------------------------------------------------------- failures

    def prepare_failed(self, now: float, *, retryable: bool) -> float | None:
        """The next stream failed to open or to take over at ``now``: when to try again.

        Returns the time of the next attempt (backoff doubling from ``reopen_backoff_s`` up to
        :data:`PREPARE_BACKOFF_MAX_S`), or None when ``retryable`` is False: no more attempts for
        the current stream, which goes on until it ends.
        """
        self._prepare_failures += 1
        if not retryable:
            self._prepare_at = math.inf
            return None
        backoff = self._s.reopen_backoff_s * 2 ** (self._prepare_failures - 1)
        self._prepare_at = now + min(backoff, max(PREPARE_BACKOFF_MAX_S, self._s.reopen_backoff_s))
        return self._prepare_at

    @property
    def prepare_failures(self) -> int:
        """Failed attempts to prepare the current stream's successor."""
        return self._prepare_failures

    def stream_failed(self) -> float | None:
        """Count a failure; return the backoff before the next attempt, or None to give up."""
        self._failures += 1
        if self._failures > self._s.max_reopen_attempts:
            return None
        return self._s.reopen_backoff_s * (2 ** (self._failures - 1)) if self._failures > 1 else 0.0

    def stream_healthy(self) -> None:
        """The current stream delivered output: reset the consecutive-failure count."""
        self._failures = 0

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last healthy stream."""
        return self._failures
