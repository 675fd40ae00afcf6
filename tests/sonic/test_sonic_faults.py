"""Sonic faults against the emulator through the real SDK: a handover survives failed opens, and
every SDK stream is released on every path (no task exception is left for asyncio to report)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from actors.errors import SonicFatalError, SonicRetryableError
from actors.sonic import HandedOver, SessionLost, SonicEvent
from gateway.emulator import Fault
from tests.sonic.test_sonic_emulator import FRAME, caller_audio, feed_realtime, sonic_env

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors.sonic import SonicConnector, SonicStream

pytestmark = pytest.mark.anyio


class LostTaskErrors:
    """What asyncio reports to the loop's exception handler ("Task exception was never
    retrieved", "Task was destroyed but it is pending!") while installed."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.messages.append(f"{context.get('message')}: {context.get('exception')!r}")

    async def collected(self) -> list[str]:
        """Collect garbage (where lost tasks are reported) and return what was reported."""
        for _ in range(3):
            gc.collect()
            await anyio.sleep(0.05)
        return self.messages


@contextlib.contextmanager
def lost_task_errors() -> Iterator[LostTaskErrors]:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    errors = LostTaskErrors()
    loop.set_exception_handler(errors)
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


def failing_prepares(connector: SonicConnector, failures: int) -> list[str]:
    """Make the ``failures`` opens after the first one fail (retryable); returns their kinds."""
    real = connector.open_stream
    opens = 0
    failed: list[str] = []

    async def open_stream(**kwargs: Any) -> SonicStream:
        nonlocal opens
        opens += 1
        if 1 < opens <= failures + 1:
            failed.append("openTimeout")
            raise SonicRetryableError("openTimeout", "stream not ready in time (test)")
        return await real(**kwargs)

    connector.open_stream = open_stream  # type: ignore[method-assign]
    return failed


async def test_a_handover_whose_next_stream_fails_to_open_retries_and_still_hands_over() -> None:
    # Before: three failed opens of the next stream ended the whole conversation, although the
    # current stream was healthy. Now the conversation keeps retrying while the current stream
    # lives, and hands over once an open succeeds.
    async with sonic_env(handover_after_s=1.0, reopen_backoff_s=0.05, max_reopen_attempts=3) as (
        emu,
        connector,
    ):
        failed = failing_prepares(connector, failures=5)
        async with connector.conversation() as conv:
            events: list[SonicEvent] = []
            with anyio.fail_after(15):
                async for event in conv.events:
                    events.append(event)
                    if isinstance(event, HandedOver):
                        break
            await conv.send_audio(bytes(FRAME))  # the new stream takes caller audio
            stats = conv.statistics()
        assert len(failed) == 5  # more than max_reopen_attempts, and the call went on
        assert events[-1] == HandedOver(reason="age", session_index=1)
        assert not any(isinstance(e, SessionLost) for e in events)
        assert stats["prepare_failures"] == 5
        assert stats["handovers"] == 1
        assert len(emu.sessions) == 2
        assert [s.end_reason for s in emu.sessions] == ["closed", "closed"]


async def _recovered(emu: Any, connector: SonicConnector) -> None:
    async with connector.conversation() as conv:
        await conv.send_audio(bytes(FRAME))
        emu.inject_fault(Fault(kind="reset"), target="current")
        with anyio.fail_after(5):
            async for event in conv.events:
                if isinstance(event, HandedOver):
                    break


async def _gave_up(emu: Any, connector: SonicConnector) -> None:
    with pytest.raises(SonicRetryableError):  # noqa: PT012 - raised by the block's exit
        async with connector.conversation() as conv:
            await conv.send_audio(bytes(FRAME))
            emu.inject_fault(Fault(kind="reset"), target="current")
            for _ in range(3):  # every new session is reset too, until the conversation gives up
                await anyio.sleep(0.15)
                emu.inject_fault(Fault(kind="reset"), target="current")
            with anyio.fail_after(5):
                async for _ in conv.events:
                    pass


async def _fatal_with_a_prepared_next(emu: Any, connector: SonicConnector) -> None:
    with pytest.raises(SonicFatalError):  # noqa: PT012 - raised by the block's exit
        async with connector.conversation() as conv:
            await feed_realtime(conv, caller_audio(200, 1))
            await anyio.sleep(1.2)  # past handover_after_s: the next stream is being prepared
            emu.inject_fault(
                Fault(kind="validationException", message="Invalid input request"),
                target="current",
            )
            with anyio.fail_after(5):
                async for _ in conv.events:
                    pass


@pytest.mark.parametrize(
    "path",
    [_recovered, _gave_up, _fatal_with_a_prepared_next],
    ids=["recovered", "gave_up", "fatal"],
)
async def test_every_sdk_stream_is_released_on_every_path(path: Any) -> None:
    # Under fuzzing the SDK logged "Task exception was never retrieved ... HTTP-stream has
    # completed" (awscrt's request-body task of a reset stream) and "Task was destroyed but it
    # is pending!" (streams the conversation never closed). Neither may happen now.
    with lost_task_errors() as errors:
        async with sonic_env(
            handover_after_s=1.0,
            handover_grace_s=30.0,
            handover_quiet_s=5.0,
            reopen_backoff_s=0.05,
            max_reopen_attempts=2,
        ) as (emu, connector):
            await path(emu, connector)
            assert all(s.end_reason is not None for s in emu.sessions)
        assert await errors.collected() == []


async def test_a_stall_after_a_caller_turn_reopens_with_history() -> None:
    async with sonic_env(stall_timeout_s=0.4, reopen_backoff_s=0.05) as (emu, connector):
        async with connector.conversation() as conv:
            await conv.send_audio(bytes(FRAME))
            emu.inject_fault(Fault(kind="stall"), target="current")
            await anyio.sleep(0.1)
            conv.expect_output()  # a caller turn ended; the stalled stream never answers
            events: list[SonicEvent] = []
            with anyio.fail_after(5):
                async for event in conv.events:
                    events.append(event)
                    if isinstance(event, HandedOver):
                        break
        assert events[:1] == [SessionLost(kind="stall")]
        assert events[-1] == HandedOver(reason="error:stall", session_index=1)
        assert emu.sessions[0].end_reason == "stall"
