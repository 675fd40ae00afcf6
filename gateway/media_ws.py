"""The Twilio Media Streams WebSocket: upgrade checks, handshake, and one call's lifetime.

Theory of operation, per socket (``WS /twilio/media``):

1. Before accepting: with an auth token, ``X-Twilio-Signature`` must match the PUBLIC ``wss://``
   URL (with or without a trailing ``/``); then a handshake slot must be free (live calls plus
   sockets in handshake below ``max_concurrent_calls``). A refusal closes before accepting, which
   the server answers with HTTP 403; nothing else happens for that socket.
2. Accept, then read ``connected`` and ``start`` within ``handshake_timeout_s``, decoded by the
   wire decoder and checked by :class:`~actors.wire.TwilioStreamValidator`. ``start`` must announce
   8 kHz mono μ-law and, when our TwiML put a ``callSid`` parameter in, agree with it.
   Sockets in this step hold a handshake slot (``limits.max_pending_sockets``), never a call slot.
2b. With an auth token, ``start.customParameters`` must carry the stream token our webhook minted
   for this very ``callSid``, ``accountSid`` and ``route`` parameter, unexpired and not spent before
   (:mod:`gateway.stream_token`); and with ``twilio.account_sid`` set, ``start.accountSid`` must
   be that account. Otherwise close 1008 with a WARNING ``media.refused`` naming the reason. So a
   replayed upgrade signature opens nothing: it needs a fresh webhook answer per call.
3. Reserve the CallSid in the :class:`~gateway.registry.CallRegistry`: a CallSid already live is
   refused (close 1008, reason ``duplicate``), and so is a call over the limit (``busy``).
3b. When this process did not answer the call's webhook and its route has a configuration webhook,
   ask it now (:meth:`gateway.routing.CallRouter.prepare`, bounded by its timeout).
4. Build the call with the :data:`~gateway.registry.CallFactory`, await its ``run()``, then close
   the socket. How it ended picks the close code, in ONE place (:mod:`actors.call.outcome`): an
   orderly end 1000; a peer's fault 1003 (binary frame), 1007 (text that is not UTF-8, not JSON,
   bad base64), 1008 (invalid or out-of-order Twilio message, control flood) or 1009 (message too
   big); a server fault 1011; cancellation (server shutdown) 1001. A real call closes the socket
   itself, at once for a peer's fault, and returns its outcome; the close here is then a no-op.
   Each call ends with ONE ``call.ended`` line carrying the outcome, close code and reason: INFO
   for an orderly end, WARNING (no traceback) for a peer's fault, ERROR for a server fault.

Invalid UTF-8 and oversized messages are refused by the WebSocket layer
(:class:`~gateway.ws_protocol.MediaWebSocketProtocol`), which sends 1007/1009 at once and tells
:class:`StarletteTwilioSocket` through its disconnect event, so the call's outcome says why.

No Sonic session or call object exists for a socket refused in steps 1-3. The slot is released on
every exit path (context managers). Only the call reads and writes the socket after step 3.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Final, final

import anyio
import structlog
from starlette.websockets import WebSocketDisconnect, WebSocketState

from actors.call.outcome import CallOutcome, outcome_for_end_reason, outcome_for_error
from actors.call.ports import CallIdentity
from actors.errors import (
    BrokenByPeer,
    ClosedByUs,
    InvalidPayload,
    MessageTooBig,
    RemoteProtocolError,
    ResourceClosed,
    UnsupportedData,
)
from actors.wire import (
    TwilioMessageError,
    TwilioStart,
    TwilioStreamValidator,
    decode_twilio_inbound,
)
from gateway.logs import bind_call
from gateway.registry import CallRefused
from gateway.signature import validate_websocket_signature
from gateway.stream_token import PARAM_STREAM_TOKEN
from gateway.twiml import PARAM_CALL_SID, PARAM_ROUTE
from gateway.ws_protocol import SERVER_FAULT_KEY

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from gateway.config import GatewayConfig
    from gateway.registry import CallFactory, CallRegistry
    from gateway.routing import CallRouter
    from gateway.stream_token import StreamTokens

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TOO_BIG",
    "MediaStreamEndpoint",
    "StarletteTwilioSocket",
    "WebSocketMessageTooBig",
]

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011

# Closing is bounded: a peer that never answers the close handshake does not hold the task.
_CLOSE_TIMEOUT_S: Final = 1.0

_log = structlog.get_logger(__name__)


class WebSocketMessageTooBig(MessageTooBig):
    """An incoming WebSocket message exceeded ``limits.ws_max_message_bytes``."""


@final
class StarletteTwilioSocket:
    """:class:`actors.call.TwilioSocket` over a Starlette WebSocket (text frames of UTF-8 JSON).

    One task may receive while another sends. After :meth:`close`, both raise
    :class:`~actors.errors.ClosedByUs`; after the peer left, :class:`~actors.errors.BrokenByPeer`.

    Args:
        websocket: an accepted Starlette WebSocket.
        max_message_bytes: largest message :meth:`receive` accepts (UTF-8 bytes).
    """

    __slots__ = ("_closed_by_us", "_max", "_peer_gone", "_ws")

    def __init__(self, websocket: WebSocket, *, max_message_bytes: int) -> None:
        self._ws = websocket
        self._max = max_message_bytes
        self._closed_by_us = False
        self._peer_gone = False

    def _check_open(self) -> None:
        if self._closed_by_us:
            raise ClosedByUs("the media socket was closed by the gateway")
        if self._peer_gone:
            raise BrokenByPeer("the media socket was closed by Twilio")

    async def receive(self) -> bytes:
        """Block until the next text frame; return it as UTF-8 bytes.

        Raises:
            BrokenByPeer: the peer closed or reset the socket.
            ClosedByUs: :meth:`close` was called.
            WebSocketMessageTooBig: the message is over the size cap.
            InvalidPayload: a text message that is not UTF-8 (the WebSocket layer closed, 1007).
            UnsupportedData: a binary frame (Twilio sends text only).
            RemoteProtocolError: the WebSocket layer refused a malformed frame (it closed, 1002).
        """
        self._check_open()
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self._peer_gone = not self._closed_by_us
            self._check_open()
            raise BrokenByPeer("the media socket failed") from exc
        if message["type"] == "websocket.disconnect":
            fault = message.get(SERVER_FAULT_KEY)
            if fault is not None:
                # The server already sent its close frame: nothing is left for close() to do.
                self._closed_by_us = True
                raise _server_fault(fault, message.get("code"))
            self._peer_gone = not self._closed_by_us
            self._check_open()
        text = message.get("text")
        if text is None:
            raise UnsupportedData("binary WebSocket frame; Twilio sends text", field="frame")
        data: bytes = text.encode("utf-8")
        if len(data) > self._max:
            raise WebSocketMessageTooBig(
                f"WebSocket message of {len(data)} bytes over the {self._max}-byte cap",
                field="frame",
            )
        return data

    async def send(self, data: bytes) -> None:
        """Send one text frame; blocks while the transport applies backpressure.

        Raises:
            BrokenByPeer: the peer is gone.
            ClosedByUs: :meth:`close` was called.
        """
        self._check_open()
        try:
            await self._ws.send({"type": "websocket.send", "text": data.decode("utf-8")})
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self._peer_gone = not self._closed_by_us
            self._check_open()
            raise BrokenByPeer("the media socket failed") from exc

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close the socket (bounded by 1 s); idempotent, never raises for a closed socket."""
        if self._closed_by_us:
            return
        self._closed_by_us = True
        if self._peer_gone or self._ws.application_state != WebSocketState.CONNECTED:
            return
        with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
            # Already closing or gone: closing is idempotent by contract.
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self._ws.close(code=code, reason=reason[:120])


