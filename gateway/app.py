"""The Starlette ASGI app: Twilio webhook, media WebSocket, health and debug routes.

Rules: no module-level state. Everything an app needs (config, call factory, registry) is bound
into its route handlers and exposed on ``app.state.gateway`` (:class:`GatewayState`), so several
apps can live in one process and the app can be mounted into another ASGI app. The app starts no
background tasks: each media socket's call runs inside that socket's ASGI task, owned by the server.

Routes (paths are fixed: :data:`~gateway.config.VOICE_PATH`, :data:`~gateway.config.MEDIA_PATH`):

* ``POST /twilio/voice``: signature check (with an auth token; 403 otherwise; also 403 for another
  ``AccountSid`` when ``twilio.account_sid`` is set), then ``<Connect><Stream>`` TwiML carrying a
  one-use stream token for this call when signatures are checked (:mod:`gateway.stream_token`),
  or ``<Reject reason="busy"/>`` at the concurrency limit, while the event loop is overloaded, or
  while the process drains (stopping). The called number picks the call's route, and a
  configuration webhook may be asked first (:mod:`gateway.routing`); a non-default route is
  named in a ``route`` parameter the stream token binds.
* ``WS /twilio/media``: see :mod:`gateway.media_ws`.
* ``GET /healthz``: liveness, ``{"status": "ok", "live_calls": N, "version": "..."}``; stays 200
  while the process drains.
* ``GET /readyz``: readiness, the same body; 200 while new calls are taken, 503 with
  ``"status": "draining"`` from the moment a stop signal arrived (route traffic elsewhere).
* ``GET /debug/actors``, ``GET /debug/load``: see :mod:`gateway.debug`; ``GET /debug``, the live
  page: :mod:`gateway.debug_page`.
* ``GET /metrics``: Prometheus text format, see :mod:`gateway.metrics`.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, final

import attrs
import msgspec
import structlog
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from gateway.config import MEDIA_PATH, VOICE_PATH, GatewayConfig
from gateway.debug import DebugActorsEndpoint, DebugLoadEndpoint, DebugSources
from gateway.debug_page import DebugPageEndpoint
from gateway.loop_lag import LoopLagMonitor
from gateway.media_ws import MediaStreamEndpoint
from gateway.metrics import ConnectorStatisticsSource, GatewayMetrics
from gateway.registry import CallFactory, CallRegistry, RefusalReason
from gateway.routes import DEFAULT_ROUTE
from gateway.routing import CallRouter, RoutedFactory
from gateway.signature import validate_webhook_signature
from gateway.stream_token import PARAM_STREAM_TOKEN, StreamTokens, derive_key
from gateway.twiml import PARAM_ROUTE, reject_twiml, stream_parameters, stream_twiml
from gateway.version import VERSION

if TYPE_CHECKING:
    from starlette.requests import Request


__all__ = ["GatewayState", "Health", "create_app"]

_log = structlog.get_logger(__name__)
_ENCODER = msgspec.json.Encoder()
_TWIML = "application/xml"
# Twilio's voice webhook form is a few hundred bytes; anything near this is not Twilio.
_MAX_WEBHOOK_BODY = 64 * 1024


class Health(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The body of ``/healthz``."""

    status: str
    live_calls: int
    version: str


