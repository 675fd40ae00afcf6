"""ToolRunner: tools run concurrently in the owner's task group, bounded, answered exactly once."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from actors.tools import CallAction, EndCallTool, Toolbox, ToolCall, ToolResult, ToolRunner

pytestmark = pytest.mark.anyio


class GatedTool:
    """Answers ``{"echo": input}`` once ``gate`` is set."""

    def __init__(self, name: str = "echo") -> None:
        self._name = name
        self.gate = anyio.Event()
        self.running = 0

    @property
    def name(self) -> str:
        return self._name

    async def invoke(self, input_json: str) -> ToolResult:
        self.running += 1
        await self.gate.wait()
        content = msgspec.json.encode({"echo": msgspec.json.decode(input_json)}).decode()
        return ToolResult(outcome="ok", content_json=content)


class Answers:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []
        self.changed = anyio.Event()

    async def __call__(self, tool_use_id: str, content_json: str) -> bool:
        self.sent.append((tool_use_id, msgspec.json.decode(content_json)))
        self.changed.set()
        self.changed = anyio.Event()
        return True

    async def wait_for(self, count: int) -> None:
        while len(self.sent) < count:
            await self.changed.wait()


async def test_submit_returns_while_the_tool_runs_and_the_result_follows() -> None:
    tool = GatedTool()
    answers = Answers()
    records: list[ToolCall] = []
    async with anyio.create_task_group() as tg:
        runner = ToolRunner(Toolbox([tool]), tg, answer=answers, record=records.append)
        await runner.submit("id-1", "echo", '{"a": 1}')
        assert answers.sent == []  # submit did not wait for the tool
        assert runner.in_flight == 1
        tool.gate.set()
        await answers.wait_for(1)
    assert answers.sent == [("id-1", {"echo": {"a": 1}})]
    assert [(r.name, r.outcome, r.delivered) for r in records] == [("echo", "ok", True)]
    assert runner.in_flight == 0


async def test_an_unknown_tool_is_answered_at_once() -> None:
    answers = Answers()
    records: list[ToolCall] = []
    async with anyio.create_task_group() as tg:
        runner = ToolRunner(Toolbox(), tg, answer=answers, record=records.append)
        await runner.submit("id-1", "nope", "{}")
    assert answers.sent == [("id-1", {"error": "unknown_tool"})]
    assert records[0].outcome == "unknown_tool"


async def test_calls_beyond_the_bound_are_answered_busy() -> None:
    tool = GatedTool()
    answers = Answers()
    async with anyio.create_task_group() as tg:
        runner = ToolRunner(Toolbox([tool], max_in_flight=2), tg, answer=answers)
        for n in range(3):
            await runner.submit(f"id-{n}", "echo", str(n))
        assert answers.sent == [("id-2", {"error": "busy"})]
        tool.gate.set()
        await answers.wait_for(3)
    assert {tid for tid, _ in answers.sent} == {"id-0", "id-1", "id-2"}


async def test_pending_tools_are_cancelled_with_the_owner_and_never_answered() -> None:
    tool = GatedTool()
    answers = Answers()
    records: list[ToolCall] = []
    async with anyio.create_task_group() as tg:
        runner = ToolRunner(Toolbox([tool]), tg, answer=answers, record=records.append)
        await runner.submit("id-1", "echo", "{}")
        await anyio.wait_all_tasks_blocked()
        assert tool.running == 1
        tg.cancel_scope.cancel()
    assert answers.sent == []
    assert [(r.outcome, r.delivered) for r in records] == [("cancelled", False)]
    assert runner.in_flight == 0


async def test_a_builtin_action_is_handed_over_after_the_result_was_sent() -> None:
    answers = Answers()
    order: list[str] = []

    async def answer(tool_use_id: str, content_json: str) -> bool:
        order.append("answered")
        return await answers(tool_use_id, content_json)

    def on_action(action: CallAction) -> None:
        order.append(f"action:{type(action).__name__}")

    async with anyio.create_task_group() as tg:
        runner = ToolRunner(Toolbox([EndCallTool()]), tg, answer=answer, on_action=on_action)
        await runner.submit("id-1", "end_call", "{}")
    assert answers.sent == [("id-1", {"status": "ending_call"})]
    assert order == ["answered", "action:EndCall"]
