"""Supervisors with Erlang/OTP semantics, expressed as data.

Theory of operation (OTP ``supervisor``, mapped onto anyio structured concurrency):

* A :class:`Supervisor` is built from :class:`ChildSpec` s and runs them in ONE task group it owns,
  each child in its own cancel scope. Children start in spec order, each awaited with
  ``await tg.start(...)`` so it signals readiness with ``task_status.started()``.
* A child's ``run`` ending is an *exit*: ``normal`` (returned), ``error`` (raised an
  ``Exception``; a child supervisor that gave up raises :class:`SupervisorGaveUp`, so failure
  escalates one level) or ``shutdown`` (we stopped it). Exits wake the supervisor through one
  event; there is no queue of exits.
* Restart types: PERMANENT always restarts, TRANSIENT only after an error, TEMPORARY never.
  Every restart builds a FRESH instance from the factory.
* Strategies: ONE_FOR_ONE restarts the exited child; ONE_FOR_ALL stops all other running
  children (reverse start order) and restarts them all in start order; REST_FOR_ONE does that for
  the children started after the exited one. As in OTP, a TEMPORARY sibling stopped by a group
  restart is not restarted, and children not running at the time stay stopped.
* Intensity: each restart decision is recorded in :class:`RestartIntensity`; more than
  ``max_restarts`` in ``period`` seconds (``anyio.current_time()``) -> stop all children in reverse
  start order and raise :class:`SupervisorGaveUp` to the parent.
* A child that fails to start during a restart counts as an error exit (and so against intensity).
  A child that fails during the supervisor's own start-up stops the started ones and re-raises.
* Auto shutdown (OTP ``auto_shutdown``): with ANY_SIGNIFICANT, a significant child's exit that
  does not lead to a restart stops all children and the supervisor returns normally; with
  ALL_SIGNIFICANT, that happens once every significant child has so exited. Significant children
  must be TRANSIENT or TEMPORARY, and need an auto-shutdown policy other than NEVER.
* Stopping one child (OTP ``shutdown``): ``shutdown == 0`` is ``brutal_kill`` (cancel at once).
  Otherwise the supervisor calls the child's ``request_stop()``; if that returns True the child has
  ``shutdown`` seconds to end on its own, after which it is cancelled (:class:`ChildKilled`). If it
  returns False (the actor default) the child is cancelled at once, and its ``finally`` blocks run
  (each cleanup bounded with ``move_on_after(t, shield=True)``). Children stop in reverse start
  order, one at a time, so a whole stop takes at most the sum of the shutdown timeouts plus those
  bounded cleanups. ``math.inf`` waits forever (OTP ``infinity``; the usual choice for a child
  supervisor, which stops its own children within their timeouts).
* The owner stops the tree in order with ``await sup.stop()`` (or ``request_stop()``). Cancelling
  the supervisor's scope is the brutal stop: every child is cancelled at once.
* Every decision is a typed event (``actors.runtime.events``), logged with structlog under a
  static name and kept in a bounded deque shown in :meth:`Supervisor.statistics`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, final

import anyio
import attrs
import msgspec
import structlog

from actors.errors import SupervisorGaveUp
from actors.runtime.actor import ActorSnapshot
from actors.runtime.events import (
    AutoShutdownTriggered,
    ChildExited,
    ChildKilled,
    ChildRestarted,
    ChildStarted,
    ExitReason,
    IntensityExceeded,
    StopRequested,
    SupervisorEvent,
)
from actors.runtime.intensity import RestartIntensity

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskGroup, TaskStatus

__all__ = [
    "AutoShutdown",
    "Child",
    "ChildSpec",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorSnapshot",
]


class Restart(enum.StrEnum):
    """When an exited child is restarted."""

    PERMANENT = "permanent"
    """Always."""
    TRANSIENT = "transient"
    """Only after an error exit."""
    TEMPORARY = "temporary"
    """Never."""


class Strategy(enum.StrEnum):
    """Which children restart together."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class AutoShutdown(enum.StrEnum):
    """Whether significant children's exits end the supervisor (OTP ``auto_shutdown``)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class Child(Protocol):
    """What a supervisor can run: an :class:`~actors.runtime.Actor` or a :class:`Supervisor`."""

    name: str
    state: str
    restarts: int
    started_at: float | None

    async def run(self, *, task_status: TaskStatus[None] = ...) -> None: ...

    def request_stop(self) -> bool: ...

    def statistics(self) -> ActorSnapshot | SupervisorSnapshot: ...


def _check_shutdown(_: object, __: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"shutdown must be >= 0 seconds (math.inf for infinity), got {value}")


@attrs.frozen
class ChildSpec:
    """How to run one child.

    Args:
        id: unique within the supervisor; by convention also the actor's name.
        factory: builds a FRESH instance; called at start and on every restart. Close over the
            mailboxes (which outlive instances), never over a previous instance.
        restart: PERMANENT / TRANSIENT / TEMPORARY.
        shutdown: seconds a graceful stop may take before the child is cancelled; 0 = cancel at
            once (brutal kill); ``math.inf`` = wait (child supervisors).
        significant: the child's exit may auto-shutdown the supervisor (TRANSIENT/TEMPORARY only).
    """

    id: str
    factory: Callable[[], Child]
    restart: Restart = Restart.PERMANENT
    shutdown: float = attrs.field(default=5.0, validator=_check_shutdown)
    significant: bool = False

    def __attrs_post_init__(self) -> None:
        if self.significant and self.restart is Restart.PERMANENT:
            raise ValueError(f"child {self.id}: a significant child must be transient or temporary")


class SupervisorSnapshot(
    msgspec.Struct, frozen=True, kw_only=True, tag="supervisor", tag_field="type"
):
    """An immutable snapshot of a supervisor and its whole subtree (JSON-encodable)."""

    name: str
    kind: str
    state: str
    strategy: Strategy
    max_restarts: int
    period: float
    auto_shutdown: AutoShutdown
    restarts: int
    """How many times this supervisor's parent restarted it (as for an actor)."""
    restarts_performed: int
    """How many restarts this supervisor decided."""
    age_s: float
    children: tuple[ActorSnapshot | SupervisorSnapshot, ...]
    """The latest instance of each child, in start order (exited ones show their final state)."""
    recent_events: tuple[SupervisorEvent, ...]


