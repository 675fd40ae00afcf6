"""The project's one error hierarchy.

Every error sonic-gateway raises on purpose derives from :class:`GatewayError`. The tree::

    GatewayError
    ├── ConfigError                 a setting is missing or malformed (names the key)
    ├── ProtocolError               a wire protocol was broken
    │   ├── RemoteProtocolError     ... by the peer: malformed or out-of-order input (names the field)
    │   │   ├── UnsupportedData     ... a kind of message the protocol does not carry (binary frame)
    │   │   ├── InvalidPayload      ... bytes that do not decode (not UTF-8, not JSON, bad base64)
    │   │   ├── MessageTooBig       ... a message over the size cap
    │   │   └── PeerFlood           ... more control messages than the call can take in
    │   └── LocalProtocolError      ... by us: we tried to send what the protocol forbids
    ├── ResourceClosed              a channel, socket or stream is gone
    │   ├── ClosedByUs              ... because we closed it (a normal, orderly end)
    │   └── BrokenByPeer            ... because the other side vanished or reset it
    ├── ActorError                  the actor runtime itself
    │   ├── MailboxClosed           sending to / receiving from a closed mailbox
    │   └── SupervisorGaveUp        restart intensity exceeded; the supervisor failed to its parent
    └── SonicError                  Nova Sonic / Bedrock (``retryable`` says what the call may do)
        ├── SonicRetryableError     timeout, throttling, reset...: reopen with history, keep the call
        └── SonicFatalError         our request, access, model id, credentials: end the call

Rules: failures travel as exceptions to supervisors (which log them as typed events), never as
error messages on the audio path; cancellation is never caught and swallowed. A peer's fault
(:class:`RemoteProtocolError`) carries a static ``kind`` label (``"protocol_error"``,
``"invalid_payload"``...), which ``actors.call.outcome`` maps to the call's outcome and close code.

This module imports nothing but the standard library, so wire models and codecs may use it.
"""

from __future__ import annotations

__all__ = [
    "ActorError",
    "BrokenByPeer",
    "ClosedByUs",
    "ConfigError",
    "GatewayError",
    "InvalidPayload",
    "LocalProtocolError",
    "MailboxClosed",
    "MessageTooBig",
    "PeerFlood",
    "ProtocolError",
    "RemoteProtocolError",
    "ResourceClosed",
    "SonicError",
    "SonicFatalError",
    "SonicRetryableError",
    "SupervisorGaveUp",
    "UnsupportedData",
]


class GatewayError(Exception):
    """Root of every error sonic-gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration value is missing or malformed.

    Attributes:
        key: the setting's name as the user wrote it (TOML key or environment variable).
        expected: the form the value must take.
    """

    def __init__(self, key: str, expected: str, got: object = None) -> None:
        self.key = key
        self.expected = expected
        self.got = got
        shown = "" if got is None else f" (got {got!r})"
        super().__init__(f"config {key}: expected {expected}{shown}")


class ProtocolError(GatewayError):
    """A wire protocol was broken."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed or out of order.

    Attributes:
        field: the dotted path of the offending field, when one can be named (``"media.payload"``).
        kind: a static label for the fault (the class default unless given): ``"protocol_error"``
            here, ``"invalid_payload"`` for bytes that do not decode, and so on in subclasses.
    """

    kind: str = "protocol_error"

    def __init__(self, message: str, *, field: str | None = None, kind: str | None = None) -> None:
        self.field = field
        if kind is not None:
            self.kind = kind
        super().__init__(message if field is None else f"{message} (field {field})")


class UnsupportedData(RemoteProtocolError):
    """The peer sent a kind of message the protocol does not carry (a binary WebSocket frame)."""

    kind = "unsupported_data"


class InvalidPayload(RemoteProtocolError):
    """The peer's bytes do not decode: text that is not UTF-8, not JSON, bad base64."""

    kind = "invalid_payload"


class MessageTooBig(RemoteProtocolError):
    """The peer sent a message over the size cap."""

    kind = "message_too_big"


class PeerFlood(RemoteProtocolError):
    """The peer sent more control messages (DTMF digits, mark echoes) than the call can take in."""

    kind = "control_flood"


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol forbids (a bug on our side)."""


class ResourceClosed(GatewayError):
    """A channel, socket or stream is no longer usable."""


class ClosedByUs(ResourceClosed):
    """We closed it: an orderly end, not a failure."""


class BrokenByPeer(ResourceClosed):
    """The other side vanished or reset it."""


class ActorError(GatewayError):
    """Errors of the actor runtime itself."""


class MailboxClosed(ActorError, ClosedByUs):
    """The mailbox was closed; no more messages can be sent or received."""


class SupervisorGaveUp(ActorError):
    """A supervisor exceeded its restart intensity, stopped its children and failed."""

    def __init__(self, supervisor: str, restarts: int, period: float) -> None:
        self.supervisor = supervisor
        self.restarts = restarts
        self.period = period
        super().__init__(
            f"supervisor {supervisor} gave up: more than {restarts} restarts in {period:g} s"
        )


class SonicError(GatewayError):
    """An error from Nova Sonic or the Bedrock stream.

    Attributes:
        kind: the service's exception name (``"modelTimeoutException"``) or a local cause
            (``"connectionReset"``).
        retryable: True when reopening the session with history may recover the call.
    """

    retryable: bool = False

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}")


class SonicRetryableError(SonicError):
    """Transient: model timeout, throttling, internal error, reset. Reopen with history."""

    retryable = True


class SonicFatalError(SonicError):
    """Our request, access, model id or credentials are wrong: retrying will not help."""

    retryable = False
