"""Graceful drain: how the gateway stops without cutting callers mid-sentence.

Theory of operation. A :class:`Drain` is asked to begin by the first stop request (SIGTERM or
SIGINT, see :func:`gateway.server.run_gateway`). Then:

1. The registry begins draining at once: ``GET /readyz`` answers 503, the voice webhook answers
   ``<Reject reason="busy"/>`` and new media sockets are refused (``"draining"``). ``/healthz``
   keeps answering 200: the process is alive, just not taking calls.
2. Live calls go on until every one has ended or ``limits.drain_timeout_s`` has passed. A second
   stop request ends this wait at once.
3. Each call still live is asked to say goodbye (:meth:`~gateway.registry.LiveCall.say_goodbye`:
   its Sonic stream is closed in order, the caller hears the goodbye prompt, the socket closes with
   1001). This phase is bounded by :data:`GOODBYE_PHASE_S`; a third stop request ends it at once.

:meth:`Drain.run` returns the counts the ``gateway.stopped`` line reports; the server stops after
it (calls still open by then are closed by the server's own shutdown). Time is anyio's clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

import anyio
import msgspec
import structlog

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from gateway.registry import CallRegistry

__all__ = ["GOODBYE_PHASE_S", "Drain", "DrainResult"]

GOODBYE_PHASE_S: Final = 8.0
"""Most time the goodbye phase takes: the packaged prompt (~3 s), its mark echo's slack (1 s),
closing the Sonic stream (1 s) and the socket (1 s), with room to spare."""

_log = structlog.get_logger(__name__)


class DrainResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a drain did.

    Attributes:
        drained: calls that ended on their own during the drain.
        cut: calls still live when the wait ended, sent the goodbye prompt and closed.
        hurried: a second stop request shortened the wait.
    """

    drained: int
    cut: int
    hurried: bool


async def _until_first(timeout_s: float, *waits: Callable[[], Awaitable[object]]) -> None:
    """Block until the first of ``waits`` returns or ``timeout_s`` passes."""
    with anyio.move_on_after(timeout_s):
        async with anyio.create_task_group() as tg:

            async def one(wait: Callable[[], Awaitable[object]]) -> None:
                await wait()
                tg.cancel_scope.cancel()

            for wait in waits:
                tg.start_soon(one, wait)


@final
class Drain:
    """One gateway's drain (see the module docstring).

    Args:
        registry: the app's call registry.
        timeout_s: how long live calls may go on (``limits.drain_timeout_s``).
    """

    __slots__ = ("_abort", "_hurry", "_registry", "_requested", "_requests", "_timeout_s")

    def __init__(self, registry: CallRegistry, timeout_s: float) -> None:
        self._registry = registry
        self._timeout_s = timeout_s
        self._requests = 0
        self._requested = anyio.Event()
        self._hurry = anyio.Event()
        self._abort = anyio.Event()

    @property
    def requested(self) -> bool:
        """True once :meth:`request` was called."""
        return self._requested.is_set()

    def request(self) -> None:
        """One stop request: the first begins the drain, the second ends the wait for live calls,
        the third ends the goodbye phase. Does not block; the registry refuses new calls at once."""
        self._requests += 1
        if self._requests == 1:
            self._registry.begin_drain()
            self._requested.set()
        elif self._requests == 2:
            self._hurry.set()
        else:
            self._abort.set()

    async def wait_requested(self) -> None:
        """Block until the first :meth:`request`."""
        await self._requested.wait()

    async def run(self) -> DrainResult:
        """Drain: wait for live calls, then say goodbye to the rest; blocks (bounded).

        Call after :meth:`wait_requested` returned.
        """
        registry = self._registry
        live_at_start = registry.live_count
        started_before = registry.statistics().calls_started
        _log.info("gateway.draining", live_calls=live_at_start, timeout_s=self._timeout_s)
        await _until_first(self._timeout_s, registry.wait_idle, self._hurry.wait, self._abort.wait)
        cut = registry.say_goodbye_all()
        if cut:
            _log.info("gateway.drain_goodbye", calls=cut, hurried=self._hurry.is_set())
            await _until_first(GOODBYE_PHASE_S, registry.wait_idle, self._abort.wait)
        started_during = registry.statistics().calls_started - started_before
        return DrainResult(
            drained=max(live_at_start + started_during - cut, 0),
            cut=cut,
            hurried=self._hurry.is_set(),
        )
