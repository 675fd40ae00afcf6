"""How ``sonic-gateway serve`` assembles a running service: backend, Sonic connector, calls.

Theory of operation: :func:`serve_command` opens the Sonic backend (:func:`open_sonic_connector`:
with ``backend = "emulator"`` an in-process emulator on a free loopback port, trusted through its
own CA for that endpoint only, with static dummy credentials; with ``"bedrock"`` the regional
endpoint and the standard AWS credential chain), builds the call factory from it
(:func:`build_call_factory`) and serves the app until a signal stops uvicorn. Everything is owned by
one task tree: leaving :func:`serve_command` closes the server, then the connector (pooled streams
in order), then the emulator.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import structlog

from actors.errors import GatewayError
from actors.sonic import BotocoreCredentials, SonicConnector, StaticCredentials
from gateway.server import run_gateway

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors.sonic import CredentialsProvider, SonicSettings
    from gateway.config import GatewayConfig
    from gateway.registry import CallFactory

__all__ = ["build_call_factory", "open_sonic_connector", "serve_command"]

_log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def open_sonic_connector(config: GatewayConfig) -> AsyncIterator[SonicConnector]:
    """Open the configured Sonic backend and a connector to it for the block.

    Blocks on entry until the emulator (if any) serves and the connector resolved its config and
    credentials.

    Raises:
        SonicFatalError: credentials or client configuration are unusable.
    """
    async with contextlib.AsyncExitStack() as stack:
        settings: SonicSettings
        credentials: CredentialsProvider
        if config.backend == "emulator":
            from gateway.emulator import EmulatorSettings, run_emulator

            emulator = await stack.enter_async_context(run_emulator(EmulatorSettings()))
            settings = config.sonic.to_sonic_settings(
                endpoint_uri=emulator.endpoint_uri, ca_bundle=emulator.ca_path
            )
            credentials = StaticCredentials()
            _log.info("backend.emulator_started", endpoint=emulator.endpoint_uri)
        else:
            settings = config.sonic.to_sonic_settings()
            credentials = BotocoreCredentials()
            _log.info("backend.bedrock", region=settings.region, model_id=settings.model_id)
        connector = await stack.enter_async_context(
            SonicConnector(settings, credentials=credentials, pool=config.sonic.to_pool_settings())
        )
        yield connector


def build_call_factory(config: GatewayConfig, connector: SonicConnector) -> CallFactory:
    """Build the factory of per-call actor trees (``actors.call``) over ``connector``.

    Each call it builds is a CallSupervisor over the socket and identity the gateway read, whose
    SonicSession opens its conversations through ``connector`` and whose behaviour comes from
    ``config.call``.

    Raises:
        GatewayError: in this build the per-call actor tree is not wired into ``serve``.
    """
    del config, connector
    raise GatewayError("serve: the per-call actor tree (actors.call) is not wired in this build")


async def serve_command(config: GatewayConfig) -> None:
    """Run the whole service until a signal stops it; blocks."""
    async with open_sonic_connector(config) as connector:
        await run_gateway(config, build_call_factory(config, connector))
