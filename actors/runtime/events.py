"""Typed supervisor events: every decision a supervisor takes is one of these.

Each event is a frozen msgspec Struct tagged on ``event`` (so a JSON list of them decodes back to
the union), carries ``at`` (``anyio.current_time()``), the supervisor's name and the child id. A
supervisor logs each one with structlog under a static name (``"supervisor.child_exited"``) and
keeps the most recent ones in a bounded deque shown in its snapshot.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "AutoShutdownTriggered",
    "ChildExited",
    "ChildKilled",
    "ChildRestarted",
    "ChildStarted",
    "ExitReason",
    "IntensityExceeded",
    "StopRequested",
    "SupervisorEvent",
]

ExitReason = Literal["normal", "shutdown", "error"]
"""``normal``: ``run`` returned on its own; ``shutdown``: the supervisor stopped it;
``error``: ``run`` raised (or the child failed to start)."""


class _Event(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag_field="event"):
    at: float
    supervisor: str
    child_id: str


class ChildStarted(_Event, frozen=True, kw_only=True, gc=False, tag="child_started"):
    """A fresh instance from the child's factory signalled ready."""

    kind: str
    restarts: int


class ChildExited(_Event, frozen=True, kw_only=True, gc=False, tag="child_exited"):
    """A child's ``run`` ended."""

    reason: ExitReason
    error: str | None = None
    """``repr`` of the exception for ``error`` (and for an error raised while shutting down)."""


class ChildRestarted(_Event, frozen=True, kw_only=True, gc=False, tag="child_restarted"):
    """The supervisor is restarting ``child_id`` because ``cause`` (a child id) exited."""

    cause: str
    restarts: int


class ChildKilled(_Event, frozen=True, kw_only=True, gc=False, tag="child_killed"):
    """A child did not finish its graceful stop within ``timeout`` seconds and was cancelled."""

    timeout: float


class IntensityExceeded(_Event, frozen=True, kw_only=True, gc=False, tag="intensity_exceeded"):
    """More than ``max_restarts`` in ``period`` s: the supervisor stops all and gives up."""

    max_restarts: int
    period: float


class AutoShutdownTriggered(_Event, frozen=True, kw_only=True, gc=False, tag="auto_shutdown"):
    """A significant child exited without restart; the supervisor stops all and returns."""

    policy: str


class StopRequested(_Event, frozen=True, kw_only=True, gc=False, tag="stop_requested"):
    """The owner asked for an orderly stop of the whole subtree (``child_id`` is empty)."""


type SupervisorEvent = (
    ChildStarted
    | ChildExited
    | ChildRestarted
    | ChildKilled
    | IntensityExceeded
    | AutoShutdownTriggered
    | StopRequested
)
