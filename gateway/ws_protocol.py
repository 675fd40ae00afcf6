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

It also makes everything a peer can send end quietly, with the right close code and no log line
of its own: text that is not UTF-8 is refused with 1007 (uvicorn logs a traceback for each and
queues nothing the app can tell apart), and when the WebSocket layer refuses a frame (1009 over
``ws_max_size``, 1002 malformed) the disconnect event the app receives carries
:data:`SERVER_FAULT_KEY` (``"invalid_payload"``, ``"message_too_big"``, ``"framing_error"``), so the
app knows the server closed, and why, and does not mistake it for the peer leaving.

It relies on these attributes of uvicorn 0.54's ``WebSocketsSansIOProtocol``: ``read_paused``,
``queue``, ``frames``, ``curr_msg_data_type``, ``close_sent``, ``conn`` and ``transport``. ``tests/gateway/test_ws_protocol.py`` checks the behaviour against the installed uvicorn,
so an upgrade that moves them fails a test instead of silently restoring the churn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast, final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent

__all__ = ["PAUSE_AT", "RESUME_AT", "SERVER_FAULT_KEY", "MediaWebSocketProtocol"]

PAUSE_AT: Final = 32
"""Messages waiting for the app at which reading pauses (640 ms of Twilio audio)."""
RESUME_AT: Final = 4
"""Messages still waiting when reading resumes."""
SERVER_FAULT_KEY: Final = "sonic_gateway.server_fault"
"""Key of a ``websocket.disconnect`` event that THIS server caused by refusing a peer's frame."""

# Close code the WebSocket layer sent -> the fault it names.
_FAULTS: Final = {1007: "invalid_payload", 1009: "message_too_big", 1002: "framing_error"}


@final
class MediaWebSocketProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` with high/low-water reader flow control (module docstring)."""

    pauses = 0
    """Times reading paused, process-wide (for tests and benchmarks)."""

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                text = data.decode()
            except UnicodeDecodeError:
                # RFC 6455 section 8.1: fail the connection with 1007; a peer's fault, no log.
                self.frames = []
                self.conn.fail(1007, "invalid UTF-8")
                self.handle_parser_exception()
                return
            self.frames = []
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            # The base class pauses reading unless it is already paused: let it believe so.
            paused = self.read_paused
            self.read_paused = True
            try:
                super().send_receive_event_to_app()
            finally:
                self.read_paused = paused
        self._maybe_pause()

    def _maybe_pause(self) -> None:
        """Pause reading once :data:`PAUSE_AT` messages wait for the app."""
        if (
            not self.read_paused
            and self.queue.qsize() >= PAUSE_AT
            and not self.transport.is_closing()
        ):
            self.read_paused = True
            MediaWebSocketProtocol.pauses += 1
            self.transport.pause_reading()

    def handle_parser_exception(self) -> None:
        # As uvicorn's, but the disconnect event says the server closed, and why (module docstring).
        assert self.conn.close_sent is not None
        code = self.conn.close_sent.code
        event = {
            "type": "websocket.disconnect",
            "code": code,
            "reason": self.conn.close_sent.reason,
            SERVER_FAULT_KEY: _FAULTS.get(code, "framing_error"),
        }
        self.queue.put_nowait(cast("ASGIReceiveEvent", event))
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    async def receive(self) -> ASGIReceiveEvent:
        message = await self.queue.get()
        if self.read_paused and self.queue.qsize() <= RESUME_AT:
            self.read_paused = False
            self.transport.resume_reading()
        return message
