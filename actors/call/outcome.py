"""How a call ended, and the WebSocket close code that says so: the ONE place that maps them.

Rules:

* The call's journal records an end reason (``caller_hangup``, ``protocol_error:media.payload``,
  ``sonic_fatal:accessDeniedException``...): a static label, optionally ``:detail``. The label
  picks the :data:`Outcome`; the outcome picks the close code and the close frame's reason.
* Peer faults (``peer_fault``) close with the code RFC 6455 section 7.4.1 gives the fault: 1003
  unsupported data (a binary frame), 1007 invalid payload (text that is not UTF-8, not JSON, bad
  base64), 1008 policy violation (an invalid or out-of-order Twilio message, a control flood),
  1009 message too big. Server faults close with 1011; cancellation (the server shutting down)
  with 1001; every orderly end with 1000 (nothing is sent when the peer has already gone).
* Close reasons are static strings (never the peer's bytes): the frame goes back to the peer and
  the log line carries the detail.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from actors.errors import BrokenByPeer, RemoteProtocolError, ResourceClosed

__all__ = [
    "CallOutcome",
    "Outcome",
    "outcome_for_end_reason",
    "outcome_for_error",
    "peer_fault_end_reason",
]

Outcome = Literal[
    "completed",
    "peer_gone",
    "stopped",
    "drained",
    "cancelled",
    "unsupported_data",
    "invalid_payload",
    "protocol_error",
    "control_flood",
    "message_too_big",
    "framing_error",
    "sonic_failed",
    "failed",
]

# outcome -> (close code, close reason, peer's fault)
_CLOSE: Final[dict[Outcome, tuple[int, str, bool]]] = {
    "completed": (1000, "", False),
    "peer_gone": (1000, "", False),
    "stopped": (1000, "", False),
    # The gateway is stopping: the caller heard the goodbye prompt first.
    "drained": (1001, "going away", False),
    "cancelled": (1001, "going away", False),
    "unsupported_data": (1003, "binary frames are not supported", True),
    "invalid_payload": (1007, "invalid payload", True),
    "protocol_error": (1008, "protocol error", True),
    "control_flood": (1008, "too many control messages", True),
    "message_too_big": (1009, "message too big", True),
    # The WebSocket layer itself refused a malformed frame (and sent 1002 before we knew).
    "framing_error": (1002, "framing error", True),
    "sonic_failed": (1011, "call ended", False),
    "failed": (1011, "call ended", False),
}

# end-reason label (before any ":detail") -> outcome
_BY_LABEL: Final[dict[str, Outcome]] = {
    "caller_hangup": "completed",
    # The model's end_call / transfer_call: the call ended as intended.
    "tool_end_call": "completed",
    "tool_transfer": "completed",
    "socket_closed": "peer_gone",
    "stopped": "stopped",
    "stopped_by_gateway": "stopped",
    "drained": "drained",
    "cancelled": "cancelled",
    "unsupported_data": "unsupported_data",
    "invalid_payload": "invalid_payload",
    "protocol_error": "protocol_error",
    "control_overflow": "control_flood",
    "control_flood": "control_flood",
    "message_too_big": "message_too_big",
    "framing_error": "framing_error",
    "sonic_fatal": "sonic_failed",
    "supervisor_gave_up": "failed",
    "error": "failed",
}


class CallOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one call ended: the outcome, the close code and reason sent, and the journal's reason."""

    outcome: Outcome
    close_code: int
    close_reason: str
    """Static text for the close frame (empty for 1000)."""
    peer_fault: bool
    """True when the peer broke the protocol (logged as a WARNING, never with a traceback)."""
    end_reason: str
    """The journal's end reason (``protocol_error:media.payload``)."""
    detail: str | None = None
    """What ended it, in words (the error's message), for the log line only."""


def outcome_for_end_reason(end_reason: str, detail: str | None = None) -> CallOutcome:
    """The outcome and close code for a journal end reason (an unknown label is a failure)."""
    label = end_reason.partition(":")[0]
    outcome = _BY_LABEL.get(label, "failed")
    code, reason, peer = _CLOSE[outcome]
    return CallOutcome(
        outcome=outcome,
        close_code=code,
        close_reason=reason,
        peer_fault=peer,
        end_reason=end_reason,
        detail=detail,
    )


def peer_fault_end_reason(exc: RemoteProtocolError) -> str:
    """The journal end reason for a peer's fault: ``kind`` or ``kind:field``."""
    return exc.kind if exc.field is None else f"{exc.kind}:{exc.field}"


def outcome_for_error(exc: BaseException) -> CallOutcome:
    """The outcome for an exception that ended a call or its handshake (groups are walked).

    A peer's fault anywhere in the group wins (it caused the rest); a socket the peer broke is
    ``peer_gone``; one we closed is ``stopped``; anything else is a server fault (``failed``).
    """
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, RemoteProtocolError):
            return outcome_for_end_reason(peer_fault_end_reason(leaf), str(leaf))
    if all(isinstance(leaf, BrokenByPeer) for leaf in leaves):
        return outcome_for_end_reason("socket_closed", str(exc))
    if all(isinstance(leaf, ResourceClosed) for leaf in leaves):
        return outcome_for_end_reason("stopped", str(exc))
    return outcome_for_end_reason(f"error:{type(leaves[0]).__name__}", str(exc))


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
