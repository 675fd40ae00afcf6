"""Supervisor: strategies, restart types, intensity, auto shutdown, stop order and timeouts,
nesting and escalation, task hygiene, the snapshot tree and its JSON form.

Workers report lifecycle facts on a shared ``reports`` mailbox, so tests wait on messages, never on
sleeps. Each worker reads its own command mailbox, which outlives its instances.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import TYPE_CHECKING, assert_never

import anyio
import msgspec
import pytest

from actors.errors import SupervisorGaveUp
from actors.runtime import (
    Actor,
    ActorSnapshot,
    AutoShutdown,
    AutoShutdownTriggered,
    ChildExited,
    ChildKilled,
    ChildRestarted,
    ChildSpec,
    IntensityExceeded,
    Mailbox,
    Restart,
    Strategy,
    Supervisor,
    SupervisorSnapshot,
)
from actors.runtime.testing import drain_nowait, running

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

pytestmark = pytest.mark.anyio


class Crash(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    pass


class Finish(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    pass


type Command = Crash | Finish
type Report = tuple[str, str, int]  # (what, child id, instance serial)

_serials = itertools.count(1)


class Worker(Actor[Command]):
    """Crashes or returns on command; reports started/stopped; optionally stops gracefully."""

    def __init__(
        self,
        name: str,
        inbox: Mailbox[Command],
        reports: Mailbox[Report],
        *,
        graceful: bool = False,
        ignore_stop: bool = False,
    ) -> None:
        super().__init__(name, inbox=inbox)
        self.serial = next(_serials)
        self._commands = inbox
        self._reports = reports
        self._graceful = graceful
        self._ignore_stop = ignore_stop

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self._reports.send_nowait(("started", self.name, self.serial))
        try:
            while True:
                msg = await self.receive()
                match msg:
                    case Crash():
                        raise RuntimeError(f"{self.name} crashed on purpose")
                    case Finish():
                        return
                    case _:
                        assert_never(msg)
        finally:
            self._reports.send_nowait(("stopped", self.name, self.serial))

    def request_stop(self) -> bool:
        if self._ignore_stop:
            return True  # claims to stop gracefully, never does: must be killed after its timeout
        if self._graceful:
            return self._commands.send_nowait(Finish())
        return False


class Tree:
    """Command mailboxes per child id plus one shared reports mailbox."""

    def __init__(self, *ids: str) -> None:
        self.reports = Mailbox[Report]("reports", 256)
        self.inbox = {i: Mailbox[Command](f"{i}.inbox", 8) for i in ids}

    def spec(self, child_id: str, **kwargs: object) -> ChildSpec:
        worker_kw = {k: kwargs.pop(k) for k in ("graceful", "ignore_stop") if k in kwargs}
        return ChildSpec(
            child_id,
            lambda: Worker(child_id, self.inbox[child_id], self.reports, **worker_kw),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )

    async def next_report(self) -> Report:
        with anyio.fail_after(10):
            return await self.reports.receive()

    async def expect(self, *expected: tuple[str, str]) -> list[Report]:
        got = [await self.next_report() for _ in expected]
        assert sorted((w, i) for w, i, _ in got) == sorted(expected), got
        return got

    def crash(self, child_id: str) -> None:
        assert self.inbox[child_id].send_nowait(Crash())

    def finish(self, child_id: str) -> None:
        assert self.inbox[child_id].send_nowait(Finish())


def started_serials(reports: list[Report]) -> dict[str, int]:
    return {i: s for w, i, s in reports if w == "started"}


# ---------------------------------------------------------------- strategies


async def test_one_for_one_restarts_only_the_failed_child_with_a_fresh_instance() -> None:
    t = Tree("a", "b", "c")
    sup = Supervisor("s", [t.spec("a"), t.spec("b"), t.spec("c")])
    async with running(sup):
        first = started_serials(
            await t.expect(("started", "a"), ("started", "b"), ("started", "c"))
        )
        t.crash("b")
        again = started_serials(await t.expect(("stopped", "b"), ("started", "b")))
        assert again["b"] != first["b"]
        assert drain_nowait(t.reports) == []
        restarted = [e for e in sup.recent_events() if isinstance(e, ChildRestarted)]
        assert [(e.child_id, e.cause, e.restarts) for e in restarted] == [("b", "b", 1)]
    assert sup.state == "stopped"


async def test_one_for_all_restarts_every_child_in_order_after_stopping_in_reverse() -> None:
    t = Tree("a", "b", "c")
    sup = Supervisor("s", [t.spec("a"), t.spec("b"), t.spec("c")], strategy=Strategy.ONE_FOR_ALL)
    async with running(sup):
        await t.expect(("started", "a"), ("started", "b"), ("started", "c"))
        t.crash("b")
        got = [await t.next_report() for _ in range(6)]
        assert [(w, i) for w, i, _ in got] == [
            ("stopped", "b"),
            ("stopped", "c"),
            ("stopped", "a"),
            ("started", "a"),
            ("started", "b"),
            ("started", "c"),
        ]


async def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it() -> None:
    t = Tree("a", "b", "c")
    sup = Supervisor("s", [t.spec("a"), t.spec("b"), t.spec("c")], strategy=Strategy.REST_FOR_ONE)
    async with running(sup):
        first = started_serials(
            await t.expect(("started", "a"), ("started", "b"), ("started", "c"))
        )
        t.crash("b")
        got = [await t.next_report() for _ in range(4)]
        assert [(w, i) for w, i, _ in got] == [
            ("stopped", "b"),
            ("stopped", "c"),
            ("started", "b"),
            ("started", "c"),
        ]
        assert drain_nowait(t.reports) == []  # "a" untouched
        snap = sup.statistics()
        assert [c.restarts for c in snap.children] == [0, 1, 1]
        assert started_serials(got)["c"] != first["c"]


async def test_group_restart_does_not_restart_a_temporary_sibling() -> None:
    t = Tree("a", "b")
    sup = Supervisor(
        "s", [t.spec("a"), t.spec("b", restart=Restart.TEMPORARY)], strategy=Strategy.ONE_FOR_ALL
    )
    async with running(sup):
        await t.expect(("started", "a"), ("started", "b"))
        t.crash("a")
        await t.expect(("stopped", "a"), ("stopped", "b"), ("started", "a"))
        assert drain_nowait(t.reports) == []


# ---------------------------------------------------------------- restart types


@pytest.mark.parametrize(
    ("restart", "crash", "restarted"),
    [
        (Restart.PERMANENT, False, True),
        (Restart.PERMANENT, True, True),
        (Restart.TRANSIENT, False, False),
        (Restart.TRANSIENT, True, True),
        (Restart.TEMPORARY, False, False),
        (Restart.TEMPORARY, True, False),
    ],
)
async def test_restart_types(restart: Restart, crash: bool, restarted: bool) -> None:
    t = Tree("w", "other")
    sup = Supervisor("s", [t.spec("w", restart=restart), t.spec("other")])
    async with running(sup):
        await t.expect(("started", "w"), ("started", "other"))
        t.crash("w") if crash else t.finish("w")
        await t.expect(("stopped", "w"))
        if restarted:
            await t.expect(("started", "w"))
        else:
            # Prove the decision was taken: the next exit handled is "other"'s, after w's.
            t.finish("other")
            await t.expect(("stopped", "other"), ("started", "other"))
            assert drain_nowait(t.reports) == []
            assert sup.statistics().children[0].state in ("stopped", "crashed")
        exited = next(e for e in sup.recent_events() if isinstance(e, ChildExited))
        assert exited.reason == ("error" if crash else "normal")
        assert (exited.error is not None) == crash


# ---------------------------------------------------------------- intensity


async def test_more_than_n_restarts_in_the_period_gives_up_after_stopping_children() -> None:
    t = Tree("a", "b")
    sup = Supervisor("s", [t.spec("a"), t.spec("b")], max_restarts=2, period=60.0)

    async def crash_b_three_times() -> None:
        await t.expect(("started", "a"), ("started", "b"))
        for _ in range(2):
            t.crash("b")
            await t.expect(("stopped", "b"), ("started", "b"))
        t.crash("b")

    async with anyio.create_task_group() as tg:
        tg.start_soon(crash_b_three_times)
        with pytest.raises(SupervisorGaveUp) as info:
            await sup.run()
    assert info.value.restarts == 2
    assert sup.state == "failed"
    reports = drain_nowait(t.reports)
    assert [(w, i) for w, i, _ in reports] == [("stopped", "b"), ("stopped", "a")]
    assert any(isinstance(e, IntensityExceeded) for e in sup.recent_events())


async def test_crashes_spaced_beyond_the_period_do_not_escalate() -> None:
    t = Tree("a")
    sup = Supervisor("s", [t.spec("a")], max_restarts=1, period=0.05)
    async with running(sup):
        await t.expect(("started", "a"))
        for _ in range(3):
            await anyio.sleep(0.2)  # generous: only a LONGER gap than the period matters
            t.crash("a")
            await t.expect(("stopped", "a"), ("started", "a"))
        assert sup.state == "running"
        assert sup.statistics().restarts_performed == 3


async def test_a_restart_whose_factory_fails_counts_against_intensity() -> None:
    t = Tree("a")
    builds = 0

    def flaky() -> Worker:
        nonlocal builds
        builds += 1
        if builds > 1:
            raise OSError("cannot build")
        return Worker("a", t.inbox["a"], t.reports)

    sup = Supervisor("s", [ChildSpec("a", flaky)], max_restarts=3, period=60.0)
    async with anyio.create_task_group() as tg:

        async def crash_once() -> None:
            await t.expect(("started", "a"))
            t.crash("a")

        tg.start_soon(crash_once)
        with pytest.raises(SupervisorGaveUp):
            await sup.run()
    assert builds == 4  # the first build, then three failed restarts, then give up
    errors = [e for e in sup.recent_events() if isinstance(e, ChildExited) and e.reason == "error"]
    assert len(errors) == 4


async def test_start_up_failure_stops_started_children_and_re_raises() -> None:
    t = Tree("a")

    def broken() -> Worker:
        raise OSError("no")

    sup = Supervisor("s", [t.spec("a"), ChildSpec("b", broken)])
    with pytest.raises(OSError, match="no"):
        await sup.run()
    assert [(w, i) for w, i, _ in drain_nowait(t.reports)] == [("started", "a"), ("stopped", "a")]


# ---------------------------------------------------------------- auto shutdown


async def test_any_significant_exit_shuts_the_supervisor_down_normally() -> None:
    t = Tree("ingress", "egress")
    sup = Supervisor(
        "call",
        [t.spec("ingress", restart=Restart.TRANSIENT, significant=True), t.spec("egress")],
        auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await t.expect(("started", "ingress"), ("started", "egress"))
        t.finish("ingress")
        with anyio.fail_after(10):
            await sup.wait_stopped()
    assert sup.state == "stopped"
    assert [(w, i) for w, i, _ in drain_nowait(t.reports)] == [
        ("stopped", "ingress"),
        ("stopped", "egress"),
    ]
    assert any(isinstance(e, AutoShutdownTriggered) for e in sup.recent_events())


async def test_transient_significant_child_crashing_is_restarted_not_shut_down() -> None:
    t = Tree("ingress")
    sup = Supervisor(
        "call",
        [t.spec("ingress", restart=Restart.TRANSIENT, significant=True)],
        auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
    )
    async with running(sup):
        await t.expect(("started", "ingress"))
        t.crash("ingress")
        await t.expect(("stopped", "ingress"), ("started", "ingress"))
        assert sup.state == "running"


async def test_all_significant_waits_for_every_significant_child() -> None:
    t = Tree("a", "b", "c")
    sup = Supervisor(
        "s",
        [
            t.spec("a", restart=Restart.TEMPORARY, significant=True),
            t.spec("b", restart=Restart.TEMPORARY, significant=True),
            t.spec("c"),
        ],
        auto_shutdown=AutoShutdown.ALL_SIGNIFICANT,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await t.expect(("started", "a"), ("started", "b"), ("started", "c"))
        t.crash("a")
        await t.expect(("stopped", "a"))
        assert sup.state == "running"
        t.finish("b")
        with anyio.fail_after(10):
            await sup.wait_stopped()
    assert [(w, i) for w, i, _ in drain_nowait(t.reports)] == [("stopped", "b"), ("stopped", "c")]


def test_significant_child_spec_rules() -> None:
    with pytest.raises(ValueError, match="transient or temporary"):
        ChildSpec("x", lambda: Worker("x", Mailbox("m", 1), Mailbox("r", 1)), significant=True)
    t = Tree("x")
    with pytest.raises(ValueError, match="auto_shutdown"):
        Supervisor("s", [t.spec("x", restart=Restart.TRANSIENT, significant=True)])
    with pytest.raises(ValueError, match="unique"):
        Supervisor("s", [t.spec("x"), t.spec("x")])
    with pytest.raises(ValueError, match="shutdown"):
        t.spec("x", shutdown=-1.0)


# ---------------------------------------------------------------- stopping


async def test_stop_is_in_reverse_start_order_and_graceful_children_finish_on_their_own() -> None:
    t = Tree("a", "b", "c")
    sup = Supervisor("s", [t.spec(i, graceful=True) for i in ("a", "b", "c")])
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await t.expect(("started", "a"), ("started", "b"), ("started", "c"))
        with anyio.fail_after(10):
            await sup.stop()
    assert [(w, i) for w, i, _ in drain_nowait(t.reports)] == [
        ("stopped", "c"),
        ("stopped", "b"),
        ("stopped", "a"),
    ]
    snap = sup.statistics()
    assert [c.state for c in snap.children] == ["stopped"] * 3  # returned, not cancelled
    exits = [e for e in sup.recent_events() if isinstance(e, ChildExited)]
    assert [(e.child_id, e.reason) for e in exits] == [
        ("c", "shutdown"),
        ("b", "shutdown"),
        ("a", "shutdown"),
    ]


async def test_a_child_ignoring_the_graceful_stop_is_killed_after_its_timeout() -> None:
    t = Tree("stubborn", "brutal")
    sup = Supervisor(
        "s",
        [t.spec("stubborn", ignore_stop=True, shutdown=0.2), t.spec("brutal", shutdown=0.0)],
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await t.expect(("started", "stubborn"), ("started", "brutal"))
        begin = anyio.current_time()
        with anyio.fail_after(10):
            await sup.stop()
        elapsed = anyio.current_time() - begin
    assert elapsed >= 0.2  # it did get its grace period
    assert elapsed < 5.0  # and the stop stayed bounded
    killed = [e for e in sup.recent_events() if isinstance(e, ChildKilled)]
    assert [(e.child_id, e.timeout) for e in killed] == [("stubborn", 0.2)]
    assert sup.statistics().children[0].state == "cancelled"


async def test_stop_before_run_stops_right_after_start() -> None:
    t = Tree("a")
    sup = Supervisor("s", [t.spec("a")])
    sup.request_stop()
    with anyio.fail_after(10):
        await sup.run()
    assert [(w, i) for w, i, _ in drain_nowait(t.reports)] == [("started", "a"), ("stopped", "a")]


async def test_a_supervisor_runs_once() -> None:
    sup = Supervisor("s", [])
    sup.request_stop()
    await sup.run()
    with pytest.raises(RuntimeError, match="already ran"):
        await sup.run()


# ---------------------------------------------------------------- nesting, escalation, hygiene


async def test_nested_supervisor_gives_up_and_the_parent_escalates() -> None:
    t = Tree("leaf")

    def inner() -> Supervisor:
        return Supervisor("inner", [t.spec("leaf")], max_restarts=0, period=60.0)

    outer = Supervisor(
        "outer", [ChildSpec("inner", inner, shutdown=math.inf)], max_restarts=1, period=60.0
    )

    async def crash_twice() -> None:
        await t.expect(("started", "leaf"))
        t.crash("leaf")  # inner gives up -> outer restarts a fresh inner (and leaf)
        await t.expect(("stopped", "leaf"), ("started", "leaf"))
        t.crash("leaf")  # inner gives up again -> outer exceeds 1 restart -> gives up

    async with anyio.create_task_group() as tg:
        tg.start_soon(crash_twice)
        with pytest.raises(SupervisorGaveUp) as info:
            await outer.run()
    assert info.value.supervisor == "outer"
    exits = [e for e in outer.recent_events() if isinstance(e, ChildExited)]
    assert all("SupervisorGaveUp" in (e.error or "") for e in exits)
    inner_snap = outer.statistics().children[0]
    assert isinstance(inner_snap, SupervisorSnapshot)
    assert inner_snap.state == "failed"
    assert inner_snap.restarts == 1


async def test_cancelling_the_tree_leaves_no_task_running() -> None:
    before = len(asyncio.all_tasks())
    t = Tree("a", "b", "c")

    def inner() -> Supervisor:
        return Supervisor("inner", [t.spec("b"), t.spec("c")], strategy=Strategy.ONE_FOR_ALL)

    outer = Supervisor("outer", [t.spec("a"), ChildSpec("inner", inner, shutdown=math.inf)])
    async with anyio.create_task_group() as tg:
        await tg.start(outer.run)
        await t.expect(("started", "a"), ("started", "b"), ("started", "c"))
        t.crash("c")
        await t.expect(("stopped", "c"), ("stopped", "b"), ("started", "b"), ("started", "c"))
        assert len(asyncio.all_tasks()) > before
        tg.cancel_scope.cancel()  # the brutal stop
    assert len(asyncio.all_tasks()) == before
    stopped = [i for w, i, _ in drain_nowait(t.reports) if w == "stopped"]
    assert sorted(stopped) == ["a", "b", "c"]


async def test_orderly_stop_of_a_nested_tree_leaves_no_task_running() -> None:
    before = len(asyncio.all_tasks())
    t = Tree("a", "b")
    outer = Supervisor(
        "outer",
        [
            t.spec("a"),
            ChildSpec("inner", lambda: Supervisor("inner", [t.spec("b")]), shutdown=math.inf),
        ],
    )
    async with running(outer):
        await t.expect(("started", "a"), ("started", "b"))
    assert len(asyncio.all_tasks()) == before
    assert [(w, i) for w, i, _ in drain_nowait(t.reports)] == [("stopped", "b"), ("stopped", "a")]


# ---------------------------------------------------------------- snapshots


async def test_snapshot_tree_shape_and_json_round_trip() -> None:
    t = Tree("a", "b")
    outer = Supervisor(
        "outer",
        [
            t.spec("a"),
            ChildSpec("inner", lambda: Supervisor("inner", [t.spec("b")]), shutdown=math.inf),
        ],
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=5,
        period=10.0,
    )
    async with running(outer):
        await t.expect(("started", "a"), ("started", "b"))
        t.crash("b")
        await t.expect(("stopped", "b"), ("started", "b"))
        snap = outer.statistics()
    assert snap.strategy is Strategy.REST_FOR_ONE
    assert (snap.max_restarts, snap.period) == (5, 10.0)
    a, inner = snap.children
    assert isinstance(a, ActorSnapshot)
    assert (a.name, a.kind, a.state) == ("a", "Worker", "running")
    assert a.mailboxes[0].name == "a.inbox"
    assert isinstance(inner, SupervisorSnapshot)
    assert inner.restarts_performed == 1
    (b,) = inner.children
    assert isinstance(b, ActorSnapshot)
    assert b.restarts == 1
    assert b.messages_in == 0  # a fresh instance...
    assert b.mailboxes[0].received == 1  # ...reading the mailbox that outlived the crashed one
    assert b.age_s >= 0.0
    encoded = msgspec.json.encode(snap)
    raw = msgspec.json.decode(encoded)
    assert raw["type"] == "supervisor"
    assert raw["children"][1]["children"][0]["type"] == "actor"
    assert {e["event"] for e in raw["children"][1]["recent_events"]} >= {
        "child_started",
        "child_exited",
        "child_restarted",
    }
    assert msgspec.json.decode(encoded, type=SupervisorSnapshot) == snap


async def test_recent_events_are_bounded() -> None:
    t = Tree("a")
    sup = Supervisor("s", [t.spec("a")], max_restarts=100, period=60.0, recent_events=4)
    async with running(sup):
        await t.expect(("started", "a"))
        for _ in range(5):
            t.crash("a")
            await t.expect(("stopped", "a"), ("started", "a"))
        assert len(sup.statistics().recent_events) == 4
