"""Sans-I/O model of Twilio's outbound playback queue, as the simulated peer runs it.

Theory of operation (how Twilio plays a stream's audio). Outbound ``media`` payloads and ``mark``s share
one FIFO. Audio plays in real time at 8000 μ-law bytes per second from the moment it is queued on an
idle line; a mark completes ("echoes") once every byte queued before it has played, or at once when
nothing is queued. ``clear`` drops all queued audio and completes every pending mark immediately,
flagged ``cleared``: an echo means "played OR cleared".

The buffer also keeps the listener's view: an *answer* is a stretch of heard assistant audio; it
starts when audio begins to play on an idle line and ends when the line has been idle for
``answer_gap_s`` (then its end time is when the last byte finished) or when a ``clear`` interrupts
it. Per answer it counts bytes received, heard and cleared.

Time is an argument (seconds, any monotonic origin): every method takes ``now`` and first plays
whatever is due up to ``now``, so the results do not depend on how often the owner calls. Nothing
here sleeps or does I/O; the peer's playout task calls :meth:`advance` on a 20 ms tick while
:meth:`next_wakeup` says something is due.
"""

from __future__ import annotations

from collections import deque
from typing import Final, final

import attrs
import msgspec

__all__ = [
    "AnswerEnded",
    "AnswerPlayback",
    "AnswerStarted",
    "MarkDone",
    "PlaybackBuffer",
    "PlaybackEvent",
]

ULAW_BYTES_PER_SECOND: Final = 8000


