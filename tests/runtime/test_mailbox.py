"""Mailbox: validation, every overflow policy and its counters, close, rendezvous, receive_either."""

from __future__ import annotations

import math

import anyio
import msgspec
import pytest

from actors.errors import ClosedByUs, MailboxClosed
from actors.runtime import Mailbox, MailboxStats, Overflow, receive_either
from actors.runtime.testing import drain_nowait

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("capacity", [-1, 0, math.inf, 1.5, True])
def test_capacity_must_be_a_non_negative_int(capacity: object) -> None:
    with pytest.raises(ValueError, match="capacity"):
        Mailbox[int]("m", capacity)  # type: ignore[arg-type]


def test_mailbox_can_be_built_outside_an_event_loop() -> None:
    box = Mailbox[int]("m", 2)
    assert box.send_nowait(1)
    assert box.receive_nowait() == 1


async def test_block_send_nowait_refuses_when_full_without_counting_a_drop() -> None:
    box = Mailbox[int]("ctl", 2)
    assert box.send_nowait(1)
    assert box.send_nowait(2)
    assert not box.send_nowait(3)
    stats = box.statistics()
    assert (stats.sent, stats.received, stats.dropped, stats.depth) == (2, 0, 0, 2)
    assert drain_nowait(box) == [1, 2]


async def test_block_send_waits_for_room() -> None:
    box = Mailbox[int]("ctl", 1)
    await box.send(1)
    delivered = anyio.Event()

    async def sender() -> None:
        await box.send(2)
        delivered.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert not delivered.is_set()
        assert await box.receive() == 1
        with anyio.fail_after(5):
            await delivered.wait()
    assert await box.receive() == 2
    stats = box.statistics()
    assert (stats.sent, stats.received, stats.dropped, stats.depth) == (2, 2, 0, 0)


async def test_drop_oldest_evicts_and_counts() -> None:
    box = Mailbox[int]("audio", 3, Overflow.DROP_OLDEST)
    for i in range(5):
        await box.send(i)
    assert box.send_nowait(5)
    assert drain_nowait(box) == [3, 4, 5]
    stats = box.statistics()
    assert (stats.sent, stats.received, stats.dropped, stats.depth) == (6, 3, 3, 0)
    # Invariant under DROP_OLDEST: sent == received + depth + dropped.
    assert stats.sent == stats.received + stats.depth + stats.dropped


async def test_dropped_messages_are_weighed_when_a_weigh_is_given() -> None:
    oldest = Mailbox[int]("audio", 2, Overflow.DROP_OLDEST, weigh=lambda m: m * 10.0)
    newest = Mailbox[int]("audio", 2, Overflow.DROP_NEWEST, weigh=lambda m: m * 10.0)
    for i in range(1, 5):
        oldest.send_nowait(i)
        newest.send_nowait(i)
    assert oldest.statistics().dropped_weight == 30.0  # 1 and 2 evicted
    assert newest.statistics().dropped_weight == 70.0  # 3 and 4 refused
    assert Mailbox[int]("m", 1).statistics().dropped_weight == 0.0


async def test_max_weight_evicts_the_oldest_until_the_new_message_fits() -> None:
    box = Mailbox[int]("audio", 10, Overflow.DROP_OLDEST, weigh=float, max_weight=100.0)
    for size in (40, 40, 10):
        assert box.send_nowait(size)
    assert box.send_nowait(60)  # 150 > 100: the two 40s go
    assert drain_nowait(box) == [10, 60]
    stats = box.statistics()
    assert (stats.dropped, stats.dropped_weight) == (2, 80.0)
    # Received messages free their weight: 100 fits again.
    assert box.send_nowait(100)
    assert drain_nowait(box) == [100]
    assert box.statistics().dropped == 2


async def test_max_weight_refuses_what_cannot_fit() -> None:
    newest = Mailbox[int]("audio", 10, Overflow.DROP_NEWEST, weigh=float, max_weight=50.0)
    assert newest.send_nowait(30)
    assert not newest.send_nowait(30)  # would be 60
    assert not newest.send_nowait(51)  # alone too heavy
    oldest = Mailbox[int]("audio", 10, Overflow.DROP_OLDEST, weigh=float, max_weight=50.0)
    assert oldest.send_nowait(30)
    assert not oldest.send_nowait(51)  # never fits: dropped, the queued one stays
    assert drain_nowait(newest) == [30]
    assert drain_nowait(oldest) == [30]
    assert (oldest.statistics().dropped, oldest.statistics().dropped_weight) == (1, 51.0)


async def test_max_weight_keeps_the_message_bound_too() -> None:
    box = Mailbox[int]("audio", 2, Overflow.DROP_OLDEST, weigh=float, max_weight=1000.0)
    for size in (1, 2, 3):
        box.send_nowait(size)
    assert drain_nowait(box) == [2, 3]


def test_max_weight_needs_weigh_and_a_dropping_policy() -> None:
    with pytest.raises(ValueError, match="max_weight"):
        Mailbox[int]("m", 4, Overflow.DROP_OLDEST, max_weight=1.0)
    with pytest.raises(ValueError, match="max_weight"):
        Mailbox[int]("m", 4, Overflow.BLOCK, weigh=float, max_weight=1.0)


