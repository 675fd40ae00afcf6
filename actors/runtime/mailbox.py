"""Bounded mailboxes on anyio memory object streams, and a control-first two-mailbox receive.

Theory of operation:

* A :class:`Mailbox` owns both ends of one anyio memory object stream. It is created by whoever
  builds the supervisor and closed over by child factories, so it OUTLIVES actor instances: a
  restarted actor gets a fresh instance that reads the same mailbox, and peers keep sending to it.
* Every mailbox states its capacity (an int ``>= 1``; never unbounded; no rendezvous ``0``, see
  below) and an :class:`Overflow` policy applied when the buffer is full:
  ``BLOCK`` makes the sender wait (backpressure; control channels), ``DROP_OLDEST`` evicts the
  oldest queued item (audio: stale audio is worthless), ``DROP_NEWEST`` refuses the incoming item.
  Drops are counted, never logged per item.
* Counters: ``sent`` counts messages accepted into the mailbox, ``received`` those taken out,
  ``dropped`` those discarded by the policy (evicted or refused). With no drops,
  ``sent == received + depth``; under DROP_OLDEST, ``sent == received + depth + dropped``.
* :meth:`Mailbox.close` is a graceful end: later sends raise :class:`MailboxClosed`; receivers
  drain what is queued, then ``receive`` raises :class:`MailboxClosed` and ``async for`` ends.
  A sender already blocked (BLOCK policy) when ``close`` is called still delivers once the
  receiver makes room.
* Receiving is cancellation-safe (an item is taken only by a receiver that is running, never
  handed to one whose cancellation is pending), so an actor cancelled mid-``receive`` and
  restarted loses no message. A receiver waits on a wake-up event that sends and ``close`` set,
  the same one :func:`receive_either` uses.
* :func:`receive_either` takes from a control mailbox before a data mailbox. It does not race two
  receives (which could consume from both); it tries both without waiting, and otherwise waits on
  one wake-up event that either mailbox sets when an item arrives or it closes. No polling.
  This is why capacity 0 is refused: with a buffer of at least one, a waiting ``receive_either``
  means the buffer is empty, so any send lands in the buffer at once and sets the wake-up; a
  rendezvous sender would park inside anyio where no wake-up can follow it.

Hot path: a mailbox hop happens 50 times a second per direction per call, so ``send`` and
``receive`` only touch counters: no logging, no allocation besides what anyio does.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol, final

import anyio
import msgspec
from anyio.lowlevel import checkpoint, checkpoint_if_cancelled
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from actors.errors import MailboxClosed

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Mailbox", "MailboxStats", "Overflow", "Receiver", "receive_either"]


class Overflow(enum.StrEnum):
    """What a full mailbox does with one more message."""

    BLOCK = "block"
    """The sender waits until there is room (backpressure). ``send_nowait`` returns False."""
    DROP_OLDEST = "drop_oldest"
    """Evict the oldest queued message to make room, and count it as dropped."""
    DROP_NEWEST = "drop_newest"
    """Discard the incoming message, and count it as dropped."""


class MailboxStats(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An immutable snapshot of one mailbox."""

    name: str
    capacity: int
    overflow: Overflow
    depth: int
    """Messages queued now."""
    sent: int
    received: int
    dropped: int
    dropped_weight: float = 0.0
    """What the dropped messages weighed, by the mailbox's ``weigh`` (0 without one)."""
    closed: bool


class Receiver[T](Protocol):
    """The receiving side of a mailbox, as an actor sees it (covariant in ``T``).

    ``Mailbox[Stop]`` is a ``Receiver[Stop | Clear]``, so an actor typed on its whole message union
    can read a mailbox carrying part of it.
    """

    @property
    def name(self) -> str: ...

    async def receive(self) -> T: ...

    def receive_nowait(self) -> T: ...

    def statistics(self) -> MailboxStats: ...

    def add_wakeup(self, event: anyio.Event) -> None: ...

    def discard_wakeup(self, event: anyio.Event) -> None: ...


class _OwnedSendStream[T](MemoryObjectSendStream[T]):
    def __del__(self) -> None:
        """Silent: the owning Mailbox decides when the stream ends (see Mailbox.__init__)."""


class _OwnedReceiveStream[T](MemoryObjectReceiveStream[T]):
    def __del__(self) -> None:
        """Silent: the owning Mailbox decides when the stream ends (see Mailbox.__init__)."""


