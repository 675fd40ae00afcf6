"""How ``sonic-gateway serve`` assembles a running service: backend, Sonic connector, calls.

Theory of operation: :func:`serve_command` opens the Sonic backend (:func:`open_sonic_connector`:
with ``backend = "emulator"`` an in-process emulator on a free loopback port, trusted through its
own CA for that endpoint only, with static dummy credentials; with ``"bedrock"`` the regional
endpoint and the standard AWS credential chain), builds the call factory from it
(:func:`build_call_factory`) and serves the app until SIGTERM/SIGINT and the drain that follows
(:mod:`gateway.drain`) have stopped the server. Everything is owned by one task tree: leaving
:func:`serve_command` closes the server, then the connector (pooled streams in order), then the
emulator (removing its temporary CA directory), then the Twilio REST client the built-in tools use
(when configured), then the one HTTP client the configured tools share (:mod:`gateway.tools`).
"""

from __future__ import annotations

import collections
import contextlib
from typing import TYPE_CHECKING, Final, final

import anyio
import structlog

from actors.call import (
    PROMPT_NAMES,
    Call,
    CallDeps,
    CallIdentity,
    CallReport,
    DtmfSettings,
    PromptCache,
    PromptFile,
    PromptName,
    TwilioSocket,
    load_prompt_cache,
)
from actors.sonic import BotocoreCredentials, SonicConnector, StaticCredentials
from actors.tools import Toolbox, TransferCall
from gateway.debug import DebugSources
from gateway.server import run_gateway
from gateway.tools import build_toolbox, fallback_transfer, open_tool_client, sonic_tools
from gateway.twilio_rest import TwilioRestClient, TwilioRestSettings, open_twilio_rest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from actors.call.ports import CallControl
    from actors.sonic import ConnectorStatistics, CredentialsProvider, SonicSettings
    from gateway.config import GatewayConfig
    from gateway.registry import CallFactory

__all__ = [
    "CallBuilder",
    "FinishedCalls",
    "build_call_factory",
    "load_prompts",
    "open_call_control",
    "open_sonic_connector",
    "serve_command",
]

FINISHED_CALLS_KEPT: Final = 64

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
                endpoint_uri=emulator.endpoint_uri,
                ca_bundle=emulator.ca_path,
                tools=sonic_tools(config.tools),
            )
            credentials = StaticCredentials()
            _log.info("backend.emulator_started", endpoint=emulator.endpoint_uri)
        else:
            settings = config.sonic.to_sonic_settings(tools=sonic_tools(config.tools))
            credentials = BotocoreCredentials()
            _log.info("backend.bedrock", region=settings.region, model_id=settings.model_id)
        connector = await stack.enter_async_context(
            SonicConnector(settings, credentials=credentials, pool=config.sonic.to_pool_settings())
        )
        yield connector


@final
class FinishedCalls:
    """The reports of the most recent finished calls (bounded), awaitable by CallSid.

    The call replays read transcripts, latencies and handovers from here; ``serve`` shows the
    latest on ``/debug/actors`` and the debug page. ``add`` is called from a call's
    ``on_finished`` hook and never blocks.
    """

    def __init__(self, keep: int = FINISHED_CALLS_KEPT) -> None:
        self._reports: collections.OrderedDict[str, CallReport] = collections.OrderedDict()
        self._keep = keep
        self._changed = anyio.Event()

    def add(self, report: CallReport) -> None:
        """Record a finished call's report, forgetting the oldest beyond the bound."""
        self._reports[report.call_sid] = report
        while len(self._reports) > self._keep:
            self._reports.popitem(last=False)
        self._changed.set()
        self._changed = anyio.Event()

    def recent(self, count: int) -> list[CallReport]:
        """The last ``count`` reports, newest first."""
        reports = list(self._reports.values())
        return reports[: -count - 1 : -1] if count > 0 else []

    def get(self, call_sid: str) -> CallReport | None:
        """The report of ``call_sid`` if it finished recently."""
        return self._reports.get(call_sid)

    async def wait_report(self, call_sid: str) -> CallReport:
        """Block until ``call_sid`` has finished and return its report."""
        while (report := self._reports.get(call_sid)) is None:
            await self._changed.wait()
        return report


def load_prompts(config: GatewayConfig) -> PromptCache:
    """Load the prompt cache ``config.prompts`` describes (``call.greeting_wav`` as the greeting's
    older key). Reads files and converts audio; blocks; done once at start.

    Raises:
        ConfigError: a configured file is not a usable WAV / μ-law clip (names its key).
    """
    prompts = config.prompts
    wavs: dict[PromptName, PromptFile] = {}
    for name in PROMPT_NAMES:
        path = prompts.wav(name)
        if path is not None:
            wavs[name] = PromptFile(key=f"prompts.{name}_wav", path=path)
    if config.call.greeting_wav is not None:
        wavs["greeting"] = PromptFile(key="call.greeting_wav", path=config.call.greeting_wav)
    cache = load_prompt_cache(wavs, cache_dir=prompts.cache_dir)
    _log.info("gateway.prompts_loaded", sources=dict(cache.sources), ms=cache.durations_ms())
    return cache


