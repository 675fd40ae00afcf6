"""What an operator sees of one live call: :class:`CallView` (``/debug/actors``, the debug page).

Rules: identifiers (CallSid, StreamSid) are shown as they are: they name the call in every log line
already. The caller's and the called number (the ``from`` / ``to`` stream parameters, present only
when the webhook passes them) are PII: masked to their last two digits unless the operator turned
PII logging on. The tree is the CallSupervisor's snapshot (states, mailboxes, counters, restarts
and its recent supervisor events); ``floor`` is copied out of TurnTaker's counters so a reader
need not walk the tree for the one thing everybody asks ("who is talking?").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from actors.call._snapshot import CallActorSnapshot
from actors.runtime import SupervisorSnapshot

if TYPE_CHECKING:
    from actors.call.ports import CallIdentity

__all__ = ["CallView", "call_view", "mask_number"]

_CALLER_KEY: Final = "from"
_CALLED_KEY: Final = "to"
_TURN_TAKER: Final = "turn_taker"


class CallView(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One live call for operators (msgspec-encodable)."""

    call_sid: str
    stream_sid: str
    age_s: float
    """Seconds since the call's ``start`` was read."""
    floor: str | None
    """Who holds the floor now (TurnTaker's state; None before TurnTaker has run)."""
    caller: str | None
    """The caller's number, masked unless PII is revealed; None when the webhook did not pass it."""
    called: str | None
    """The dialled number, masked likewise."""
    tree: SupervisorSnapshot


def mask_number(number: str) -> str:
    """``+14155550167`` -> ``*********67``: enough to tell two calls apart, not to dial."""
    keep = 2 if len(number) > 4 else 0
    return "*" * (len(number) - keep) + number[len(number) - keep :]


def call_view(
    identity: CallIdentity, tree: SupervisorSnapshot, *, now: float, reveal_pii: bool
) -> CallView:
    """Build the view of a call from its identity and a fresh snapshot of its tree."""
    params = identity.custom_parameters

    def number(key: str) -> str | None:
        value = params.get(key)
        if value is None or reveal_pii:
            return value
        return mask_number(value)

    floor: str | None = None
    for child in tree.children:
        if isinstance(child, CallActorSnapshot) and child.name == _TURN_TAKER:
            value = child.counters.get("floor")
            floor = None if value is None else str(value)
    return CallView(
        call_sid=identity.call_sid,
        stream_sid=identity.stream_sid,
        age_s=round(max(0.0, now - identity.started_at), 3),
        floor=floor,
        caller=number(_CALLER_KEY),
        called=number(_CALLED_KEY),
        tree=tree,
    )