async def test_drop_newest_refuses_and_counts() -> None:
    box = Mailbox[int]("audio", 2, Overflow.DROP_NEWEST)
    for i in range(4):
        await box.send(i)
    assert not box.send_nowait(4)
    assert drain_nowait(box) == [0, 1]
    stats = box.statistics()
    assert (stats.sent, stats.received, stats.dropped) == (2, 2, 3)


async def test_dropping_send_never_waits() -> None:
    box = Mailbox[int]("audio", 1, Overflow.DROP_OLDEST)
    with anyio.fail_after(5):
        for i in range(100):
            await box.send(i)
    assert box.receive_nowait() == 99


async def test_close_drains_then_ends_and_refuses_senders() -> None:
    box = Mailbox[int]("m", 4)
    await box.send(1)
    await box.send(2)
    box.close()
    box.close()  # idempotent
    assert box.closed
    with pytest.raises(MailboxClosed):
        await box.send(3)
    with pytest.raises(ClosedByUs):  # MailboxClosed is an orderly "closed by us"
        box.send_nowait(3)
    assert [msg async for msg in box] == [1, 2]
    with pytest.raises(MailboxClosed):
        await box.receive()
    with pytest.raises(MailboxClosed):
        box.receive_nowait()
    assert box.statistics().closed


async def test_close_wakes_a_waiting_receiver() -> None:
    box = Mailbox[int]("m", 1)
    ended = anyio.Event()

    async def consumer() -> None:
        async for _ in box:
            pass
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        await anyio.wait_all_tasks_blocked()
        box.close()
        with anyio.fail_after(5):
            await ended.wait()


async def test_cancelled_receive_loses_no_message() -> None:
    box = Mailbox[int]("m", 2)
    with anyio.move_on_after(0.05):
        await box.receive()
    await box.send(7)
    assert box.receive_nowait() == 7
    assert box.statistics().received == 1


async def test_a_cancelled_receiver_takes_nothing_even_with_messages_queued() -> None:
    box = Mailbox[int]("m", 2)
    await box.send(7)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await box.receive()
    assert scope.cancelled_caught
    assert box.receive_nowait() == 7


async def test_a_queued_message_is_taken_without_yielding_to_other_tasks() -> None:
    box = Mailbox[int]("m", 4)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with anyio.create_task_group() as tg:
        await box.send(1)
        await box.send(2)
        tg.start_soon(other)
        assert [await box.receive(), await box.receive()] == [1, 2]
        assert ran == []  # both were taken before the other task had a turn
    assert ran == ["other"]


async def test_a_waiting_receiver_is_woken_by_a_send_and_leaves_no_wakeup() -> None:
    box = Mailbox[int]("m", 2)
    got: list[int] = []

    async def consumer() -> None:
        got.append(await box.receive())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        await anyio.wait_all_tasks_blocked()
        assert box.send_nowait(5)
    assert got == [5]
    assert not box._wakeups


async def test_statistics_is_immutable_and_json_encodable() -> None:
    box = Mailbox[int]("audio", 3, Overflow.DROP_OLDEST)
    await box.send(1)
    stats = box.statistics()
    with pytest.raises(AttributeError):
        stats.depth = 9  # type: ignore[misc]
    decoded = msgspec.json.decode(msgspec.json.encode(stats), type=MailboxStats)
    assert decoded == stats
    assert msgspec.json.decode(msgspec.json.encode(stats))["overflow"] == "drop_oldest"


# ---------------------------------------------------------------- receive_either


async def test_receive_either_prefers_pending_control() -> None:
    control = Mailbox[str]("ctl", 4)
    data = Mailbox[int]("data", 8, Overflow.DROP_OLDEST)
    for i in range(5):
        await data.send(i)
    await control.send("clear")
    await control.send("stop")
    got = [await receive_either(control, data) for _ in range(4)]
    assert got == ["clear", "stop", 0, 1]


async def test_receive_either_wakes_on_either_without_polling() -> None:
    control = Mailbox[str]("ctl", 1)
    data = Mailbox[int]("data", 1)
    got: list[str | int] = []

    async def consumer() -> None:
        got.extend([await receive_either(control, data) for _ in range(3)])

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        await anyio.wait_all_tasks_blocked()
        await data.send(1)
        await anyio.wait_all_tasks_blocked()
        await control.send("stop")
        await anyio.wait_all_tasks_blocked()
        await data.send(2)
    assert got == [1, "stop", 2]


async def test_receive_either_control_close_drains_data_then_ends() -> None:
    control = Mailbox[str]("ctl", 1)
    data = Mailbox[int]("data", 4)
    await data.send(1)
    control.close()
    assert await receive_either(control, data) == 1
    with pytest.raises(MailboxClosed):
        await receive_either(control, data)


async def test_receive_either_ignores_closed_data_and_waits_for_control() -> None:
    control = Mailbox[str]("ctl", 1)
    data = Mailbox[int]("data", 4)
    data.close()
    async with anyio.create_task_group() as tg:

        async def later() -> None:
            await anyio.wait_all_tasks_blocked()
            await control.send("stop")

        tg.start_soon(later)
        with anyio.fail_after(5):
            assert await receive_either(control, data) == "stop"


async def test_receive_either_cancelled_leaves_no_wakeup_behind() -> None:
    control = Mailbox[str]("ctl", 1)
    data = Mailbox[int]("data", 1)
    with anyio.move_on_after(0.05):
        await receive_either(control, data)
    assert not control._wakeups
    assert not data._wakeups