@attrs.define(eq=False)
class _Running:
    """One instance of a child spec, from start to exit."""

    spec: ChildSpec
    instance: Child
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    done: anyio.Event = attrs.field(factory=anyio.Event)
    stopping: bool = False
    exited: bool = False
    handled: bool = False
    started: bool = False
    torn_down: bool = False
    error: BaseException | None = None


class _Outcome(enum.Enum):
    CONTINUE = enum.auto()
    AUTO_SHUTDOWN = enum.auto()
    GAVE_UP = enum.auto()


@final
class Supervisor:
    """Runs child specs under a strategy, restart intensity and auto-shutdown policy.

    Args:
        name: a static name for logs and snapshots (``"call"``).
        children: the specs, in start order; ids must be unique.
        strategy: ONE_FOR_ONE, ONE_FOR_ALL or REST_FOR_ONE.
        max_restarts: N of "at most N restarts in T seconds".
        period: T, in seconds.
        auto_shutdown: NEVER, ANY_SIGNIFICANT or ALL_SIGNIFICANT.
        recent_events: how many events the snapshot keeps.

    Raises:
        ValueError: duplicate ids, or significant children with ``AutoShutdown.NEVER``.
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        period: float = 5.0,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
        recent_events: int = 64,
    ) -> None:
        ids = [spec.id for spec in children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"supervisor {name}: child ids must be unique, got {ids}")
        if auto_shutdown is AutoShutdown.NEVER and any(spec.significant for spec in children):
            raise ValueError(f"supervisor {name}: significant children need an auto_shutdown")
        self.name = name
        self.state = "new"
        self.restarts = 0
        self.started_at: float | None = None
        self._specs = tuple(children)
        self._strategy = strategy
        self._intensity = RestartIntensity(max_restarts, period)
        self._auto_shutdown = auto_shutdown
        self._events: deque[SupervisorEvent] = deque(maxlen=recent_events)
        self._log = structlog.get_logger("actors.runtime.supervisor").bind(supervisor=name)
        self._current: dict[str, _Running] = {}
        self._child_restarts: dict[str, int] = dict.fromkeys(ids, 0)
        self._restarts_performed = 0
        self._stop_requested = False
        self._ran = False
        self._tg: TaskGroup | None = None
        self._wakeup: anyio.Event | None = None
        self._stopped: anyio.Event | None = None

    # ------------------------------------------------------------------ owner API

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, signal ready, then supervise until stopped.

        Blocks until an orderly stop (:meth:`stop`), an auto shutdown, or giving up.

        Raises:
            SupervisorGaveUp: restart intensity exceeded (all children were stopped first).
            Exception: a child failed during start-up (the started ones were stopped first).
        """
        if self._ran:
            raise RuntimeError(f"supervisor {self.name} already ran; build a fresh one")
        self._ran = True
        self.started_at = anyio.current_time()
        self.state = "starting"
        self._wakeup = anyio.Event()
        if self._stop_requested:
            self._wakeup.set()
        failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for spec in self._specs:
                    rec = await self._start(spec)
                    if rec.error is not None:
                        # OTP: a child failing in init fails the supervisor's own start.
                        await self._stop_all()
                        failure = rec.error
                        break
                else:
                    self.state = "running"
                    task_status.started()
                    outcome = await self._supervise()
                    if outcome is _Outcome.GAVE_UP:
                        failure = SupervisorGaveUp(
                            self.name, self._intensity.max_restarts, self._intensity.period
                        )
        finally:
            self._tg = None
            self.state = "stopped" if failure is None else "failed"
            self._stopped_event().set()
        if failure is not None:
            raise failure

    def request_stop(self) -> bool:
        """Begin an orderly stop of the subtree (reverse start order); does not block."""
        if not self._stop_requested:
            self._stop_requested = True
            if self._wakeup is not None:
                self._wakeup.set()
        return True

    @property
    def stop_requested(self) -> bool:
        """True once an orderly stop was requested."""
        return self._stop_requested

    async def stop(self) -> None:
        """Stop the subtree in order and wait until :meth:`run` has returned."""
        self.request_stop()
        if self._ran:
            await self.wait_stopped()

    async def wait_stopped(self) -> None:
        """Block until :meth:`run` has ended (for any reason)."""
        await self._stopped_event().wait()

    def _stopped_event(self) -> anyio.Event:
        if self._stopped is None:
            self._stopped = anyio.Event()
        return self._stopped

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> SupervisorSnapshot:
        """Snapshot this supervisor and (recursively) every child's latest instance."""
        age = 0.0 if self.started_at is None else anyio.current_time() - self.started_at
        return SupervisorSnapshot(
            name=self.name,
            kind=type(self).__name__,
            state=self.state,
            strategy=self._strategy,
            max_restarts=self._intensity.max_restarts,
            period=self._intensity.period,
            auto_shutdown=self._auto_shutdown,
            restarts=self.restarts,
            restarts_performed=self._restarts_performed,
            age_s=round(age, 3),
            children=tuple(
                self._current[spec.id].instance.statistics()
                for spec in self._specs
                if spec.id in self._current
            ),
            recent_events=tuple(self._events),
        )

    def recent_events(self) -> tuple[SupervisorEvent, ...]:
        """The most recent events, oldest first."""
        return tuple(self._events)

    def __repr__(self) -> str:
        return f"<Supervisor {self.name} {self.state}>"

    # ------------------------------------------------------------------ supervision loop

    async def _supervise(self) -> _Outcome:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            # Replaced before any await: a later exit sets the new event, earlier ones are in the
            # flags scanned below, so no exit is missed.
            self._wakeup = anyio.Event()
            # A wake-up may race our own cancellation: never act on a tree being torn down.
            await anyio.lowlevel.checkpoint_if_cancelled()
            if self._stop_requested:
                self._emit(
                    StopRequested(at=anyio.current_time(), supervisor=self.name, child_id="")
                )
                await self._stop_all()
                return _Outcome.CONTINUE
            for spec in self._specs:
                rec = self._current.get(spec.id)
                if rec is None or not rec.exited or rec.handled or rec.torn_down:
                    continue
                rec.handled = True
                outcome = await self._handle_exit(rec)
                if outcome is not _Outcome.CONTINUE:
                    return outcome
                if self.stop_requested:
                    break  # the wake-up is set: the next pass stops everything

    async def _handle_exit(self, rec: _Running) -> _Outcome:
        spec = rec.spec
        self._emit_exit(rec)
        failed = rec.error is not None
        if spec.restart is Restart.TEMPORARY or (spec.restart is Restart.TRANSIENT and not failed):
            if spec.significant and self._auto_shutdown_due():
                self._emit(
                    AutoShutdownTriggered(
                        at=anyio.current_time(),
                        supervisor=self.name,
                        child_id=spec.id,
                        policy=self._auto_shutdown.value,
                    )
                )
                await self._stop_all()
                return _Outcome.AUTO_SHUTDOWN
            return _Outcome.CONTINUE
        if not self._intensity.record(anyio.current_time()):
            self._emit(
                IntensityExceeded(
                    at=anyio.current_time(),
                    supervisor=self.name,
                    child_id=spec.id,
                    max_restarts=self._intensity.max_restarts,
                    period=self._intensity.period,
                )
            )
            await self._stop_all()
            return _Outcome.GAVE_UP
        self._restarts_performed += 1
        index = self._specs.index(spec)
        match self._strategy:
            case Strategy.ONE_FOR_ONE:
                group = [spec]
            case Strategy.ONE_FOR_ALL:
                group = list(self._specs)
            case Strategy.REST_FOR_ONE:
                group = list(self._specs[index:])
        # Siblings in the group that are running now stop (reverse order) and restart, except
        # temporary ones; siblings not running stay as they are.
        restart = [spec]
        for other in reversed(group):
            if other is spec:
                continue
            other_rec = self._current.get(other.id)
            if other_rec is None or other_rec.exited:
                continue
            await self._stop_one(other_rec)
            if other.restart is not Restart.TEMPORARY:
                restart.append(other)
        for other in sorted(restart, key=self._specs.index):
            self._child_restarts[other.id] += 1
            self._emit(
                ChildRestarted(
                    at=anyio.current_time(),
                    supervisor=self.name,
                    child_id=other.id,
                    cause=spec.id,
                    restarts=self._child_restarts[other.id],
                )
            )
            new = await self._start(other)
            if new.error is not None:
                # Failed to start: an error exit, handled (and counted) on the next pass.
                assert self._wakeup is not None
                self._wakeup.set()
        return _Outcome.CONTINUE

    def _auto_shutdown_due(self) -> bool:
        match self._auto_shutdown:
            case AutoShutdown.NEVER:
                return False
            case AutoShutdown.ANY_SIGNIFICANT:
                return True
            case AutoShutdown.ALL_SIGNIFICANT:
                return all(
                    self._current[s.id].exited
                    for s in self._specs
                    if s.significant and s.id in self._current
                )

    # ------------------------------------------------------------------ start / stop

    async def _start(self, spec: ChildSpec) -> _Running:
        """Build a fresh instance and start it; returns once it is ready or has failed."""
        assert self._tg is not None
        try:
            instance = spec.factory()
        except Exception as exc:
            rec = _Running(spec=spec, instance=_FailedFactory(spec.id))
            self._current[spec.id] = rec
            rec.exited = True
            rec.error = exc
            rec.done.set()
            return rec
        instance.restarts = self._child_restarts[spec.id]
        rec = _Running(spec=spec, instance=instance)
        self._current[spec.id] = rec
        await self._tg.start(self._run_child, rec)
        if rec.started:
            self._emit(
                ChildStarted(
                    at=anyio.current_time(),
                    supervisor=self.name,
                    child_id=spec.id,
                    kind=type(instance).__name__,
                    restarts=instance.restarts,
                )
            )
        return rec

    async def _run_child(
        self, rec: _Running, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The task wrapping one child instance: never raises an ``Exception``."""
        instance = rec.instance
        instance.started_at = anyio.current_time()
        instance.state = "starting"
        status = _ReadyStatus(task_status, rec)
        try:
            with rec.scope:
                await instance.run(task_status=status)
        except Exception as exc:
            rec.error = exc
            if instance.state != "failed":  # a child supervisor that gave up says so itself
                instance.state = "crashed"
        except BaseException:
            # Cancelled from outside our scope (the supervisor itself is being torn down) or
            # KeyboardInterrupt: not an exit to supervise, just propagate.
            rec.torn_down = True
            instance.state = "cancelled"
            raise
        else:
            if instance.state not in ("stopped", "failed"):
                instance.state = "cancelled" if rec.scope.cancelled_caught else "stopped"
        finally:
            rec.exited = True
            rec.done.set()
            if not (rec.stopping or rec.torn_down) and self._wakeup is not None and rec.started:
                self._wakeup.set()
        if not status.called:
            # run() ended before signalling ready: tell tg.start() anyway; _start reads the flags.
            if rec.error is None:
                rec.started = True
                assert self._wakeup is not None
                self._wakeup.set()
            task_status.started()

    async def _stop_one(self, rec: _Running) -> None:
        """Stop one child per its shutdown spec and record its exit (never raises)."""
        if not rec.done.is_set():
            rec.stopping = True
            timeout = rec.spec.shutdown
            graceful = timeout > 0 and rec.instance.request_stop()
            if graceful:
                with anyio.move_on_after(timeout):
                    await rec.done.wait()
                if not rec.done.is_set():
                    self._emit(
                        ChildKilled(
                            at=anyio.current_time(),
                            supervisor=self.name,
                            child_id=rec.spec.id,
                            timeout=timeout,
                        )
                    )
            rec.scope.cancel()
            await rec.done.wait()
        if not rec.handled:
            rec.handled = True
            self._emit_exit(rec)

    async def _stop_all(self) -> None:
        """Stop every running child in reverse start order."""
        self.state = "stopping"
        for spec in reversed(self._specs):
            rec = self._current.get(spec.id)
            if rec is not None:
                await self._stop_one(rec)

    # ------------------------------------------------------------------ events

    def _emit_exit(self, rec: _Running) -> None:
        reason: ExitReason
        if rec.stopping:
            reason = "shutdown"
        elif rec.error is not None:
            reason = "error"
        else:
            reason = "normal"
        self._emit(
            ChildExited(
                at=anyio.current_time(),
                supervisor=self.name,
                child_id=rec.spec.id,
                reason=reason,
                error=None if rec.error is None else repr(rec.error),
            )
        )

    def _emit(self, event: SupervisorEvent) -> None:
        self._events.append(event)
        fields = msgspec.structs.asdict(event)
        del fields["supervisor"]  # bound on the logger
        name = f"supervisor.{type(event).__struct_config__.tag}"
        if isinstance(event, ChildExited) and event.error is not None:
            self._log.warning(name, **fields)
        elif isinstance(event, IntensityExceeded | ChildKilled):
            self._log.error(name, **fields)
        else:
            self._log.info(name, **fields)


@final
class _ReadyStatus:
    """Forwards ``task_status.started()`` and records that the child became ready."""

    __slots__ = ("_rec", "_status", "called")

    def __init__(self, status: TaskStatus[None], rec: _Running) -> None:
        self._status = status
        self._rec = rec
        self.called = False

    def started(self, value: None = None) -> None:
        if self.called:
            raise RuntimeError("task_status.started() called twice")
        self.called = True
        self._rec.started = True
        if self._rec.instance.state == "starting":
            self._rec.instance.state = "running"
        self._status.started(value)


@final
class _FailedFactory:
    """Stands in for an instance whose factory raised, so snapshots still show the child."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "crashed"
        self.restarts = 0
        self.started_at: float | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        raise AssertionError("never run")  # pragma: no cover

    def request_stop(self) -> bool:
        return False

    def statistics(self) -> ActorSnapshot:
        return ActorSnapshot(
            name=self.name,
            kind="FactoryFailed",
            state=self.state,
            mailboxes=(),
            messages_in=0,
            messages_out=0,
            restarts=self.restarts,
            age_s=0.0,
        )
