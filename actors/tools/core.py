"""What every tool kind shares: the result, the structured errors, the body signature.

Rules:

* A tool never raises to its caller: every failure becomes a :class:`ToolResult` whose content is
  a small JSON object the model can read, ``{"error": "<kind>", ...}`` (``timeout``,
  ``http_status`` with ``status``, ``connect``, ``transport``, ``bad_response``, ``unknown_tool``, ``busy``,
  ``bad_input``), and whose ``outcome`` is that kind (``ok`` for a success). Cancellation is not a
  failure: it propagates.
* Signing is plain HMAC-SHA256 over the exact request body bytes, hex-encoded, sent as
  ``X-Sonic-Gateway-Signature: sha256=<hex>``; the receiver recomputes it with the shared key
  (:func:`verify_signature` is the reference check) and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Final, Literal, Protocol, final

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "SIGNATURE_HEADER",
    "CallAction",
    "EndCall",
    "Tool",
    "ToolOutcome",
    "ToolResult",
    "Toolbox",
    "TransferCall",
    "error_result",
    "sign_body",
    "signature_header_value",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "X-Sonic-Gateway-Signature"
_SIGNATURE_PREFIX: Final = "sha256="

ToolOutcome = Literal[
    "ok",
    "timeout",
    "http_status",
    "connect",
    "transport",
    "bad_response",
    "bad_input",
    "unknown_tool",
    "busy",
    "cancelled",
]


class EndCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Hang the call up after the goodbye prompt (the ``end_call`` built-in)."""

    announced: bool = False
    """The caller already heard the prompt (an intent played it): do not play it again."""


class TransferCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Transfer the call after the transferring prompt: run ``twiml`` (a ``<Dial>``) on it."""

    target: str
    """The allow-list name the model chose (the number or URI stays in the config and TwiML)."""
    twiml: bytes
    announced: bool = False
    """The caller already heard the prompt (an intent played it): do not play it again."""


CallAction = EndCall | TransferCall
"""What a built-in tool asks the call to do (:mod:`actors.tools.builtin`)."""


class ToolResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One tool call's answer: ``content_json`` goes back to the model as the tool result."""

    outcome: ToolOutcome
    content_json: str
    action: CallAction | None = None
    """For a built-in tool: what the call must do once the model has the result; None for every
    other tool."""


def error_result(outcome: ToolOutcome, **detail: object) -> ToolResult:
    """A structured error the model can read: ``{"error": outcome, **detail}``."""
    content = msgspec.json.encode({"error": outcome, **detail}).decode()
    return ToolResult(outcome=outcome, content_json=content)


def sign_body(key: str, body: bytes) -> str:
    """HMAC-SHA256 of ``body`` under ``key`` (UTF-8), lowercase hex."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def signature_header_value(key: str, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``: ``sha256=<hex>``."""
    return _SIGNATURE_PREFIX + sign_body(key, body)


def verify_signature(key: str, body: bytes, header_value: str | None) -> bool:
    """True when ``header_value`` is the signature of ``body`` under ``key`` (constant time)."""
    if header_value is None or not header_value.startswith(_SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(header_value, signature_header_value(key, body))


class Tool(Protocol):
    """A callable tool. ``invoke`` returns a result for every failure; it raises only on
    cancellation."""

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        ...

    async def invoke(self, input_json: str) -> ToolResult:
        """Run the tool with the model's input (a JSON text)."""
        ...


@final
class Toolbox:
    """The process's executable tools by name, and the per-call bound on tools in flight.

    Args:
        tools: the tools; names must be distinct.
        max_in_flight: most tool calls running at once in one call; a call beyond it is answered
            ``{"error": "busy"}`` at once.

    Raises:
        ValueError: duplicate names or a bound below 1.
    """

    __slots__ = ("_tools", "max_in_flight")

    def __init__(self, tools: Iterable[Tool] = (), *, max_in_flight: int = 4) -> None:
        by_name: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in by_name:
                raise ValueError(f"duplicate tool name {tool.name!r}")
            by_name[tool.name] = tool
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._tools: Mapping[str, Tool] = by_name
        self.max_in_flight = max_in_flight

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None."""
        return self._tools.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Every tool's name, in configuration order."""
        return tuple(self._tools)

    def __len__(self) -> int:
        return len(self._tools)
