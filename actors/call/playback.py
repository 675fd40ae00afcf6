"""PlaybackEgress's sans-I/O core: a paced playout queue with mark-based heard accounting.

Theory of operation (Twilio Media Streams: outbound ``media``, ``mark`` and ``clear``):

* Input is 8 kHz μ-law per assistant turn (:meth:`PlayoutQueue.enqueue`), closed by
  :meth:`PlayoutQueue.end_turn`. Turns play strictly in arrival order; a chunk never spans two
  turns, so every mark belongs to exactly one turn.
* Pacing: Twilio plays what we send in real time and buffers the rest. We keep at most
  ``lead_ms`` of audio buffered there, estimated from time alone: ``lead = sent_ms - (now -
  origin)`` where ``origin`` is when the current playing segment started (the first send into an
  empty Twilio buffer). A chunk (``chunk_ms``, a multiple of 20 ms) goes out when ``lead + chunk
  <= lead_ms``, or whenever the estimated buffer is empty. The tail of a turn is padded with μ-law
  silence to a whole 20 ms frame and sent without waiting for a full chunk. When the model is
  slower than real time and the buffer is about to run dry, whole frames go out early.
  :meth:`PlayoutQueue.next_deadline` says when the next chunk becomes due, so the shell sleeps
  until an absolute deadline and never polls.
* Marks: every chunk is followed by a mark named ``"{generation}:{seq}"``; ``seq`` counts chunks
  within the generation and maps to ``(turn, cumulative ms of that turn)``. An echo of a current
  generation mark means that audio was PLAYED (marks echo in FIFO order, so every earlier mark is
  consumed too); it advances the turn's heard position and tightens the clock estimate (Twilio
  cannot have played more than the mark's position by the echo's arrival).
* Clear (barge-in): :meth:`PlayoutQueue.clear` bumps the generation, drops queued audio, resets the
  clock (Twilio's buffer is empty afterwards) and reports every interrupted turn with the position
  heard so far. Marks alone would make that position as coarse as a chunk (the last echo), so once
  the playing segment has had an echo, the position is read from the clock instead: ``now -
  origin``, where the echoes have already moved ``origin`` late enough that the clock never runs
  ahead of Twilio's playback (an echo arrives after its audio played, plus the way back). Before a
  segment's first echo the clock would include the forward network delay, so only marks count. Echoes arriving afterwards for marks of older generations mean "cleared", not
  "played": they are ignored (counted), as is late audio of the cleared turns.
* Outputs are returned as values (:data:`PlayoutOutput`) for the shell to perform, in order.

No I/O, no clock: every method that depends on time takes ``now`` (seconds, ``anyio.current_time``).
"""

from __future__ import annotations

from collections import deque
from typing import Final, final

import attrs
import msgspec

from actors.call.protocol import PlaybackFinished, PlaybackStarted
from audiocodec import ULAW_SILENCE, Resampler, ulaw_encode

__all__ = [
    "BYTES_PER_MS",
    "FRAME_BYTES",
    "FRAME_MS",
    "AssistantAudioEncoder",
    "PlayoutOutput",
    "PlayoutQueue",
    "PlayoutStatistics",
    "SendClear",
    "SendMark",
    "SendMedia",
    "format_mark",
    "parse_mark",
]

FRAME_MS: Final = 20
"""Twilio's frame: every chunk we send is a whole number of these."""
BYTES_PER_MS: Final = 8
"""8 kHz μ-law: one byte per sample."""
FRAME_BYTES: Final = FRAME_MS * BYTES_PER_MS
_SILENCE_FRAME: Final = bytes([ULAW_SILENCE]) * FRAME_BYTES
_EPSILON_MS: Final = 1e-3  # float slack so that polling at a computed deadline always sends
# The first chunk into an empty Twilio buffer is short, so that its mark echoes early and anchors
# the clock that heard accounting reads at a clear (module docstring).
_FIRST_CHUNK_MS: Final = 40


