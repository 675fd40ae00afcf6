"""The seam between the service edge and one call's actor tree.

The gateway owns the WebSocket; the call owns everything after ``start``. The gateway reads Twilio's
``connected`` and ``start`` itself (to refuse duplicate CallSids and enforce limits before any Sonic
session opens), then hands the call a :class:`TwilioSocket` and the :class:`CallIdentity` it read.
Only the call's TwilioIngress receives from the socket and only its PlaybackEgress sends, so each
direction has exactly one owner.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["CallControl", "CallIdentity", "TwilioSocket"]


class TwilioSocket(Protocol):
    """One Twilio Media Streams WebSocket, as the call sees it.

    Implementations adapt a real server socket (Starlette in the gateway) or a test peer.
    """

    async def receive(self) -> bytes:
        """Block until the next text frame arrives and return it as UTF-8 bytes.

        Raises:
            BrokenByPeer: the peer closed or reset the socket.
            ClosedByUs: :meth:`close` was called.
        """
        ...

    async def send(self, data: bytes) -> None:
        """Send one text frame (UTF-8 JSON bytes); blocks while the transport applies backpressure.

        Raises:
            BrokenByPeer: the peer is gone.
            ClosedByUs: :meth:`close` was called.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket; idempotent, never raises for an already-closed socket."""
        ...


class CallControl(Protocol):
    """Twilio's REST call control, as a call sees it (``gateway.twilio_rest.TwilioRestClient``).

    Both methods return once Twilio answered; "the call had already ended" is an answer, not an
    error. They raise the gateway's errors (``GatewayError``) when Twilio refuses or is unreachable.
    """

    async def complete_call(self, call_sid: str) -> object:
        """Hang the call up."""
        ...

    async def update_call_twiml(self, call_sid: str, twiml: str | bytes) -> object:
        """Make the call run ``twiml`` now (a transfer ``<Dial>``)."""
        ...


class CallIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """Who this call is, from Twilio's ``start`` message.

    ``custom_parameters`` carries the TwiML ``<Parameter>`` values; the caller's number is PII and is
    logged only under ``pii_*`` keys.
    """

    call_sid: str
    stream_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = msgspec.field(default_factory=dict)
    started_at: float = 0.0  # anyio.current_time() when ``start`` was read
    start_sequence_number: int = 1
    """``sequenceNumber`` of the ``start`` frame, so the call's order check continues from it."""