class MarkDone(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A mark whose audio finished playing (``cleared`` False) or was dropped by a clear (True)."""

    name: str
    at: float
    cleared: bool = False


class AnswerStarted(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Assistant audio began to play on an idle line."""

    index: int
    at: float


class AnswerEnded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An answer finished playing (``at`` = when its last byte played) or was cleared mid-way."""

    index: int
    at: float
    heard_bytes: int
    interrupted: bool


type PlaybackEvent = MarkDone | AnswerStarted | AnswerEnded


@attrs.define
class AnswerPlayback:
    """Accounting for one answer (mutable while it plays; copy with :meth:`snapshot`)."""

    index: int
    started_at: float
    ended_at: float | None = None
    received_bytes: int = 0
    heard_bytes: int = 0
    cleared_bytes: int = 0
    interrupted: bool = False

    def snapshot(self) -> AnswerPlayback:
        """Return a copy that later playback does not change."""
        return attrs.evolve(self)


@attrs.define
class _Audio:
    remaining: int


type _Item = _Audio | str  # str = a mark name


@final
class PlaybackBuffer:
    """Twilio's outbound playback queue with marks, clear and heard-audio accounting."""

    def __init__(
        self,
        *,
        bytes_per_second: int = ULAW_BYTES_PER_SECOND,
        answer_gap_s: float = 0.3,
    ) -> None:
        self._rate = bytes_per_second
        self._gap = answer_gap_s
        self._queue: deque[_Item] = deque()
        self._busy = False
        self._busy_since = 0.0
        self._busy_played = 0  # bytes played since ``_busy_since``
        self._idle_since = 0.0
        self._answers: list[AnswerPlayback] = []
        self._open: AnswerPlayback | None = None
        self.received_bytes = 0
        self.heard_bytes = 0
        self.cleared_bytes = 0

    # ----------------------------------------------------------------- inputs

    def enqueue_audio(self, payload_len: int, now: float) -> list[PlaybackEvent]:
        """Queue ``payload_len`` bytes of μ-law behind what is queued; may start a new answer."""
        events = self.advance(now)
        if payload_len <= 0:
            return events
        if self._open is None:
            self._open = AnswerPlayback(index=len(self._answers), started_at=now)
            self._answers.append(self._open)
            events.append(AnswerStarted(index=self._open.index, at=now))
        if not self._busy:
            self._busy = True
            self._busy_since = now
            self._busy_played = 0
        self._queue.append(_Audio(payload_len))
        self._open.received_bytes += payload_len
        self.received_bytes += payload_len
        return events

    def enqueue_mark(self, name: str, now: float) -> list[PlaybackEvent]:
        """Queue a mark behind the audio; it completes at once when nothing is queued."""
        events = self.advance(now)
        if self._busy:
            self._queue.append(name)
        else:
            events.append(MarkDone(name=name, at=now))
        return events

    def clear(self, now: float) -> list[PlaybackEvent]:
        """Drop all queued audio and complete every pending mark (flagged ``cleared``)."""
        events = self.advance(now)
        dropped = 0
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, str):
                events.append(MarkDone(name=item, at=now, cleared=True))
            else:
                dropped += item.remaining
        if self._busy:
            self._busy = False
            self._idle_since = now
        self.cleared_bytes += dropped
        if self._open is not None:
            self._open.cleared_bytes += dropped
            if dropped:
                self._open.interrupted = True
                events.append(self._close_answer(now))
        return events

    def close(self, now: float) -> list[PlaybackEvent]:
        """The call is over: play what was due, drop the rest unheard, end the open answer.

        Pending marks are dropped without an echo (the socket is gone).
        """
        events = self.advance(now)
        dropped = sum(item.remaining for item in self._queue if isinstance(item, _Audio))
        self._queue.clear()
        if self._busy:
            self._busy = False
            self._idle_since = now
        if self._open is not None:
            self._open.interrupted = self._open.interrupted or dropped > 0
            events.append(self._close_answer(min(now, self._idle_since)))
        return events

    def advance(self, now: float) -> list[PlaybackEvent]:
        """Play everything due up to ``now``; return completed marks and answers that ended."""
        events: list[PlaybackEvent] = []
        if self._busy:
            # The epsilon absorbs float error: 0.2 s must be exactly 1600 bytes.
            budget = int((now - self._busy_since) * self._rate + 1e-6) - self._busy_played
            while self._queue and budget >= 0:
                item = self._queue[0]
                if isinstance(item, str):
                    self._queue.popleft()
                    events.append(MarkDone(name=item, at=self._played_until()))
                    continue
                take = min(item.remaining, budget)
                item.remaining -= take
                budget -= take
                self._busy_played += take
                self.heard_bytes += take
                if self._open is not None:
                    self._open.heard_bytes += take
                if item.remaining:
                    break
                self._queue.popleft()
            if not self._queue:
                self._busy = False
                self._idle_since = self._played_until()
        if not self._busy and self._open is not None and now - self._idle_since >= self._gap:
            events.append(self._close_answer(self._idle_since))
        return events

    # ----------------------------------------------------------------- queries

    def next_wakeup(self) -> float | None:
        """When :meth:`advance` next has work: ``None`` while idle with no answer open.

        While audio is queued the answer is "now" (the owner ticks every 20 ms); while the line is
        idle with an answer open, the time at which the answer counts as ended.
        """
        if self._busy:
            return self._busy_since
        if self._open is not None:
            return self._idle_since + self._gap
        return None

    @property
    def busy(self) -> bool:
        """True while audio is queued and playing."""
        return self._busy

    @property
    def queued_bytes(self) -> int:
        """Audio bytes queued and not yet played."""
        return sum(item.remaining for item in self._queue if isinstance(item, _Audio))

    @property
    def pending_marks(self) -> list[str]:
        """Names of marks not yet completed, in order."""
        return [item for item in self._queue if isinstance(item, str)]

    def current_answer(self) -> AnswerPlayback | None:
        """A snapshot of the answer now playing (or idle within the gap), if any."""
        return None if self._open is None else self._open.snapshot()

    def answers(self) -> list[AnswerPlayback]:
        """Snapshots of every answer so far, in order."""
        return [answer.snapshot() for answer in self._answers]

    def ms(self, byte_count: int) -> float:
        """Convert a μ-law byte count into milliseconds of audio."""
        return byte_count * 1000 / self._rate

    # ----------------------------------------------------------------- internals

    def _played_until(self) -> float:
        return self._busy_since + self._busy_played / self._rate

    def _close_answer(self, at: float) -> AnswerEnded:
        answer = self._open
        assert answer is not None
        answer.ended_at = at
        self._open = None
        return AnswerEnded(
            index=answer.index,
            at=at,
            heard_bytes=answer.heard_bytes,
            interrupted=answer.interrupted,
        )
