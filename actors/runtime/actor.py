"""The actor base class and its immutable snapshot.

Rules:

* An actor owns its state and exactly one ``run`` coroutine. Every task it needs lives in a task
  group opened inside ``run``; nothing escapes it.
* It accepts one closed union ``M`` of frozen msgspec messages and handles them with an exhaustive
  ``match`` ending in ``case _: assert_never(msg)``.
* Mailboxes are NOT owned by the actor: they are created by whoever builds the supervisor and
  passed to the factory, so a restarted (fresh) instance reads the same mailboxes.
* ``run`` accepts ``task_status`` and calls ``task_status.started()`` once it is ready (so
  ``await tg.start(actor.run)`` and supervisors wait for readiness). A supervisor treats a ``run``
  that returns without calling it as started-then-exited.
* Stopping: cancellation is the brutal stop. :meth:`Actor.request_stop` is the polite one; the
  default returns False ("cancel me now"). Override it to start a graceful drain (e.g. put a stop
  message on your control mailbox with ``send_nowait``) and return True; the supervisor then
  waits up to the child's shutdown timeout before cancelling.
* Time comes from ``anyio.current_time()`` only.

The default ``run`` is a receive loop: signal ready, then ``handle`` each message from
:meth:`Actor.receive` (control mailbox first, if any) until the mailbox closes. Actors that need
timers or several tasks override ``run`` and may still use :meth:`Actor.receive`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.lowlevel import checkpoint

from actors.errors import MailboxClosed
from actors.runtime.mailbox import MailboxStats, receive_either

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from actors.runtime.mailbox import Mailbox, Receiver

__all__ = ["Actor", "ActorSnapshot"]


class ActorSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag="actor", tag_field="type"):
    """An immutable snapshot of one actor (JSON: ``{"type": "actor", ...}``)."""

    name: str
    kind: str
    """The actor's class name."""
    state: str
    mailboxes: tuple[MailboxStats, ...]
    messages_in: int
    messages_out: int
    restarts: int
    """How many times the supervisor restarted this child id before building this instance."""
    age_s: float
    """Seconds since this instance started (0.0 before it starts)."""


class Actor[M]:
    """Base class of every actor; generic over its closed message union ``M``.

    Args:
        name: a static name for logs and snapshots; by convention the child spec id.
        inbox: the data mailbox (for a pure control actor, pass the control mailbox here).
        control: optional control mailbox; :meth:`receive` always prefers it over ``inbox``.

    Attributes:
        name: as given.
        state: a short word the actor sets ("starting", "running", "idle", "draining"...); the
            runtime sets "starting", "stopped", "crashed" and "cancelled" around ``run``.
        messages_in: messages taken by :meth:`receive` (or counted by the subclass).
        messages_out: messages sent through :meth:`send_to` / :meth:`send_to_nowait`.
        restarts: filled by the supervisor.
        started_at: ``anyio.current_time()`` when the runtime started this instance, or None.
    """

    def __init__(
        self,
        name: str,
        *,
        inbox: Receiver[M] | None = None,
        control: Receiver[M] | None = None,
    ) -> None:
        self.name = name
        self.state = "new"
        self.messages_in = 0
        self.messages_out = 0
        self.restarts = 0
        self.started_at: float | None = None
        self._inbox = inbox
        self._control = control

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Signal ready, then handle messages until the mailbox (control, if any) closes.

        Blocks for the actor's whole life. Override for actors with timers or several tasks.
        """
        self.state = "running"
        task_status.started()
        while True:
            try:
                msg = await self.receive()
            except MailboxClosed:
                return
            await self.handle(msg)

    async def handle(self, msg: M) -> None:
        """Handle one message (used by the default :meth:`run`); subclasses override.

        Write it as an exhaustive ``match msg:`` ending in ``case _: assert_never(msg)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must override handle() or run()")

    def request_stop(self) -> bool:
        """Ask politely to stop; must not block. Return True if a graceful stop has begun.

        The default returns False: the supervisor cancels the actor at once.
        """
        return False

    # ------------------------------------------------------------------ messaging

    async def receive(self) -> M:
        """Block until the next message: a pending control message always comes first.

        Raises:
            MailboxClosed: the inbox (or, with a control mailbox, the control mailbox) is closed
                and drained.
            RuntimeError: the actor was built without mailboxes.
        """
        if self._control is not None:
            if self._inbox is None:
                msg = await self._control.receive()
            else:
                msg = await receive_either(self._control, self._inbox)
        elif self._inbox is not None:
            msg = await self._inbox.receive()
        else:
            raise RuntimeError(f"actor {self.name} has no mailbox to receive from")
        self.messages_in += 1
        return msg

    async def receive_until(self, deadline: float | None) -> M | None:
        """:meth:`receive`, giving up at ``deadline`` (anyio clock; None: wait for ever).

        Returns:
            The next message, or None once the deadline passed with none.

        Raises:
            MailboxClosed: as :meth:`receive`.
        """
        if deadline is None:
            return await self.receive()
        if anyio.current_time() >= deadline:
            # A due deadline comes before queued messages (receive takes those without a yield).
            await checkpoint()
            return None
        with anyio.move_on_at(deadline):
            return await self.receive()
        return None

    async def send_to[T](self, mailbox: Mailbox[T], msg: T) -> None:
        """Send ``msg`` to a peer's mailbox and count it (blocks per the mailbox's policy)."""
        await mailbox.send(msg)
        self.messages_out += 1

    def send_to_nowait[T](self, mailbox: Mailbox[T], msg: T) -> bool:
        """Offer ``msg`` to a peer's mailbox without waiting; count it if accepted."""
        accepted = mailbox.send_nowait(msg)
        if accepted:
            self.messages_out += 1
        return accepted

    # ------------------------------------------------------------------ introspection

    def mailboxes(self) -> tuple[Receiver[Any], ...]:
        """The mailboxes this actor reads, for snapshots (control first)."""
        return tuple(box for box in (self._control, self._inbox) if box is not None)

    def statistics(self) -> ActorSnapshot:
        """Return an immutable snapshot (state, mailbox stats, counters, restarts, age)."""
        age = 0.0 if self.started_at is None else anyio.current_time() - self.started_at
        return ActorSnapshot(
            name=self.name,
            kind=type(self).__name__,
            state=self.state,
            mailboxes=tuple(box.statistics() for box in self.mailboxes()),
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            restarts=self.restarts,
            age_s=round(age, 3),
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.state}>"
