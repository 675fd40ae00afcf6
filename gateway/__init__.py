"""The service edge: HTTP/WebSocket app, server, CLI, configuration, logging.

Sub-packages with their own public API: :mod:`gateway.emulator` (the Nova Sonic emulator) and
:mod:`gateway.replay` (scripted call replays). ``gateway.wiring`` (the ``serve`` assembly) imports
the AWS SDK and is imported only by the ``serve`` command.
"""

from __future__ import annotations

from gateway.app import GatewayState, create_app
from gateway.config import (
    MEDIA_PATH,
    VOICE_PATH,
    CallConfig,
    DebugConfig,
    GatewayConfig,
    LimitsConfig,
    LoggingConfig,
    ServerConfig,
    SonicConfig,
    TwilioConfig,
    load_config,
)
from gateway.logs import bind_call, configure_logging, redact_pii
from gateway.media_ws import StarletteTwilioSocket
from gateway.registry import CallFactory, CallRefused, CallRegistry, LiveCall
from gateway.server import RunningGateway, run_gateway, serve_gateway
from gateway.signature import (
    compute_signature,
    validate_webhook_signature,
    validate_websocket_signature,
)
from gateway.twilio_rest import (
    CallAlreadyEnded,
    CallUpdated,
    TwilioApiError,
    TwilioConnectionError,
    TwilioRestClient,
    TwilioRestError,
    TwilioRestSettings,
    open_twilio_rest,
)
from gateway.twiml import dial_number_twiml, dial_sip_twiml, reject_twiml, stream_twiml
from gateway.version import VERSION

__all__ = [
    "MEDIA_PATH",
    "VERSION",
    "VOICE_PATH",
    "CallAlreadyEnded",
    "CallConfig",
    "CallFactory",
    "CallRefused",
    "CallRegistry",
    "CallUpdated",
    "DebugConfig",
    "GatewayConfig",
    "GatewayState",
    "LimitsConfig",
    "LiveCall",
    "LoggingConfig",
    "RunningGateway",
    "ServerConfig",
    "SonicConfig",
    "StarletteTwilioSocket",
    "TwilioApiError",
    "TwilioConfig",
    "TwilioConnectionError",
    "TwilioRestClient",
    "TwilioRestError",
    "TwilioRestSettings",
    "bind_call",
    "compute_signature",
    "configure_logging",
    "create_app",
    "dial_number_twiml",
    "dial_sip_twiml",
    "load_config",
    "open_twilio_rest",
    "redact_pii",
    "reject_twiml",
    "run_gateway",
    "serve_gateway",
    "stream_twiml",
    "validate_webhook_signature",
    "validate_websocket_signature",
]
