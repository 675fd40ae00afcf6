"""Live calls by CallSid, and the seam types between the edge and a call.

Theory of operation:

* A media socket takes a *handshake slot* (:meth:`CallRegistry.handshake`) before it is accepted,
  then, once a valid ``start`` named the CallSid, a *call slot* (:meth:`CallRegistry.reserve_nowait`).
  Handshake slots have their own small limit (``max_pending``) and never count against the calls,
  so sockets that never send ``start`` cannot take call capacity.
  Both are context managers: leaving the ``with`` block (normal end, error, cancellation) releases
  the slot, so no exit path leaks one. Slots are taken synchronously, so check-and-take cannot race.
* Refusals raise :class:`CallRefused` with a static reason: ``"duplicate"`` (that CallSid already
  has a live stream), ``"busy"`` (``max_concurrent_calls`` reached), ``"handshakes"`` (``max_pending``
  sockets already between accept and a valid ``start``), ``"overloaded"`` (the ``overloaded`` check
  said the event loop is behind: a new call would degrade every live one), ``"draining"`` (the
  process is stopping: :meth:`CallRegistry.begin_drain` was called; only new sockets are refused, a
  socket already past its handshake slot still becomes a call).
* A call slot holds the :class:`LiveCall` once the factory built it, so ``/debug/actors`` can list
  every live call's ``statistics()``.

The seam: :data:`CallFactory` builds a :class:`LiveCall` from the socket and the identity read from
``start``; the gateway then awaits :meth:`LiveCall.run` and releases the slot when it returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal, Protocol, final

import anyio
import msgspec

from actors.call.ports import CallIdentity, TwilioSocket
from actors.errors import GatewayError

if TYPE_CHECKING:
    from actors.call.outcome import CallOutcome

__all__ = [
    "CallFactory",
    "CallRefused",
    "CallRegistry",
    "CallSlot",
    "LiveCall",
    "RefusalReason",
    "RegistryStatistics",
]


class LiveCall(Protocol):
    """One call's actor tree, as the gateway drives it."""

    async def run(self) -> CallOutcome | None:
        """Run the call until it ends (stop, hang-up, socket error); blocks for the call's life.

        The call owns the socket's receive and send sides while this runs; the gateway closes the
        socket after it returns or raises, with the code of the outcome returned (None: completed)
        or of the error raised.
        """
        ...

    def statistics(self) -> object:
        """A snapshot of the call's actor tree that ``msgspec.json.encode`` can encode."""
        ...

    def caller_audio_dropped_ms(self) -> float:
        """Caller audio this call has dropped so far because its reader fell behind (ms)."""
        ...

    def debug_view(self, *, reveal_pii: bool) -> object:
        """The call for operators (identity, age, floor, actor tree), msgspec-encodable."""
        ...

    def say_goodbye(self) -> None:
        """The process is going away: end the call with the goodbye prompt, then close (1001).

        Does not block; :meth:`run` returns once the call has ended.
        """
        ...


CallFactory = Callable[[TwilioSocket, CallIdentity], LiveCall]
"""Builds (does not start) a call for an accepted, identified socket. Must not block."""

RefusalReason = Literal[
    "duplicate", "busy", "handshakes", "overloaded", "draining", "bad_signature", "bad_stream_token"
]


class CallRefused(GatewayError):
    """A socket was refused by the registry; ``reason`` is a static label for logs and metrics."""

    def __init__(self, reason: RefusalReason, call_sid: str | None = None) -> None:
        self.reason: RefusalReason = reason
        self.call_sid = call_sid
        super().__init__(f"call refused: {reason}")