def _server_fault(fault: object, code: object) -> RemoteProtocolError:
    """The error for a message the WebSocket layer refused (and already closed the socket for)."""
    if fault == "invalid_payload":
        return InvalidPayload("text WebSocket message is not valid UTF-8", field="frame")
    if fault == "message_too_big":
        return WebSocketMessageTooBig("WebSocket message over the size cap", field="frame")
    return RemoteProtocolError(f"malformed WebSocket frame (closed {code})", kind="framing_error")


def _log_ending(ending: CallOutcome, **fields: object) -> None:
    """The ONE ``call.ended`` line: INFO, WARNING for a peer's fault, ERROR for a server fault."""
    level = logging.INFO
    if ending.peer_fault:
        level = logging.WARNING
    elif ending.close_code == CLOSE_INTERNAL_ERROR:
        level = logging.ERROR
    _log.log(
        level,
        "call.ended",
        outcome=ending.outcome,
        close_code=ending.close_code,
        close_reason=ending.close_reason,
        end_reason=ending.end_reason,
        detail=ending.detail,
        **fields,
    )


def _check_start(start: TwilioStart) -> None:
    fmt = start.start.media_format
    if (fmt.encoding, fmt.sample_rate, fmt.channels) != ("audio/x-mulaw", 8000, 1):
        raise TwilioMessageError(
            f"unsupported media format {fmt.encoding}/{fmt.sample_rate}/{fmt.channels}",
            field="start.mediaFormat",
        )
    announced = start.start.custom_parameters.get(PARAM_CALL_SID)
    if announced is not None and announced != start.start.call_sid:
        raise TwilioMessageError(
            "start.callSid differs from the callSid our TwiML announced",
            field="start.customParameters.callSid",
        )


