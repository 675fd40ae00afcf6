"""CallRegistry: slots are freed on every exit path, refusals are counted, idleness is awaitable."""

from __future__ import annotations

import anyio
import pytest

from gateway.registry import CallRefused, CallRegistry


def test_duplicate_and_busy_refusals_are_counted() -> None:
    registry = CallRegistry(max_calls=2)
    with registry.reserve_nowait("CA1"):
        with pytest.raises(CallRefused) as dup:
            registry.reserve_nowait("CA1")
        assert dup.value.reason == "duplicate"
        with registry.reserve_nowait("CA2"), pytest.raises(CallRefused) as busy:
            registry.reserve_nowait("CA3")
        assert busy.value.reason == "busy"
    stats = registry.statistics()
    assert (stats.live_calls, stats.refused_duplicate, stats.refused_busy) == (0, 1, 1)


def test_slot_is_released_when_the_block_raises() -> None:
    registry = CallRegistry(max_calls=1)
    with pytest.raises(RuntimeError), registry.reserve_nowait("CA1"):
        raise RuntimeError("call failed")
    assert not registry.is_live("CA1")
    with registry.reserve_nowait("CA1"):  # the CallSid can be used again
        assert registry.live_count == 1


@pytest.mark.anyio
async def test_wait_idle_returns_when_the_last_call_and_handshake_leave() -> None:
    registry = CallRegistry(max_calls=4)
    await registry.wait_idle()  # idle already: returns at once
    order: list[str] = []
    slot = registry.reserve_nowait("CA1")

    async def waiter() -> None:
        await registry.wait_idle()
        order.append("idle")

    async with anyio.create_task_group() as tg:
        with registry.handshake():
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            slot.release()
            await anyio.wait_all_tasks_blocked()
            assert order == []  # a handshake still holds a slot
            order.append("handshake done")
    assert order == ["handshake done", "idle"]


class _DroppingCall:
    def __init__(self, dropped_ms: float) -> None:
        self.dropped_ms = dropped_ms

    async def run(self) -> None:
        pass

    def statistics(self) -> object:
        return {}

    def debug_view(self, *, reveal_pii: bool) -> object:
        return {}

    def caller_audio_dropped_ms(self) -> float:
        return self.dropped_ms

    def say_goodbye(self) -> None:
        pass


def test_caller_audio_dropped_adds_live_and_ended_calls() -> None:
    registry = CallRegistry(max_calls=4)
    with registry.reserve_nowait("CA1") as first:
        first.attach(_DroppingCall(40.0))
        live = registry.reserve_nowait("CA2")
        live.attach(_DroppingCall(80.0))
        assert registry.statistics().caller_audio_dropped_ms == 120.0
    # CA1 ended: its drops stay counted; CA2 is still live.
    assert registry.statistics().caller_audio_dropped_ms == 120.0
    live.release()
    assert registry.statistics().caller_audio_dropped_ms == 120.0


def test_an_overloaded_process_refuses_handshakes_and_counts_them() -> None:
    overloaded = [False]
    registry = CallRegistry(max_calls=4, overloaded=lambda: overloaded[0])
    with registry.handshake():
        pass
    overloaded[0] = True
    assert registry.is_overloaded()
    with pytest.raises(CallRefused) as refused, registry.handshake():
        pass
    assert refused.value.reason == "overloaded"
    assert registry.statistics().refused_overloaded == 1


def test_pending_handshakes_have_their_own_limit_and_leave_calls_free() -> None:
    registry = CallRegistry(max_calls=2, max_pending=2)
    with registry.handshake(), registry.handshake():
        with pytest.raises(CallRefused) as refused, registry.handshake():
            pass
        assert refused.value.reason == "handshakes"
        # Full handshake slots take nothing from the calls.
        with registry.reserve_nowait("CA1"), registry.reserve_nowait("CA2"):
            assert registry.live_count == 2
    with registry.handshake():  # freed on exit
        pass
    assert registry.statistics().refused_handshakes == 1


class _GoodbyeCall(_DroppingCall):
    def __init__(self) -> None:
        super().__init__(0.0)
        self.goodbyes = 0

    def say_goodbye(self) -> None:
        self.goodbyes += 1


def test_draining_refuses_new_sockets_and_says_goodbye_to_live_calls() -> None:
    registry = CallRegistry(max_calls=4)
    with registry.handshake():  # a socket already in its handshake when the drain begins
        registry.begin_drain()
        assert registry.draining
        with pytest.raises(CallRefused) as refused, registry.handshake():
            pass
        assert refused.value.reason == "draining"
        # ... still becomes a call: Twilio already connected the caller.
        with registry.reserve_nowait("CA1") as slot:
            call = _GoodbyeCall()
            slot.attach(call)
            assert registry.say_goodbye_all() == 1
            assert call.goodbyes == 1
    stats = registry.statistics()
    assert (stats.refused_draining, stats.draining) == (1, True)