class SendMedia(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Send one ``media`` frame carrying ``payload`` (8 kHz μ-law, whole 20 ms frames)."""

    turn_id: int
    payload: bytes


class SendMark(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Send one ``mark`` frame named ``name`` right after the media it follows."""

    name: str


class SendClear(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Send ``clear``: Twilio drops its buffer and echoes every pending mark."""

    generation: int
    """The generation that starts with this clear."""


PlayoutOutput = SendMedia | SendMark | SendClear | PlaybackStarted | PlaybackFinished
"""What the shell must do (``Send*``) or tell TurnTaker (``Playback*``), in order."""


def format_mark(generation: int, seq: int) -> str:
    """Name a mark ``"{generation}:{seq}"``."""
    return f"{generation}:{seq}"


def parse_mark(name: str) -> tuple[int, int] | None:
    """Parse ``"{generation}:{seq}"``; None for a name we did not produce."""
    gen, sep, seq = name.partition(":")
    if not sep or not gen.isdigit() or not seq.isdigit():
        return None
    return int(gen), int(seq)


@attrs.define
class PlayoutStatistics:
    """Counters of one call's playout; never reset."""

    chunks_sent: int = 0
    ms_sent: float = 0.0
    marks_echoed: int = 0
    marks_stale: int = 0
    """Echoes of older generations (cleared, not played) and unknown or already-consumed names."""
    clears: int = 0
    ms_dropped_by_clear: float = 0.0
    """Queued audio that never went out because of a clear."""
    ms_stale_audio: float = 0.0
    """Late audio of cleared turns, ignored."""
    ms_dropped_overflow: float = 0.0
    """Model audio beyond ``max_queued_ms`` held locally: dropped (newest first), counted."""
    underruns: int = 0
    """Twilio's buffer ran dry in the middle of a turn (the model was slower than real time)."""
    max_lead_ms: float = 0.0


@attrs.define
class _Turn:
    turn_id: int
    pending: bytearray = attrs.field(factory=bytearray)
    received_ms: float = 0.0
    sent_ms: float = 0.0
    heard_ms: float = 0.0
    generation: int = 0
    started: bool = False
    ended: bool = False


@attrs.frozen
class _MarkRecord:
    turn_id: int
    turn_pos_ms: float
    segment: int
    segment_pos_ms: float
    chunk_ms: float


@final
class PlayoutQueue:
    """The paced playout queue of one call (see the module docstring).

    Args:
        lead_ms: most audio to keep buffered at Twilio, in ms.
        chunk_ms: size of a media chunk in ms; a positive multiple of 20.
        max_queued_ms: most audio held locally, not yet sent (model audio arrives faster than
            real time; this bounds a runaway answer's memory). Audio beyond it is dropped and
            counted in ``ms_dropped_overflow``: a 2-minute answer is far past any phone reply.

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self, *, lead_ms: float = 100.0, chunk_ms: int = 40, max_queued_ms: float = 120_000.0
    ) -> None:
        if chunk_ms <= 0 or chunk_ms % FRAME_MS:
            raise ValueError(f"chunk_ms must be a positive multiple of {FRAME_MS}, got {chunk_ms}")
        if lead_ms < FRAME_MS:
            raise ValueError(f"lead_ms must be at least {FRAME_MS}, got {lead_ms}")
        self._lead_ms = float(lead_ms)
        self._max_queued_bytes = int(max_queued_ms * BYTES_PER_MS)
        self._chunk_bytes = chunk_ms * BYTES_PER_MS
        self._first_chunk_bytes = min(self._chunk_bytes, _FIRST_CHUNK_MS * BYTES_PER_MS)
        self._generation = 0
        self._seq = 0
        self._dropped_through = -1
        self._turns: dict[int, _Turn] = {}
        self._marks: deque[tuple[int, _MarkRecord]] = deque()
        self._origin: float | None = None
        self._segment = 0
        self._segment_sent_ms = 0.0
        self._segment_echoed = False
        self.stats = PlayoutStatistics()

    # ------------------------------------------------------------------ introspection

    @property
    def generation(self) -> int:
        """The current playback generation."""
        return self._generation

    @property
    def queued_ms(self) -> float:
        """Audio held locally, not yet sent."""
        return sum(len(t.pending) for t in self._turns.values()) / BYTES_PER_MS

    @property
    def pending_marks(self) -> int:
        """Marks of the current generation sent and not yet echoed."""
        return len(self._marks)

    def lead_ms(self, now: float) -> float:
        """Estimated audio buffered at Twilio at ``now``."""
        if self._origin is None:
            return 0.0
        return max(0.0, self._segment_sent_ms - (now - self._origin) * 1000.0)

    def is_idle(self) -> bool:
        """True when no turn is queued, playing or waiting for its final echo."""
        return not self._turns

    def is_stale(self, turn_id: int) -> bool:
        """True if audio of ``turn_id`` would be dropped (cleared, or already ended)."""
        turn = self._turns.get(turn_id)
        return turn_id <= self._dropped_through or (turn is not None and turn.ended)

    # ------------------------------------------------------------------ inputs

    def count_stale(self, ms: float) -> None:
        """Count late audio the shell dropped before converting it (see :meth:`is_stale`)."""
        self.stats.ms_stale_audio += ms

    def enqueue(self, turn_id: int, ulaw: bytes) -> bool:
        """Queue 8 kHz μ-law audio of ``turn_id``; returns False if it was stale and dropped."""
        if self.is_stale(turn_id):
            self.count_stale(len(ulaw) / BYTES_PER_MS)
            return False
        room = self._max_queued_bytes - sum(len(t.pending) for t in self._turns.values())
        if len(ulaw) > room:
            self.stats.ms_dropped_overflow += (len(ulaw) - max(room, 0)) / BYTES_PER_MS
            ulaw = ulaw[: max(room, 0)]
        turn = self._turns.get(turn_id)
        if turn is None:
            turn = self._turns[turn_id] = _Turn(turn_id=turn_id, generation=self._generation)
        turn.pending += ulaw
        turn.received_ms += len(ulaw) / BYTES_PER_MS
        return True

    def end_turn(self, turn_id: int, now: float) -> list[PlayoutOutput]:
        """No more audio will come for ``turn_id``; may finish it at once if all was heard."""
        turn = self._turns.get(turn_id)
        if turn is None or turn.ended:
            return []
        turn.ended = True
        return self._finish_if_heard(turn, now)

    def clear(self, generation: int, through_turn_id: int, now: float) -> list[PlayoutOutput]:
        """Barge-in: start ``generation``, send ``clear``, drop queued audio of cleared turns.

        A turn is cleared when its id is ``<= through_turn_id`` or some of its audio was already
        sent. Turns newer than ``through_turn_id`` that have not started keep their queued audio.
        A ``generation`` not newer than the current one is a duplicate and ignored.
        """
        if generation <= self._generation:
            return []
        self._account_by_clock(now)
        old = self._generation
        out: list[PlayoutOutput] = [SendClear(generation=generation)]
        for turn in list(self._turns.values()):
            if turn.turn_id > through_turn_id and turn.sent_ms == 0.0:
                turn.generation = generation
                continue
            self.stats.ms_dropped_by_clear += len(turn.pending) / BYTES_PER_MS
            del self._turns[turn.turn_id]
            self._dropped_through = max(self._dropped_through, turn.turn_id)
            out.append(self._finished(turn, old, now, interrupted=True))
        self._dropped_through = max(self._dropped_through, through_turn_id)
        self._generation = generation
        self._seq = 0
        self._marks.clear()
        self._origin = None
        self._segment_echoed = False
        self.stats.clears += 1
        return out

    def mark_echoed(self, name: str, now: float) -> list[PlayoutOutput]:
        """Twilio echoed mark ``name`` at ``now``: account heard audio of the current generation."""
        parsed = parse_mark(name)
        if parsed is None or parsed[0] != self._generation:
            self.stats.marks_stale += 1
            return []
        seq = parsed[1]
        if not self._marks or seq < self._marks[0][0]:
            self.stats.marks_stale += 1
            return []
        out: list[PlayoutOutput] = []
        touched: dict[int, _Turn] = {}
        while self._marks and self._marks[0][0] <= seq:
            _, rec = self._marks.popleft()
            self.stats.marks_echoed += 1
            turn = self._turns.get(rec.turn_id)
            if turn is not None:
                turn.heard_ms = max(turn.heard_ms, rec.turn_pos_ms)
                touched[turn.turn_id] = turn
            if rec.segment == self._segment and self._origin is not None:
                # Twilio had played at most this far when the echo arrived: never assume more.
                self._origin = max(self._origin, now - rec.segment_pos_ms / 1000.0)
                self._segment_echoed = True
        for turn in touched.values():
            out.extend(self._finish_if_heard(turn, now))
        return out

    # ------------------------------------------------------------------ pacing

    def poll(self, now: float) -> list[PlayoutOutput]:
        """Everything due at ``now``: media chunks with their marks, starts and finishes."""
        out: list[PlayoutOutput] = []
        while True:
            turn = self._sending_turn()
            lead = self.lead_ms(now)
            limit = self._first_chunk_bytes if lead == 0.0 else self._chunk_bytes
            due = None if turn is None else self._candidate(turn, limit)
            if turn is None or due is None or lead > due[1] + _EPSILON_MS:
                return out
            self._send(turn, due[0], now, out)

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`poll` will next have something to send; None if waiting for input.

        The answer may be ``<= now`` (send at once). Consistent with :meth:`poll`: polling at or
        after the deadline sends at least one chunk.
        """
        turn = self._sending_turn()
        if turn is None:
            return None
        if self._origin is None or self.lead_ms(now) == 0.0:
            return now if self._candidate(turn, self._first_chunk_bytes) is not None else None
        due = self._candidate(turn, self._chunk_bytes)
        if due is None:
            return None
        return self._origin + (self._segment_sent_ms - due[1]) / 1000.0

    # ------------------------------------------------------------------ internals

    def _sending_turn(self) -> _Turn | None:
        # The oldest turn that still has audio to send or may receive more.
        for turn in self._turns.values():
            if turn.pending or not turn.ended:
                return turn
        return None

    def _candidate(self, turn: _Turn, limit: int) -> tuple[int, float] | None:
        """The next chunk of ``turn``: (bytes, the highest lead at which it may go), or None.

        A full chunk of at most ``limit`` bytes (or the turn's tail) goes when it fits under
        ``lead_ms``; fewer whole frames of an unfinished turn go only when Twilio's buffer is about
        to run dry. Anything goes into an empty buffer (threshold clamped at 0).
        """
        have = len(turn.pending)
        if have >= limit or (turn.ended and have):
            size = min(have, limit)
            padded = -(-size // FRAME_BYTES) * FRAME_BYTES
            return size, max(0.0, self._lead_ms - padded / BYTES_PER_MS)
        if have >= FRAME_BYTES:
            size = have - have % FRAME_BYTES
            return size, max(0.0, min(float(FRAME_MS), self._lead_ms - size / BYTES_PER_MS))
        return None

    def _send(self, turn: _Turn, size: int, now: float, out: list[PlayoutOutput]) -> None:
        payload = bytes(turn.pending[:size])
        del turn.pending[:size]
        if size % FRAME_BYTES:
            payload += _SILENCE_FRAME[: FRAME_BYTES - size % FRAME_BYTES]
        ms = len(payload) / BYTES_PER_MS
        if self._origin is None or self.lead_ms(now) == 0.0:
            if self._origin is not None and turn.started and not turn.ended:
                self.stats.underruns += 1
            self._origin = now
            self._segment += 1
            self._segment_sent_ms = 0.0
            self._segment_echoed = False
        self._segment_sent_ms += ms
        turn.sent_ms += ms
        self._seq += 1
        name = format_mark(self._generation, self._seq)
        self._marks.append(
            (
                self._seq,
                _MarkRecord(
                    turn_id=turn.turn_id,
                    turn_pos_ms=turn.sent_ms,
                    segment=self._segment,
                    segment_pos_ms=self._segment_sent_ms,
                    chunk_ms=ms,
                ),
            )
        )
        self.stats.chunks_sent += 1
        self.stats.ms_sent += ms
        self.stats.max_lead_ms = max(self.stats.max_lead_ms, self.lead_ms(now))
        out.append(SendMedia(turn_id=turn.turn_id, payload=payload))
        out.append(SendMark(name=name))
        if not turn.started:
            turn.started = True
            out.append(PlaybackStarted(turn_id=turn.turn_id, generation=self._generation, at=now))

    def _account_by_clock(self, now: float) -> None:
        """Advance heard positions to what the clock says Twilio has played (module docstring)."""
        if self._origin is None or not self._segment_echoed:
            return
        played = (now - self._origin) * 1000.0
        for _, rec in self._marks:  # unechoed marks, in send order
            if rec.segment != self._segment:
                continue
            start = rec.segment_pos_ms - rec.chunk_ms
            if played <= start:
                return
            turn = self._turns.get(rec.turn_id)
            if turn is not None:
                into = min(played, rec.segment_pos_ms) - start
                turn.heard_ms = max(turn.heard_ms, rec.turn_pos_ms - rec.chunk_ms + into)

    def _finish_if_heard(self, turn: _Turn, now: float) -> list[PlayoutOutput]:
        if turn.ended and not turn.pending and turn.heard_ms >= turn.sent_ms:
            del self._turns[turn.turn_id]
            return [self._finished(turn, self._generation, now, interrupted=False)]
        return []

    @staticmethod
    def _finished(
        turn: _Turn, generation: int, now: float, *, interrupted: bool
    ) -> PlaybackFinished:
        # Padding of the tail is silence, not the model's audio: never report beyond what came in.
        heard = turn.received_ms if not interrupted else min(turn.heard_ms, turn.received_ms)
        return PlaybackFinished(
            turn_id=turn.turn_id,
            generation=generation,
            position_ms=heard,
            total_ms=turn.received_ms,
            interrupted=interrupted,
            at=now,
        )


@final
class AssistantAudioEncoder:
    """Model PCM (any supported rate) -> 8 kHz μ-law, with ONE stateful resampler per call.

    The resampler's state is the tail of the current turn: it is flushed into the turn at its end
    and discarded on a clear, so turns never bleed into each other.
    """

    def __init__(self, in_rate: int = 24000) -> None:
        self._resampler = Resampler(in_rate, 8000)

    def encode(self, pcm: bytes, rate: int) -> bytes:
        """Convert one chunk; blocks only for CPU (µs per 20 ms)."""
        if rate != self._resampler.in_rate:
            self._resampler = Resampler(rate, 8000)
        return ulaw_encode(self._resampler.process(pcm))

    def end_turn(self) -> bytes:
        """The tail of the current turn, as μ-law; resets the resampler."""
        return ulaw_encode(self._resampler.flush())

    def discard(self) -> None:
        """Drop the current turn's tail (after a clear)."""
        self._resampler.flush()
