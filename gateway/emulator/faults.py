"""Faults the emulator can inject, and the messages the service uses for them.

Theory of operation. A :class:`Fault` is a value (a frozen msgspec Struct, so scenario files can
hold it): *what* goes wrong (``kind``), *when* (``after_ms`` from its anchor: the start of the
response for session-wide faults, the end of a caller turn for scripted per-turn faults, the moment
of injection for faults aimed at the current session) and, for exception frames, the ``message``.

Kinds and what a client of the real SDK sees:

* the six modelled exceptions (``validationException`` ... ``serviceUnavailableException``): one
  exception frame, then the response ends once the request side has ended. ``receive()`` raises the
  SDK's typed class (``ValidationException`` ...).
* ``reset``: the HTTP/2 stream is reset (RST_STREAM, INTERNAL_ERROR) with no exception frame: the
  CRT transport fails the stream and ``receive()`` raises.
* ``slow_first_byte``: the response headers wait ``after_ms``; ``await_output()`` is that late.
* ``stall``: from ``after_ms`` on the emulator sends nothing more but keeps the stream open; only a
  client-side timeout notices.

The session cap is not a fault but a setting (``session_cap_s``): at the cap the session ends with
``modelTimeoutException`` and :data:`SESSION_CAP_MESSAGE`, as the service does at ~8 minutes.
"""

from __future__ import annotations

from typing import Final, Literal, TypeGuard

import msgspec

from gateway.emulator.framing import EXCEPTION_KINDS, ExceptionKind

__all__ = [
    "DEFAULT_MESSAGES",
    "FAULT_KINDS",
    "SESSION_CAP_MESSAGE",
    "SYSTEM_INSTABILITY_MESSAGE",
    "Fault",
    "FaultKind",
    "is_exception_kind",
]

type FaultKind = Literal[
    "validationException",
    "modelTimeoutException",
    "throttlingException",
    "internalServerException",
    "modelStreamErrorException",
    "serviceUnavailableException",
    "reset",
    "slow_first_byte",
    "stall",
]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = (*EXCEPTION_KINDS, "reset", "slow_first_byte", "stall")

SESSION_CAP_MESSAGE: Final = "Model has timed out in processing the request"
SYSTEM_INSTABILITY_MESSAGE: Final = "System instability detected. Please retry your request."

# Messages as the service words them (or as users have reported them in public issue threads).
DEFAULT_MESSAGES: Final[dict[ExceptionKind, str]] = {
    # The retryable-by-message validation case; a fatal one is a malformed request.
    "validationException": SYSTEM_INSTABILITY_MESSAGE,
    "modelTimeoutException": SESSION_CAP_MESSAGE,
    "throttlingException": "Too many requests, please wait before trying again.",
    "internalServerException": "The server encountered an internal error while processing the request.",
    "modelStreamErrorException": "The model encountered an error while streaming the response.",
    "serviceUnavailableException": "The service is temporarily unable to handle the request.",
}


class Fault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One fault to inject.

    Attributes:
        kind: what goes wrong (see the module docstring).
        message: the exception frame's message; None takes :data:`DEFAULT_MESSAGES`.
        after_ms: delay from the fault's anchor before it fires (for ``slow_first_byte``: how late
            the response headers are).
    """

    kind: FaultKind
    message: str | None = None
    after_ms: int = 0

    def __post_init__(self) -> None:
        if self.after_ms < 0:
            raise ValueError("after_ms must not be negative")

    def exception_message(self) -> str:
        """The message an exception frame of this fault carries."""
        if self.message is not None:
            return self.message
        kind = self.kind
        if is_exception_kind(kind):
            return DEFAULT_MESSAGES[kind]
        return str(kind)


def is_exception_kind(kind: FaultKind) -> TypeGuard[ExceptionKind]:
    """True when ``kind`` is answered with a modelled exception frame."""
    return kind in EXCEPTION_KINDS