async def read_handshake(socket: StarletteTwilioSocket) -> TwilioStart:
    """Read and check ``connected`` then ``start``; blocks until both arrived.

    Raises:
        TwilioMessageError: malformed or out-of-order frame, unsupported format.
        BrokenByPeer: the peer left.
    """
    validator = TwilioStreamValidator()
    while True:
        msg = decode_twilio_inbound(await socket.receive())
        validator.feed(msg)  # raises on anything but connected, then start
        if isinstance(msg, TwilioStart):
            _check_start(msg)
            return msg


@final
class MediaStreamEndpoint:
    """The ``WS /twilio/media`` handler: one instance per app, holding no per-call state.

    Args:
        config: the gateway's config.
        registry: the app's call registry.
        call_factory: builds a call for an accepted, identified socket.
        stream_tokens: checks and spends the ``start``'s stream token; None: no token needed.
        router: prepares each call's route plan before the call is built; None: none.
    """

    __slots__ = ("_config", "_factory", "_public_url", "_registry", "_router", "_tokens")

    def __init__(
        self,
        config: GatewayConfig,
        registry: CallRegistry,
        call_factory: CallFactory,
        stream_tokens: StreamTokens | None = None,
        router: CallRouter | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._factory = call_factory
        self._tokens = stream_tokens
        self._router = router
        self._public_url = config.server.public_media_url()

    def _signature_ok(self, websocket: WebSocket) -> bool:
        token = self._config.twilio.auth_token
        if token is None:
            return True
        assert self._public_url is not None  # config validation: a token needs a public URL
        signature = websocket.headers.get("x-twilio-signature")
        return validate_websocket_signature(token, self._public_url, signature)

    def _start_refusal(self, start: TwilioStart) -> str | None:
        """Why this ``start`` may not open a call (spending its stream token), or None."""
        meta = start.start
        account = self._config.twilio.account_sid
        if account is not None and meta.account_sid != account:
            return "wrong_account"
        if self._tokens is None:
            return None
        token = meta.custom_parameters.get(PARAM_STREAM_TOKEN)
        route = meta.custom_parameters.get(PARAM_ROUTE, "")
        return self._tokens.verify(token, meta.call_sid, meta.account_sid, route)

    async def handle(self, websocket: WebSocket) -> None:
        """Serve one media socket from upgrade to close; blocks for the call's life."""
        if not self._signature_ok(websocket):
            self._registry.refuse("bad_signature")  # counted (metrics); the socket is closed here
            _log.warning("media.refused", reason="bad_signature")
            await websocket.close(code=CLOSE_POLICY_VIOLATION)  # before accept: HTTP 403
            return
        try:
            with self._registry.handshake():
                await websocket.accept()
                socket = StarletteTwilioSocket(
                    websocket, max_message_bytes=self._config.limits.ws_max_message_bytes
                )
                start = await self._handshake(socket)
        except CallRefused as exc:
            _log.warning("media.refused", reason=exc.reason)
            await websocket.close(code=CLOSE_POLICY_VIOLATION)  # before accept: HTTP 403
            return
        if start is None:
            return
        refusal = self._start_refusal(start)
        if refusal is not None:
            self._registry.refuse("bad_stream_token")  # counted; the log names the exact reason
            _log.warning("media.refused", reason=refusal, call_sid=start.start.call_sid)
            await socket.close(CLOSE_POLICY_VIOLATION, refusal)
            return
        custom = {k: v for k, v in start.start.custom_parameters.items() if k != PARAM_STREAM_TOKEN}
        identity = CallIdentity(
            call_sid=start.start.call_sid,
            stream_sid=start.stream_sid,
            account_sid=start.start.account_sid,
            custom_parameters=custom,
            started_at=anyio.current_time(),
            start_sequence_number=start.sequence_number,
        )
        with bind_call(identity.call_sid, identity.stream_sid):
            await self._run_call(socket, identity)

    async def _handshake(self, socket: StarletteTwilioSocket) -> TwilioStart | None:
        """``start`` once read and checked, or None after closing the socket with the reason."""
        timeout = self._config.limits.handshake_timeout_s
        try:
            with anyio.fail_after(timeout):
                return await read_handshake(socket)
        except TimeoutError:
            _log.warning("media.handshake_failed", reason="timeout", timeout_s=timeout)
            await socket.close(CLOSE_POLICY_VIOLATION, "handshake timeout")
        except RemoteProtocolError as exc:
            ending = outcome_for_error(exc)
            _log.warning(
                "media.handshake_failed",
                reason=ending.outcome,
                close_code=ending.close_code,
                detail=str(exc),
            )
            await socket.close(ending.close_code, ending.close_reason)
        except ResourceClosed:
            _log.info("media.handshake_failed", reason="peer_gone")
            await socket.close()
        return None

    async def _run_call(self, socket: StarletteTwilioSocket, identity: CallIdentity) -> None:
        try:
            slot = self._registry.reserve_nowait(identity.call_sid)
        except CallRefused as exc:
            _log.warning("media.refused", reason=exc.reason)
            await socket.close(CLOSE_POLICY_VIOLATION, exc.reason)
            return
        ending = outcome_for_end_reason("caller_hangup")
        try:
            with slot:
                if self._router is not None:
                    await self._router.prepare(identity)
                _log.info("call.started", live_calls=self._registry.live_count)
                call = self._factory(socket, identity)
                slot.attach(call)
                returned = await call.run()
                if returned is not None:
                    ending = returned
        except Exception as exc:
            ending = outcome_for_error(exc)
            if not ending.peer_fault and ending.close_code == CLOSE_INTERNAL_ERROR:
                # Not the peer's doing: a bug of ours, so a traceback (never with locals).
                _log.error("call.failed", error=type(exc).__name__, exc_info=exc)
        except BaseException:
            ending = outcome_for_end_reason("cancelled")
            raise
        finally:
            await socket.close(ending.close_code, ending.close_reason)
            duration = anyio.current_time() - identity.started_at
            _log_ending(ending, duration_s=round(duration, 3))
