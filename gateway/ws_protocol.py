"""uvicorn's sans-I/O WebSocket protocol, without a reader pause and resume per message.

Why: uvicorn's ``websockets-sansio`` implementation pauses the transport's reading after EVERY
message it queues for the app and resumes it when the app takes the message. On a media stream
(50 inbound messages a second per call) that is two selector system calls per message, for a
queue that is almost always drained at once; under load it showed as about 5 % of the process in
``selectors`` register and unregister calls.

:class:`MediaWebSocketProtocol` keeps uvicorn's implementation and changes only the flow control:
reading pauses when :data:`PAUSE_AT` messages wait for the app, and resumes when the app has
taken the queue down to :data:`RESUME_AT`. Backpressure is kept (a stuck app still stops reading,
so the kernel's receive buffer and then TCP push back on the peer); what goes is the churn. The
queue is bounded by ``PAUSE_AT`` messages of at most ``ws_max_size`` bytes each, plus what one
``data_received`` call holds.

It relies on two attributes of uvicorn 0.54's ``WebSocketsSansIOProtocol``: ``read_paused`` and
``queue``. ``tests/gateway/test_ws_protocol.py`` checks the behaviour against the installed uvicorn,
so an upgrade that moves them fails a test instead of silently restoring the churn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent

__all__ = ["PAUSE_AT", "RESUME_AT", "MediaWebSocketProtocol"]

PAUSE_AT: Final = 32
"""Messages waiting for the app at which reading pauses (640 ms of Twilio audio)."""
RESUME_AT: Final = 4
"""Messages still waiting when reading resumes."""


@final
class MediaWebSocketProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` with high/low-water reader flow control (module docstring)."""

    pauses = 0
    """Times reading paused, process-wide (for tests and benchmarks)."""

    def send_receive_event_to_app(self) -> None:
        # The base class pauses reading unless it is already paused: let it believe so, then
        # decide by the queue's length.
        paused = self.read_paused
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if not paused and self.queue.qsize() >= PAUSE_AT and not self.transport.is_closing():
            self.read_paused = True
            MediaWebSocketProtocol.pauses += 1
            self.transport.pause_reading()

    async def receive(self) -> ASGIReceiveEvent:
        message = await self.queue.get()
        if self.read_paused and self.queue.qsize() <= RESUME_AT:
            self.read_paused = False
            self.transport.resume_reading()
        return message