def build_call_factory(
    config: GatewayConfig,
    connector: SonicConnector,
    *,
    on_finished: Callable[[CallReport], None] | None = None,
    prompts: PromptCache | None = None,
    tools: Toolbox | None = None,
    call_control: CallControl | None = None,
) -> CallFactory:
    """Build the factory of per-call actor trees (``actors.call``) over ``connector``.

    Each call it builds is a :class:`~actors.call.Call` (a CallSupervisor over TwilioIngress,
    SonicSession, TurnTaker and PlaybackEgress) over the socket and identity the gateway read.
    Its SonicSession opens conversations through ``connector``; its behaviour comes from
    ``config.call``. The prompts are loaded once (``prompts``, or :func:`load_prompts` here), not
    per call. ``tools`` are the executable ``[[tools]]`` (:func:`gateway.tools.build_toolbox`,
    over the process's one HTTP client); None: no tool runs (the model is answered
    ``unknown_tool``). ``call_control`` is the Twilio REST client the built-in ``end_call`` /
    ``transfer_call`` use (:func:`open_call_control`); with ``call.fallback_target`` it also
    transfers a call whose Sonic session failed for good.

    Raises:
        ConfigError: ``prompts`` is None and a configured prompt file is not usable, or
            ``call.fallback_target`` names no ``transfer_call`` target.
    """
    call = config.call
    if prompts is None:
        prompts = load_prompts(config)
    fallback: TransferCall | None = None
    if call.fallback_target is not None:
        fallback = TransferCall(
            target=call.fallback_target,
            twiml=fallback_transfer(config.tools, call.fallback_target),
        )
    deps = CallDeps(
        connector=connector,
        sonic_settings=connector.settings,
        greeting_ulaw=prompts.greeting,
        goodbye_ulaw=prompts.goodbye,
        prompts=prompts,
        playback_lead_ms=float(call.playback_lead_ms),
        playback_chunk_ms=call.playback_chunk_ms,
        local_vad_barge_in=call.local_vad_barge_in,
        # 0 in the config means "no guard": the smallest guard the VAD can express is one frame.
        min_barge_in_speech_ms=float(max(call.min_barge_in_speech_ms, 20)),
        on_finished=on_finished,
        dtmf=DtmfSettings(
            interdigit_ms=call.dtmf_interdigit_ms,
            terminator=call.dtmf_terminator,
            max_digits=call.dtmf_max_digits,
        ),
        tools=Toolbox() if tools is None else tools,
        call_control=call_control,
        hold_after_ms=float(call.hold_after_ms),
        fallback=fallback,
    )

    return CallBuilder(deps)


@final
class CallBuilder:
    """The call factory :func:`build_call_factory` returns; also the connector's statistics.

    ``connector_statistics`` lets ``/metrics`` report the Sonic pool and connections without the
    app holding the connector itself.
    """

    __slots__ = ("_deps",)

    def __init__(self, deps: CallDeps) -> None:
        self._deps = deps

    def __call__(self, socket: TwilioSocket, identity: CallIdentity) -> Call:
        return Call(socket, identity, self._deps)

    def connector_statistics(self) -> ConnectorStatistics:
        """The Sonic connector's pool and connection counters now."""
        return self._deps.connector.statistics()


@contextlib.asynccontextmanager
async def open_call_control(config: GatewayConfig) -> AsyncIterator[TwilioRestClient | None]:
    """The process's one Twilio REST client (for ``end_call`` / ``transfer_call``) when the
    config has REST credentials (``twilio.account_sid`` and an auth token or API key); else None.
    """
    twilio = config.twilio
    if twilio.account_sid is None or (twilio.auth_token is None and twilio.api_key_secret is None):
        yield None
        return
    async with open_twilio_rest(TwilioRestSettings.from_config(twilio)) as client:
        yield client


async def serve_command(config: GatewayConfig) -> None:
    """Run the whole service until a signal and the drain stop it; returns normally; blocks."""
    finished = FinishedCalls()
    # Before the connector opens: a bad prompt file stops the start with one ConfigError line.
    prompts = load_prompts(config)
    async with (
        open_tool_client() as http,
        open_call_control(config) as control,
        open_sonic_connector(config) as connector,
    ):
        tools = build_toolbox(config.tools, http, max_in_flight=config.call.tools_max_in_flight)
        if config.tools:
            _log.info("gateway.tools", names=list(tools.names))
        sources = DebugSources(
            recent_reports=finished.recent, sonic_statistics=connector.statistics
        )
        factory = build_call_factory(
            config,
            connector,
            on_finished=finished.add,
            prompts=prompts,
            tools=tools,
            call_control=control,
        )
        await run_gateway(config, factory, debug_sources=sources)
