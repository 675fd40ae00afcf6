"""ToolRunner: one call's tool calls, run concurrently inside a task group the call owns.

Rules:

* ``submit`` never waits for a tool: it starts the tool in the owner's task group and returns, so
  the model's event stream keeps flowing (the model may go on talking while a tool runs). Only the
  immediate answers (``unknown_tool``, ``busy``) are sent from ``submit`` itself.
* Bounded: at most ``Toolbox.max_in_flight`` tools run at once per call; a call beyond that is
  answered ``{"error": "busy"}`` at once, so the model is never left waiting for an id.
* Every result, success or structured error, goes back through ``answer(tool_use_id, json)``
  exactly once. Cancelling the owner's task group (the call or its Sonic session ends) cancels the
  pending tools; they are recorded as ``cancelled`` and answered no more (their ids died with the
  session).
* A built-in tool's result carries a call action (:mod:`actors.tools.builtin`): it is handed to
  ``on_action`` AFTER the result went to the model (delivered or not: the model asked for it), so
  the call can stop with the model told. Without ``on_action`` the action is dropped.
* Each finished call is recorded (``record``: name, outcome, latency) and logged once; the tool's
  input and result only under ``pii_*`` keys (redacted unless PII logging is on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import anyio
import msgspec
import structlog

from actors.tools.core import CallAction, ToolOutcome, ToolResult, error_result

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskGroup

    from actors.tools.core import Tool, Toolbox

__all__ = ["ToolCall", "ToolRunner"]

_log = structlog.get_logger("actors.tools")


class ToolCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One finished tool call as recorded: which tool, how it ended, how long it took."""

    name: str
    outcome: ToolOutcome
    latency_ms: float
    delivered: bool
    """The result reached the model (False: its session was gone, or the call was cancelled)."""


@final
class ToolRunner:
    """Runs one call's tool calls; see the module docstring.

    Args:
        toolbox: the process's tools and the per-call bound.
        task_group: the owner's task group (its cancellation cancels pending tools).
        answer: sends one result to the model: ``(tool_use_id, content_json) -> delivered``.
        record: called once per finished tool call (must not block).
        on_action: called with a built-in tool's call action once its result was sent (must not
            block).
    """

    def __init__(
        self,
        toolbox: Toolbox,
        task_group: TaskGroup,
        *,
        answer: Callable[[str, str], Awaitable[bool]],
        record: Callable[[ToolCall], None] | None = None,
        on_action: Callable[[CallAction], None] | None = None,
    ) -> None:
        self._toolbox = toolbox
        self._tg = task_group
        self._answer = answer
        self._record = record
        self._on_action = on_action
        self.in_flight = 0
        self.started = 0

    async def submit(self, tool_use_id: str, name: str, input_json: str) -> None:
        """Start the tool ``name`` (or answer at once when it cannot run). Does not wait for it."""
        started = anyio.current_time()
        tool = self._toolbox.get(name)
        if tool is None:
            await self._finish(tool_use_id, name, input_json, error_result("unknown_tool"), started)
        elif self.in_flight >= self._toolbox.max_in_flight:
            await self._finish(tool_use_id, name, input_json, error_result("busy"), started)
        else:
            self.in_flight += 1
            self.started += 1
            self._tg.start_soon(self._run, tool, tool_use_id, input_json, started)

    async def _run(self, tool: Tool, tool_use_id: str, input_json: str, started: float) -> None:
        try:
            result = await tool.invoke(input_json)
        except anyio.get_cancelled_exc_class():
            self._note(tool.name, "cancelled", started, delivered=False)
            _log.info("tool.cancelled", tool=tool.name, pii_input=input_json)
            raise
        finally:
            self.in_flight -= 1
        await self._finish(tool_use_id, tool.name, input_json, result, started)

    async def _finish(
        self, tool_use_id: str, name: str, input_json: str, result: ToolResult, started: float
    ) -> None:
        latency_ms = self._note_latency(started)
        delivered = await self._answer(tool_use_id, result.content_json)
        self._note(name, result.outcome, started, delivered=delivered, latency_ms=latency_ms)
        _log.info(
            "tool.finished",
            tool=name,
            outcome=result.outcome,
            latency_ms=latency_ms,
            delivered=delivered,
            pii_input=input_json,
            pii_result=result.content_json,
        )
        if result.action is not None and self._on_action is not None:
            self._on_action(result.action)

    @staticmethod
    def _note_latency(started: float) -> float:
        return round((anyio.current_time() - started) * 1000.0, 1)

    def _note(
        self,
        name: str,
        outcome: ToolOutcome,
        started: float,
        *,
        delivered: bool,
        latency_ms: float | None = None,
    ) -> None:
        if self._record is None:
            return
        if latency_ms is None:
            latency_ms = self._note_latency(started)
        self._record(
            ToolCall(name=name, outcome=outcome, latency_ms=latency_ms, delivered=delivered)
        )
