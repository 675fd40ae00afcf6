"""The built-in tools: ``end_call`` and ``transfer_call``, which act on the call itself.

Rules:

* A built-in tool does not act by itself: its :class:`~actors.tools.core.ToolResult` carries a
  :data:`CallAction`. The :class:`~actors.tools.ToolRunner` first sends the result to the model,
  then hands the action to the call (``on_action``), which stops its actors, plays the matching
  prompt until Twilio echoes its mark, and only then asks Twilio's REST API to hang up or to
  ``<Dial>`` the target (:class:`actors.call.Call`).
* ``transfer_call`` takes ``{"target": "<name>"}`` where the name comes from the allow-list it was
  built with; the TwiML for each name is prepared at start-up (from the config), so the model
  never supplies a number or URI. Any other input is ``{"error": "bad_input", "reason": ...}``
  with the allowed names, and no action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import msgspec

from actors.tools.core import EndCall, ToolResult, TransferCall, error_result

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["EndCallTool", "TransferCallTool"]


@final
class EndCallTool:
    """``end_call``: the model ends the call (no input)."""

    __slots__ = ("_name",)

    def __init__(self, name: str = "end_call") -> None:
        self._name = name

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        return self._name

    async def invoke(self, input_json: str) -> ToolResult:
        """Always succeeds: the call ends after the model has the result."""
        del input_json  # no input is needed; whatever the model sent does not matter
        return ToolResult(outcome="ok", content_json='{"status":"ending_call"}', action=EndCall())


@final
class TransferCallTool:
    """``transfer_call``: the model transfers the call to a target named in the allow-list.

    Args:
        name: the tool's name.
        targets: allowed target name -> the transfer TwiML for it (non-empty).
    """

    __slots__ = ("_name", "_targets")

    def __init__(self, targets: Mapping[str, bytes], name: str = "transfer_call") -> None:
        if not targets:
            raise ValueError("transfer_call needs at least one target")
        self._name = name
        self._targets = dict(targets)

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        return self._name

    @property
    def target_names(self) -> tuple[str, ...]:
        """The allowed target names, in configuration order."""
        return tuple(self._targets)

    async def invoke(self, input_json: str) -> ToolResult:
        """The transfer action for a known target; a structured error otherwise."""
        try:
            value = msgspec.json.decode(input_json)
        except msgspec.DecodeError:
            return error_result("bad_input", reason="not_json", targets=list(self._targets))
        target = value.get("target") if isinstance(value, dict) else None
        if not isinstance(target, str):
            return error_result("bad_input", reason="missing_target", targets=list(self._targets))
        twiml = self._targets.get(target)
        if twiml is None:
            return error_result("bad_input", reason="unknown_target", targets=list(self._targets))
        content = msgspec.json.encode({"status": "transferring", "target": target}).decode()
        return ToolResult(
            outcome="ok", content_json=content, action=TransferCall(target=target, twiml=twiml)
        )