@final
class Mailbox[T]:
    """A bounded, named, counted channel with an explicit overflow policy.

    One object serves both sides: producers call :meth:`send` / :meth:`send_nowait`, the one
    consuming actor calls :meth:`receive` (or iterates). Create it outside the actors that use it.

    Args:
        name: a short static name for snapshots (``"egress.audio"``).
        capacity: buffer size, an int ``>= 1``. Floats (``math.inf``) are rejected: no unbounded
            mailbox.
        overflow: the policy when the buffer is full.
        weigh: optional measure of a message (its audio in ms, say), summed over dropped messages
            as ``dropped_weight``.
        max_weight: optional second bound, on the queued messages' total weight (a dropping
            policy and ``weigh`` are required): a message that would exceed it is handled as if
            the mailbox were full (under DROP_OLDEST the oldest go until it fits). So a mailbox
            of large messages cannot pin more than this, whatever its message capacity.

    Raises:
        ValueError: capacity is not an int >= 1, or ``max_weight`` comes without ``weigh`` or
            with the BLOCK policy.
    """

    __slots__ = (
        "_closed",
        "_dropped",
        "_dropped_weight",
        "_max_weight",
        "_name",
        "_overflow",
        "_received",
        "_recv",
        "_send",
        "_sent",
        "_wakeups",
        "_weigh",
        "_weight",
    )

    def __init__(
        self,
        name: str,
        capacity: int,
        overflow: Overflow = Overflow.BLOCK,
        *,
        weigh: Callable[[T], float] | None = None,
        max_weight: float | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"mailbox {name}: capacity must be an int >= 1, got {capacity!r}")
        if max_weight is not None and (weigh is None or overflow is Overflow.BLOCK):
            raise ValueError(f"mailbox {name}: max_weight needs weigh and a dropping policy")
        self._name = name
        self._overflow = overflow
        send, recv = anyio.create_memory_object_stream[T](capacity)
        # The mailbox owns both ends for its whole life and is simply dropped when unreferenced
        # (it outlives actors; no one "closes" a mailbox the way one closes a socket). anyio's
        # per-end "Unclosed stream" ResourceWarning would fire for every dropped mailbox, so the
        # ends get subclasses whose only change is a silent __del__.
        send.__class__ = _OwnedSendStream
        recv.__class__ = _OwnedReceiveStream
        self._send: MemoryObjectSendStream[T] = send
        self._recv: MemoryObjectReceiveStream[T] = recv
        self._sent = 0
        self._received = 0
        self._dropped = 0
        self._dropped_weight = 0.0
        self._weigh = weigh
        self._max_weight = max_weight
        self._weight = 0.0  # queued weight; tracked only with max_weight
        self._closed = False
        # Events of tasks blocked in receive_either(); empty almost always, so one truth test per send.
        self._wakeups: set[anyio.Event] = set()

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return self._name

    @property
    def capacity(self) -> int:
        return int(self._send.statistics().max_buffer_size)

    @property
    def overflow(self) -> Overflow:
        return self._overflow

    @property
    def depth(self) -> int:
        """Messages queued now (does not count senders blocked on a full BLOCK mailbox)."""
        return self._send.statistics().current_buffer_used

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (queued messages may still be received)."""
        return self._closed

    def __repr__(self) -> str:
        return f"<Mailbox {self._name} {self.depth}/{self.capacity} {self._overflow.value}>"

    # ------------------------------------------------------------------ sending

    def send_nowait(self, msg: T) -> bool:
        """Offer ``msg`` without waiting.

        Returns:
            True if the mailbox accepted ``msg`` (under DROP_OLDEST always, possibly evicting the
            oldest). False if it did not: under DROP_NEWEST the message was dropped and counted;
            under BLOCK the mailbox is full and ``msg`` is NOT counted as dropped (the caller still
            holds it and decides).

        Raises:
            MailboxClosed: the mailbox was closed.
        """
        if self._max_weight is not None:
            return self._send_weighed(msg)
        try:
            self._send.send_nowait(msg)
        except anyio.WouldBlock:
            if self._overflow is Overflow.BLOCK:
                return False
            self._dropped += 1
            if self._overflow is Overflow.DROP_NEWEST:
                if self._weigh is not None:
                    self._dropped_weight += self._weigh(msg)
                return False
            # DROP_OLDEST: the buffer is full and nobody waits to send (dropping mailboxes never
            # block), so evicting one item frees exactly one slot.
            evicted = self._recv.receive_nowait()
            if self._weigh is not None:
                self._dropped_weight += self._weigh(evicted)
            self._send.send_nowait(msg)
        except anyio.ClosedResourceError:
            raise MailboxClosed(f"mailbox {self._name} is closed") from None
        self._sent += 1
        if self._wakeups:
            self._wake()
        return True

    def _send_weighed(self, msg: T) -> bool:
        # Both bounds, under a dropping policy (checked in __init__).
        assert self._weigh is not None
        assert self._max_weight is not None
        if self._closed:
            raise MailboxClosed(f"mailbox {self._name} is closed")
        weight = self._weigh(msg)
        if self._overflow is Overflow.DROP_NEWEST or weight > self._max_weight:
            if self.depth >= self.capacity or self._weight + weight > self._max_weight:
                self._dropped += 1
                self._dropped_weight += weight
                return False
        else:  # DROP_OLDEST: evict until both bounds hold
            while self.depth and (
                self.depth >= self.capacity or self._weight + weight > self._max_weight
            ):
                evicted = self._recv.receive_nowait()
                lost = self._weigh(evicted)
                self._weight -= lost
                self._dropped += 1
                self._dropped_weight += lost
        self._send.send_nowait(msg)
        self._weight += weight
        self._sent += 1
        if self._wakeups:
            self._wake()
        return True

    async def send(self, msg: T) -> None:
        """Send ``msg``; blocks only under BLOCK while the mailbox is full (a checkpoint always).

        Under the dropping policies this never waits: a full mailbox drops per policy.

        Raises:
            MailboxClosed: the mailbox was closed before the message was accepted.
        """
        await checkpoint()
        if self.send_nowait(msg) or self._overflow is not Overflow.BLOCK:
            return
        # Full BLOCK mailbox: wait for room. (No wake-up needed: the buffer is non-empty.)
        try:
            await self._send.send(msg)
        except anyio.ClosedResourceError:
            raise MailboxClosed(f"mailbox {self._name} is closed") from None
        self._sent += 1

    def close(self) -> None:
        """End the mailbox gracefully; idempotent. Receivers drain queued messages, then stop."""
        self._closed = True
        self._send.close()
        if self._wakeups:
            self._wake()

    # ------------------------------------------------------------------ receiving

    def receive_nowait(self) -> T:
        """Take the next message without waiting.

        Raises:
            anyio.WouldBlock: nothing is queued.
            MailboxClosed: the mailbox is closed and drained.
        """
        try:
            msg = self._recv.receive_nowait()
        except anyio.EndOfStream:
            raise MailboxClosed(f"mailbox {self._name} is closed") from None
        self._received += 1
        if self._max_weight is not None:
            self._taken(msg)
        return msg

    async def receive(self) -> T:
        """Block until a message is available and return it (cancellation-safe).

        A queued message is returned without yielding to the event loop (a pending cancellation
        still raises first, and nothing is taken). Why: anyio's ``receive`` yields before every
        item, so each hop cost a second task step; a reader that never yields can take at most
        the mailbox's capacity before it must wait, since nothing else runs to refill it.

        Raises:
            MailboxClosed: the mailbox is closed and drained.
        """
        await checkpoint_if_cancelled()
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                pass
            wakeup = anyio.Event()
            self._wakeups.add(wakeup)
            try:
                await wakeup.wait()
            finally:
                self._wakeups.discard(wakeup)

    def _taken(self, msg: T) -> None:
        assert self._weigh is not None
        self._weight = max(0.0, self._weight - self._weigh(msg))

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except MailboxClosed:
            raise StopAsyncIteration from None

    # ------------------------------------------------------------------ wake-ups (receive_either)

    def add_wakeup(self, event: anyio.Event) -> None:
        """Set ``event`` when a message arrives or the mailbox closes (low level; one-shot)."""
        self._wakeups.add(event)

    def discard_wakeup(self, event: anyio.Event) -> None:
        """Forget an event given to :meth:`add_wakeup`."""
        self._wakeups.discard(event)

    def _wake(self) -> None:
        for event in self._wakeups:
            event.set()
        self._wakeups.clear()

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> MailboxStats:
        """Return an immutable snapshot of counters, depth and capacity."""
        stats = self._send.statistics()
        return MailboxStats(
            name=self._name,
            capacity=int(stats.max_buffer_size),
            overflow=self._overflow,
            depth=stats.current_buffer_used,
            sent=self._sent,
            received=self._received,
            dropped=self._dropped,
            dropped_weight=self._dropped_weight,
            closed=self.closed,
        )


async def receive_either[C, D](control: Receiver[C], data: Receiver[D]) -> C | D:
    """Receive the next message, always preferring a pending control message over data.

    Blocks until either mailbox has a message. A closed, drained data mailbox is ignored (control
    can still say "stop"); when the control mailbox is closed, queued data is drained first.

    Raises:
        MailboxClosed: the control mailbox is closed and both are drained.
    """
    while True:
        control_closed = False
        try:
            return control.receive_nowait()
        except anyio.WouldBlock:
            pass
        except MailboxClosed:
            control_closed = True
        data_closed = False
        try:
            return data.receive_nowait()
        except anyio.WouldBlock:
            pass
        except MailboxClosed:
            data_closed = True
        if control_closed:
            raise MailboxClosed(f"mailbox {control.name} is closed")
        wakeup = anyio.Event()
        control.add_wakeup(wakeup)
        if not data_closed:
            data.add_wakeup(wakeup)
        try:
            await wakeup.wait()
        finally:
            control.discard_wakeup(wakeup)
            data.discard_wakeup(wakeup)
