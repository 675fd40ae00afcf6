"""The caller's keypad entries, sans I/O: DTMF digits in, one complete entry out.

Twilio sends each key the caller presses as its own ``dtmf`` message; Nova Sonic does not hear
DTMF tones, so the call tells the model in text. Sent one key at a time, a four-digit PIN would be
four separate USER turns, each answered on its own. :class:`DigitCollector` groups the keys into
ENTRIES, as an IVR's "gather" does. An entry ends when:

* the terminator arrives (``#`` by default; not part of the entry; empty disables it),
* ``interdigit_ms`` pass after the last key without another one (the shell asks for
  :attr:`DigitCollector.deadline` and calls :meth:`DigitCollector.expire` when it passes), or
* the entry reaches ``max_digits``, or
* the shell ends it at once with :meth:`DigitCollector.take` (an intent recognised the keys so far).

A terminator with no digits pending is an entry of its own (empty ``digits``): the caller pressing
``#`` alone may mean "skip" or "done". The one exception is the terminator that closes an entry the
length limit already ended (pressed within ``interdigit_ms`` of it): it is dropped, so a caller who
types the longest entry and then ``#`` out of habit gives one entry, not two.

Times are arguments (seconds on any monotonic clock; the shell passes anyio's); nothing here reads
a clock or does I/O.
"""

from __future__ import annotations

from typing import Final, Literal, final

import attrs

__all__ = ["DTMF_KEYS", "DigitCollector", "DtmfEntry", "DtmfSettings"]

DTMF_KEYS: Final = frozenset("0123456789*#ABCD")
"""The keys a DTMF keypad can send (Twilio sends ``0-9``, ``*`` and ``#``)."""

EndedBy = Literal["terminator", "timeout", "max_digits", "intent"]


def _terminator(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value and value not in DTMF_KEYS:
        raise ValueError(f"the DTMF terminator must be one DTMF key or empty, got {value!r}")


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@final
@attrs.frozen
class DtmfSettings:
    """How keys are grouped into entries.

    Attributes:
        interdigit_ms: an entry ends this long after its last key. 2 s: a caller typing a number
            they know presses keys well under a second apart, and a single-key menu choice
            (which has no terminator) is passed on 2 s after the press, about when the caller
            expects a reaction.
        terminator: the key that ends an entry at once ("" disables it).
        max_digits: an entry ends when it has this many keys (20 covers a 19-digit card number
            and a 15-digit E.164 phone number).
    """

    interdigit_ms: int = attrs.field(default=2000, validator=_positive)
    terminator: str = attrs.field(default="#", validator=_terminator)
    max_digits: int = attrs.field(default=20, validator=_positive)


@final
@attrs.frozen
class DtmfEntry:
    """One complete keypad entry.

    Attributes:
        digits: the keys pressed, in order, without the terminator (may be empty: a lone
            terminator).
        ended_by: what ended it.
        at: when it ended (the terminator's or last key's time, or the deadline that passed).
    """

    digits: str
    ended_by: EndedBy
    at: float


@final
class DigitCollector:
    """Collects keys into entries; see the module docstring."""

    __slots__ = ("_drop_terminator_until", "_last_at", "_pending", "_settings")

    def __init__(self, settings: DtmfSettings) -> None:
        self._settings = settings
        self._pending: list[str] = []
        self._last_at = 0.0
        self._drop_terminator_until: float | None = None

    @property
    def pending(self) -> str:
        """The keys of the entry in progress."""
        return "".join(self._pending)

    @property
    def deadline(self) -> float | None:
        """When the entry in progress ends by timeout (None: no entry in progress)."""
        if not self._pending:
            return None
        return self._last_at + self._settings.interdigit_ms / 1000.0

    def press(self, key: str, at: float) -> DtmfEntry | None:
        """The caller pressed ``key`` at time ``at``; return the entry this completes, if any.

        An entry in progress whose deadline passed before ``at`` is NOT returned here: the shell
        calls :meth:`expire` at the deadline, before it can receive a later key.

        Raises:
            ValueError: ``key`` is not a DTMF key.
        """
        if key not in DTMF_KEYS:
            raise ValueError(f"not a DTMF key: {key!r}")
        settings = self._settings
        if settings.terminator and key == settings.terminator:
            drop_until = self._drop_terminator_until
            self._drop_terminator_until = None
            if not self._pending and drop_until is not None and at <= drop_until:
                return None
            return self._take("terminator", at)
        self._drop_terminator_until = None
        self._pending.append(key)
        self._last_at = at
        if len(self._pending) >= settings.max_digits:
            if settings.terminator:
                self._drop_terminator_until = at + settings.interdigit_ms / 1000.0
            return self._take("max_digits", at)
        return None

    def expire(self, now: float) -> DtmfEntry | None:
        """Return the entry in progress if its deadline is at or before ``now``."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return None
        return self._take("timeout", deadline)

    def take(self, at: float) -> DtmfEntry | None:
        """End the entry in progress at ``at`` (an intent recognised its keys); None if there is
        none. A terminator pressed within the inter-digit time after it is dropped."""
        if not self._pending:
            return None
        if self._settings.terminator:
            self._drop_terminator_until = at + self._settings.interdigit_ms / 1000.0
        return self._take("intent", at)

    def _take(self, ended_by: EndedBy, at: float) -> DtmfEntry:
        entry = DtmfEntry(digits="".join(self._pending), ended_by=ended_by, at=at)
        self._pending.clear()
        return entry