@attrs.frozen
class GatewayState:
    """What one app instance owns; reachable as ``app.state.gateway``."""

    config: GatewayConfig
    registry: CallRegistry
    call_factory: CallFactory
    loop_monitor: LoopLagMonitor | None = None
    stream_tokens: StreamTokens | None = None
    """Mints (webhook) and spends (media socket) stream tokens; None without an auth token."""
    metrics: GatewayMetrics | None = None
    router: CallRouter | None = None
    """Chooses each call's route (webhook) and hands its plan to the call factory."""


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it exceeds ``limit`` bytes (stops reading there)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _form_fields(request: Request, body: bytes) -> list[tuple[str, str]] | None:
    """Form fields of a urlencoded body (Twilio's format), [] for JSON, None when malformed."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return []  # signed through bodySHA256 in the URL; carries no form fields
    try:
        text = body.decode("utf-8")
        return urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        return None


@final
class VoiceWebhook:
    """The ``POST /twilio/voice`` handler."""

    __slots__ = ("_config", "_registry", "_router", "_tokens")

    def __init__(
        self,
        config: GatewayConfig,
        registry: CallRegistry,
        tokens: StreamTokens | None,
        router: CallRouter,
    ) -> None:
        self._config = config
        self._registry = registry
        self._tokens = tokens
        self._router = router

    def _public_url(self, request: Request) -> str:
        base = self._config.server.public_voice_url()
        if base is None:  # no public URL: local use only (no auth token possible)
            base = str(request.url.replace(query="", fragment="")).rstrip("?")
        return base + (f"?{request.url.query}" if request.url.query else "")

    def _stream_url(self, request: Request) -> str:
        url = self._config.server.public_media_url()
        if url is not None:
            return url
        # Local use without a public URL: the request's own origin (never with an auth token).
        scheme = "wss" if request.url.scheme == "https" else "ws"
        return str(request.url.replace(scheme=scheme, path=MEDIA_PATH, query="", fragment=""))

    async def handle(self, request: Request) -> Response:
        """Answer one webhook: reads the form body, decides, and waits for the call's
        configuration webhook when its route has one (bounded by its timeout)."""
        body = await _read_body(request, _MAX_WEBHOOK_BODY)
        if body is None:
            return Response(b"Payload Too Large", status_code=413, media_type="text/plain")
        fields = _form_fields(request, body)
        if fields is None:
            return Response(b"Bad Request", status_code=400, media_type="text/plain")
        token = self._config.twilio.auth_token
        if token is not None and not validate_webhook_signature(
            token,
            self._public_url(request),
            fields,
            request.headers.get("x-twilio-signature"),
            body=body,
        ):
            _log.warning("webhook.refused", reason="bad_signature")
            return Response(b"Forbidden", status_code=403, media_type="text/plain")
        values = dict(fields)
        if not values.get("CallSid"):
            _log.warning("webhook.refused", reason="no_call_sid")
            return Response(b"CallSid missing", status_code=400, media_type="text/plain")
        account = self._config.twilio.account_sid
        if account is not None and values.get("AccountSid") != account:
            _log.warning("webhook.refused", reason="wrong_account")
            return Response(b"Forbidden", status_code=403, media_type="text/plain")
        refusal: RefusalReason | None = (
            "draining"
            if self._registry.draining
            else "busy"
            if self._registry.at_capacity()
            else "overloaded"
            if self._registry.is_overloaded()
            else None
        )
        if refusal is not None:
            self._registry.refuse(refusal, values["CallSid"])
            _log.warning("webhook.rejected", reason=refusal, call_sid=values["CallSid"])
            return Response(reject_twiml("busy"), media_type=_TWIML)
        route = await self._router.route_call(values)
        parameters = stream_parameters(
            values, pass_caller_numbers=self._config.twilio.pass_caller_numbers
        )
        bound = "" if route == DEFAULT_ROUTE else route
        if bound:
            parameters[PARAM_ROUTE] = bound
        if self._tokens is not None:
            parameters[PARAM_STREAM_TOKEN] = self._tokens.mint(
                values["CallSid"], values.get("AccountSid", ""), bound
            )
        _log.info("webhook.answered", call_sid=values["CallSid"], route=route)
        twiml = stream_twiml(
            self._stream_url(request), name=self._config.twilio.stream_name, parameters=parameters
        )
        return Response(twiml, media_type=_TWIML)


def _stream_tokens(config: GatewayConfig) -> StreamTokens | None:
    """Stream tokens are on exactly when signatures are checked (an auth token is configured)."""
    twilio = config.twilio
    if twilio.auth_token is None:
        return None
    key = (
        derive_key(twilio.auth_token)
        if twilio.stream_token_key is None
        else twilio.stream_token_key.encode("utf-8")
    )
    return StreamTokens(key, ttl_s=twilio.stream_token_ttl_s)


def create_app(
    config: GatewayConfig,
    *,
    call_factory: CallFactory,
    loop_monitor: LoopLagMonitor | None = None,
    debug_sources: DebugSources | None = None,
) -> Starlette:
    """Build the gateway's ASGI app.

    Args:
        config: the validated gateway config.
        call_factory: builds a call for each accepted, identified media socket.
        loop_monitor: the running server's event-loop lag monitor (its owner runs it); new calls
            are refused while it reports overload, and ``/debug/load`` shows its histogram.
        debug_sources: finished-call reports and Sonic statistics for ``/debug/actors``.

    The call routes come from the factory when it has them (``gateway.wiring.CallBuilder``: the
    webhook and the factory must share one :class:`~gateway.routing.CallRouter`), else from
    ``config`` without an HTTP client for configuration webhooks.

    Returns:
        A Starlette app with its :class:`GatewayState` on ``app.state.gateway``.
    """
    registry = CallRegistry(
        config.limits.max_concurrent_calls,
        max_pending=config.limits.max_pending_sockets,
        overloaded=None if loop_monitor is None else loop_monitor.overloaded,
    )
    stream_tokens = _stream_tokens(config)
    router = call_factory.router if isinstance(call_factory, RoutedFactory) else None
    if router is None:
        router = CallRouter.from_config(config)
    metrics = GatewayMetrics(
        registry,
        loop_monitor=loop_monitor,
        connector_statistics=call_factory.connector_statistics
        if isinstance(call_factory, ConnectorStatisticsSource)
        else None,
    )
    state = GatewayState(
        config=config,
        registry=registry,
        call_factory=call_factory,
        loop_monitor=loop_monitor,
        stream_tokens=stream_tokens,
        metrics=metrics,
        router=router,
    )

    async def healthz(request: Request) -> Response:
        del request
        health = Health(status="ok", live_calls=registry.live_count, version=VERSION)
        return Response(_ENCODER.encode(health), media_type="application/json")

    async def readyz(request: Request) -> Response:
        del request
        draining = registry.draining
        status = "draining" if draining else "ok"
        health = Health(status=status, live_calls=registry.live_count, version=VERSION)
        return Response(
            _ENCODER.encode(health),
            status_code=503 if draining else 200,
            media_type="application/json",
        )

    app = Starlette(
        routes=[
            Route(
                VOICE_PATH,
                VoiceWebhook(config, registry, stream_tokens, router).handle,
                methods=["POST"],
            ),
            WebSocketRoute(
                MEDIA_PATH,
                MediaStreamEndpoint(
                    config, registry, metrics.meter(call_factory), stream_tokens, router
                ).handle,
            ),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics.handle, methods=["GET"]),
            Route("/debug", DebugPageEndpoint(config.debug).handle, methods=["GET"]),
            Route(
                "/debug/actors",
                DebugActorsEndpoint(
                    config.debug,
                    registry,
                    reveal_pii=config.logging.log_pii,
                    sources=debug_sources,
                ).handle,
                methods=["GET"],
            ),
            Route(
                "/debug/load",
                DebugLoadEndpoint(config.debug, registry, loop_monitor).handle,
                methods=["GET"],
            ),
        ],
    )
    app.state.gateway = state
    return app
