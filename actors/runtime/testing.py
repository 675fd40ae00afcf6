"""Test helpers for actors and supervisors: run one under a task group, drain mailboxes.

Small on purpose: these are the helpers the runtime's own tests use.

* :func:`running` starts any actor or supervisor with ``await tg.start(...)`` (so the ``with``
  body runs once it is ready), and on exit stops it the way a supervisor would: ``request_stop()``
  with a grace period, then cancellation. Errors the actor raised propagate.
* :func:`drain_nowait` takes everything queued in a mailbox, without waiting.
* :func:`receive_n` waits for exactly ``n`` messages.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import TaskStatus

    from actors.runtime.mailbox import Receiver
    from actors.runtime.supervisor import Child

__all__ = ["drain_nowait", "receive_n", "running"]


@contextlib.asynccontextmanager
async def running[C: Child](child: C, *, grace: float = 1.0) -> AsyncIterator[C]:
    """Run ``child`` (an Actor or Supervisor) for the body of an ``async with``.

    Blocks on entry until the child signals ready. On exit the child is asked to stop; if it
    accepts (``request_stop()`` returns True) it has ``grace`` seconds to end, then it is
    cancelled. An exception raised by the child's ``run`` propagates (inside an ExceptionGroup
    if the body also raised).
    """
    async with anyio.create_task_group() as tg:
        done = anyio.Event()
        await tg.start(_run, child, done)
        try:
            yield child
        finally:
            if child.request_stop():
                with anyio.move_on_after(grace, shield=True):
                    await done.wait()
            tg.cancel_scope.cancel()


async def _run(child: Child, done: anyio.Event, *, task_status: TaskStatus[None]) -> None:
    child.started_at = anyio.current_time()
    try:
        await child.run(task_status=task_status)
    finally:
        done.set()


def drain_nowait[T](mailbox: Receiver[T]) -> list[T]:
    """Take every message queued in ``mailbox`` now, without waiting."""
    out: list[T] = []
    while True:
        try:
            out.append(mailbox.receive_nowait())
        except anyio.WouldBlock:
            return out


async def receive_n[T](mailbox: Receiver[T], n: int) -> list[T]:
    """Block until ``n`` messages arrived from ``mailbox`` and return them (bound it with
    ``anyio.fail_after``)."""
    return [await mailbox.receive() for _ in range(n)]