class RegistryStatistics(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Counters of a :class:`CallRegistry`."""

    live_calls: int
    handshakes: int
    max_calls: int
    calls_started: int
    refused_duplicate: int
    refused_busy: int
    refused_handshakes: int
    refused_overloaded: int
    refused_draining: int
    refused_bad_signature: int
    """Upgrades whose ``X-Twilio-Signature`` did not check out."""
    refused_bad_stream_token: int
    """Sockets whose ``start`` carried no valid, unspent stream token for its call (or named
    another account than ``twilio.account_sid``)."""
    draining: bool
    caller_audio_dropped_ms: float
    """Caller audio dropped by calls that have ended plus the live ones, since start."""


@final
class CallSlot:
    """A reserved place for one call; holds the call once built. Leaving ``with slot:`` frees it."""

    __slots__ = ("_release", "call", "call_sid")

    def __init__(self, call_sid: str, release: Callable[[str], None]) -> None:
        self.call_sid = call_sid
        self.call: LiveCall | None = None
        self._release: Callable[[str], None] | None = release

    def attach(self, call: LiveCall) -> None:
        """Record the built call so it appears in snapshots."""
        self.call = call

    def release(self) -> None:
        """Free the slot; idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release(self.call_sid)

    def __enter__(self) -> CallSlot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@final
class CallRegistry:
    """Live calls keyed by CallSid, bounded by ``max_calls``; synchronous, owned by one app.

    Args:
        max_calls: most calls live at once.
        max_pending: most sockets in their handshake at once (accepted, no valid ``start`` yet).
        overloaded: called (synchronously) before a new call is admitted; True refuses it.
    """

    def __init__(
        self,
        max_calls: int,
        *,
        max_pending: int = 20,
        overloaded: Callable[[], bool] | None = None,
    ) -> None:
        if max_calls < 1 or max_pending < 1:
            raise ValueError("max_calls and max_pending must be at least 1")
        self._max_calls = max_calls
        self._max_pending = max_pending
        self._overloaded = overloaded
        self._calls: dict[str, CallSlot] = {}
        self._handshakes = 0
        self._started = 0
        self._ended_dropped_ms = 0.0
        self._refused: dict[RefusalReason, int] = {
            "duplicate": 0,
            "busy": 0,
            "handshakes": 0,
            "overloaded": 0,
            "draining": 0,
            "bad_signature": 0,
            "bad_stream_token": 0,
        }
        self._draining = False
        # Set (and dropped) when the last call or handshake leaves; made lazily by wait_idle().
        self._idle: anyio.Event | None = None

    @property
    def live_count(self) -> int:
        """Calls holding a slot now."""
        return len(self._calls)

    def at_capacity(self) -> bool:
        """True when a new call would be refused as busy (the webhook answers ``<Reject>``)."""
        return len(self._calls) >= self._max_calls

    def is_overloaded(self) -> bool:
        """True when the ``overloaded`` check refuses new calls now."""
        return self._overloaded is not None and self._overloaded()

    def refuse(self, reason: RefusalReason, call_sid: str | None = None) -> CallRefused:
        """Count a refusal decided elsewhere (the webhook's ``<Reject>``) and return its error."""
        self._refused[reason] += 1
        return CallRefused(reason, call_sid)

    @property
    def draining(self) -> bool:
        """True once :meth:`begin_drain` was called: no new call is taken."""
        return self._draining

    def begin_drain(self) -> None:
        """Refuse every new socket (``"draining"``) from now on; live calls go on. Idempotent."""
        self._draining = True

    def say_goodbye_all(self) -> int:
        """Ask every live, built call to say goodbye and close; returns how many were asked."""
        calls = [slot.call for slot in self._calls.values() if slot.call is not None]
        for call in calls:
            call.say_goodbye()
        return len(calls)

    def is_live(self, call_sid: str) -> bool:
        """True when ``call_sid`` holds a slot."""
        return call_sid in self._calls

    @contextlib.contextmanager
    def handshake(self) -> Iterator[None]:
        """Hold a handshake slot (socket accepted, ``start`` not read yet) for the block.

        Raises:
            CallRefused: ``"draining"`` once :meth:`begin_drain` was called; ``"busy"`` at
                ``max_calls`` (the socket could not become a call); ``"handshakes"`` when
                ``max_pending`` sockets are in their handshake; ``"overloaded"`` while the
                ``overloaded`` check says so.
        """
        if self._draining:
            raise self.refuse("draining")
        if len(self._calls) >= self._max_calls:
            raise self.refuse("busy")
        if self._handshakes >= self._max_pending:
            raise self.refuse("handshakes")
        if self.is_overloaded():
            raise self.refuse("overloaded")
        self._handshakes += 1
        try:
            yield
        finally:
            self._handshakes -= 1
            self._maybe_idle()

    def reserve_nowait(self, call_sid: str) -> CallSlot:
        """Take the slot for ``call_sid``; use it as ``with slot:`` so every exit path frees it.

        Raises:
            CallRefused: ``"duplicate"`` when ``call_sid`` is live, ``"busy"`` at ``max_calls``.
        """
        if call_sid in self._calls:
            raise self.refuse("duplicate", call_sid)
        if len(self._calls) >= self._max_calls:
            raise self.refuse("busy", call_sid)
        slot = CallSlot(call_sid, self._release)
        self._calls[call_sid] = slot
        self._started += 1
        return slot

    def _release(self, call_sid: str) -> None:
        slot = self._calls.pop(call_sid)
        if slot.call is not None:
            self._ended_dropped_ms += slot.call.caller_audio_dropped_ms()
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self._idle is not None and not self._calls and not self._handshakes:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        """Block until no call and no handshake holds a slot (returns at once when idle)."""
        while self._calls or self._handshakes:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    def snapshots(self) -> list[object]:
        """``statistics()`` of every live call that has been built, in start order."""
        return [slot.call.statistics() for slot in self._calls.values() if slot.call is not None]

    def views(self, *, reveal_pii: bool) -> list[object]:
        """``debug_view()`` of every live call that has been built, in start order."""
        return [
            slot.call.debug_view(reveal_pii=reveal_pii)
            for slot in self._calls.values()
            if slot.call is not None
        ]

    def statistics(self) -> RegistryStatistics:
        """Counters: live calls, handshakes, refusals by reason."""
        return RegistryStatistics(
            live_calls=len(self._calls),
            handshakes=self._handshakes,
            max_calls=self._max_calls,
            calls_started=self._started,
            refused_duplicate=self._refused["duplicate"],
            refused_busy=self._refused["busy"],
            refused_handshakes=self._refused["handshakes"],
            refused_overloaded=self._refused["overloaded"],
            refused_draining=self._refused["draining"],
            refused_bad_signature=self._refused["bad_signature"],
            refused_bad_stream_token=self._refused["bad_stream_token"],
            draining=self._draining,
            caller_audio_dropped_ms=self._ended_dropped_ms
            + sum(s.call.caller_audio_dropped_ms() for s in self._calls.values() if s.call),
        )
