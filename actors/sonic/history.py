"""What a new Sonic session must be told: the text history and the last seconds of caller audio.

Rules:

* The history records FINAL text only: the caller's ASR (USER) and what the assistant said
  (ASSISTANT). SPECULATIVE text never enters it (the protocol core does not offer it).
* It reflects what the caller *heard*: PlaybackEgress reports how much of an assistant turn was
  played before a barge-in; :meth:`ConversationHistory.note_heard` keeps that fraction and
  :meth:`ConversationHistory.shaped` cuts the turn's text proportionally (by words) when a
  snapshot is taken, so the report may arrive before or after the FINAL text.
* A snapshot is shaped for Sonic: consecutive same-role turns merged, a trailing USER turn dropped
  when its audio will be replayed, bounded in count, per-turn size and total size (oldest dropped
  first), and leading ASSISTANT turns dropped so the first turn is USER.
* :class:`CallerAudioRing` keeps the last ``replay_audio_ms`` of caller PCM for replay.

Pure data structures: no I/O, no clock; memory is bounded (entries are pruned well beyond what any
snapshot can use).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, final

import attrs
import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CallerAudioRing", "ConversationHistory", "HistoryTurn", "Role"]

Role = Literal["USER", "ASSISTANT"]


class HistoryTurn(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One text turn replayed into a new session."""

    role: Role
    text: str


@attrs.define
class _Entry:
    role: Role
    text: str
    turn_id: int | None  # assistant turn id, None for USER
    heard_fraction: float = 1.0


def _clip_utf8(text: str, max_bytes: int) -> str:
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode(errors="ignore").rstrip()


def _cut_words(text: str, fraction: float) -> str:
    if fraction >= 1.0:
        return text
    words = text.split()
    keep = math.floor(len(words) * max(fraction, 0.0) + 1e-9)
    return " ".join(words[:keep])


@final
class ConversationHistory:
    """The conversation's FINAL text turns, shaped on demand for a new session.

    Args:
        max_turns: turns in a snapshot (after merging).
        max_bytes_per_turn: UTF-8 bytes per turn in a snapshot (longer turns are clipped).
        max_total_bytes: UTF-8 bytes of all turns in a snapshot (oldest turns dropped first).
    """

    def __init__(self, *, max_turns: int, max_bytes_per_turn: int, max_total_bytes: int) -> None:
        self._max_turns = max_turns
        self._max_bytes_per_turn = max_bytes_per_turn
        self._max_total_bytes = max_total_bytes
        self._entries: list[_Entry] = []
        self._pending_heard: dict[int, float] = {}
        self._last_assistant_turn: int | None = None

    def seed(self, turns: Sequence[HistoryTurn]) -> None:
        """Start from ``turns`` of an earlier conversation of the same call (already cut to what
        was heard): a restarted session continues the conversation instead of starting blank."""
        for turn in turns:
            text = turn.text.strip()
            if text:
                self._append(_Entry(turn.role, text, None))

    def seal(self) -> None:
        """A new conversation continues this history: its assistant turns are numbered from 1
        again, so the turns recorded so far can no longer be named by a turn id."""
        for entry in self._entries:
            entry.turn_id = None
        self._pending_heard.clear()
        self._last_assistant_turn = None

    def add_user(self, text: str) -> None:
        """Record a FINAL caller transcript (empty or blank text is ignored)."""
        text = text.strip()
        if text:
            self._append(_Entry("USER", text, None))

    def add_assistant(self, text: str, *, turn_id: int) -> None:
        """Record FINAL assistant text belonging to assistant turn ``turn_id``."""
        text = text.strip()
        if not text:
            return
        fraction = self._pending_heard.pop(turn_id, 1.0)
        self._last_assistant_turn = turn_id
        self._append(_Entry("ASSISTANT", text, turn_id, fraction))

    def note_heard(self, turn_id: int | None, heard_fraction: float) -> None:
        """Record that the caller heard only ``heard_fraction`` (0..1) of an assistant turn.

        Args:
            turn_id: the assistant turn (``SonicAudioStarted.turn_id``); None means the latest
                turn that has text, or the next one to arrive if none has yet.
            heard_fraction: played share of the turn's audio; clamped to [0, 1].
        """
        fraction = min(max(heard_fraction, 0.0), 1.0)
        target = turn_id if turn_id is not None else self._last_assistant_turn
        matched = False
        if target is not None:
            for entry in self._entries:
                if entry.turn_id == target:
                    entry.heard_fraction = fraction
                    matched = True
        if not matched and turn_id is not None:
            # The FINAL text has not arrived yet: apply it when it does. Bounded: old ids expire.
            self._pending_heard[turn_id] = fraction
            for stale in [k for k in self._pending_heard if k < turn_id - 8]:
                del self._pending_heard[stale]

    def truncate_last_assistant(self, heard_ms: float, total_ms: float) -> None:
        """Cut the latest assistant turn to the share the caller heard (``heard_ms / total_ms``)."""
        fraction = 1.0 if total_ms <= 0 else heard_ms / total_ms
        self.note_heard(None, fraction)

    def shaped(self, *, drop_trailing_user: bool = False) -> list[HistoryTurn]:
        """Return the history as Sonic must receive it (see the module rules)."""
        merged: list[list[str]] = []
        roles: list[Role] = []
        for entry in self._entries:
            text = _cut_words(entry.text, entry.heard_fraction)
            if not text:
                continue
            if roles and roles[-1] == entry.role:
                merged[-1].append(text)
            else:
                roles.append(entry.role)
                merged.append([text])
        turns = [
            HistoryTurn(role=role, text=_clip_utf8(" ".join(parts), self._max_bytes_per_turn))
            for role, parts in zip(roles, merged, strict=True)
        ]
        if drop_trailing_user and turns and turns[-1].role == "USER":
            turns.pop()
        turns = turns[-self._max_turns :] if self._max_turns else []
        total = sum(len(t.text.encode()) for t in turns)
        while turns and total > self._max_total_bytes:
            total -= len(turns.pop(0).text.encode())
        while turns and turns[0].role != "USER":
            turns.pop(0)
        return turns

    def statistics(self) -> dict[str, int]:
        """Entries held and pending heard-reports (for snapshots and tests)."""
        return {"entries": len(self._entries), "pending_heard": len(self._pending_heard)}

    def _append(self, entry: _Entry) -> None:
        self._entries.append(entry)
        # Keep memory bounded: a snapshot never uses more than max_turns merged turns, and merged
        # turns come from at least one entry each; 4x leaves room for merging and truncation.
        limit = max(4 * self._max_turns, 16)
        if len(self._entries) > limit:
            del self._entries[: len(self._entries) - limit]


@final
class CallerAudioRing:
    """The last ``capacity`` bytes of caller PCM, for replay into a new session.

    Args:
        capacity: bytes kept (``SonicSettings.replay_bytes``); 0 keeps nothing.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._buffer = bytearray()
        self._total = 0

    def append(self, pcm: bytes) -> None:
        """Add caller PCM; the oldest bytes beyond the capacity are forgotten."""
        self._total += len(pcm)
        if self._capacity == 0:
            return
        self._buffer += pcm
        excess = len(self._buffer) - self._capacity
        if excess > 0:
            # Keep whole 16-bit samples: capacity is even, so is the excess.
            del self._buffer[:excess]

    def snapshot(self) -> bytes:
        """The buffered PCM, oldest first."""
        return bytes(self._buffer)

    @property
    def total_bytes(self) -> int:
        """Bytes appended since creation (the caller-audio position of the ring's end)."""
        return self._total
