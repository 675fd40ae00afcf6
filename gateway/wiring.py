"""How ``sonic-gateway serve`` assembles a running service: backend, Sonic connector, calls.

Theory of operation: :func:`serve_command` opens the Sonic backend (:func:`open_sonic_connector`:
with ``backend = "emulator"`` an in-process emulator on a free loopback port, trusted through its
own CA for that endpoint only, with test credentials it verifies; with ``"bedrock"`` the regional
endpoint and the standard AWS credential chain), builds the call factory from it
(:func:`build_call_factory`) and serves the app until SIGTERM/SIGINT and the drain that follows
(:mod:`gateway.drain`) have stopped the server. Everything is owned by one task tree: leaving
:func:`serve_command` closes the server, then the connector (pooled streams in order), then the
emulator (removing its temporary CA directory), then the Twilio REST client the built-in tools use
(when configured), then the one HTTP client the configured tools and the configuration webhooks
share (:mod:`gateway.tools`, :mod:`gateway.routing`).

Routes: the factory holds the :class:`~gateway.routing.CallRouter` the app's voice webhook routes
through, and builds each call from its plan (:class:`RoutedDeps`): the route's system prompt, voice
and tools in the call's own :class:`~actors.sonic.SonicSettings`, its tool subset, its greeting.
A route's deps are built once; a webhook's overrides per call.
"""

from __future__ import annotations

import collections
import contextlib
import gc
from typing import TYPE_CHECKING, Final, final

import anyio
import attrs
import structlog

from actors.call import (
    PROMPT_NAMES,
    Call,
    CallDeps,
    CallIdentity,
    CallReport,
    DtmfSettings,
    IntentBook,
    PromptCache,
    PromptFile,
    PromptName,
    TwilioSocket,
    load_prompt_cache,
)
from actors.sonic import BotocoreCredentials, SonicConnector, StaticCredentials
from actors.tools import Toolbox, TransferCall
from gateway.debug import DebugSources
from gateway.intents import build_intents
from gateway.registry import CallFactory
from gateway.routes import GREETING_NONE
from gateway.routing import CallRouter
from gateway.server import run_gateway
from gateway.tools import build_toolbox, fallback_transfer, open_tool_client, sonic_tools
from gateway.twilio_rest import TwilioRestClient, TwilioRestSettings, open_twilio_rest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from actors.call.ports import CallControl
    from actors.sonic import ConnectorStatistics, CredentialsProvider, SonicSettings
    from gateway.config import GatewayConfig
    from gateway.emulator import Emulator
    from gateway.routes import CallPlan

__all__ = [
    "CallBuilder",
    "CallStack",
    "FinishedCalls",
    "RoutedDeps",
    "build_call_factory",
    "load_prompts",
    "open_call_control",
    "open_call_stack",
    "open_sonic_connector",
    "serve_command",
]

FINISHED_CALLS_KEPT: Final = 64

_log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def open_sonic_connector(
    config: GatewayConfig, *, emulator: Emulator | None = None
) -> AsyncIterator[SonicConnector]:
    """Open the configured Sonic backend and a connector to it for the block.

    ``emulator``: a running emulator to use instead (the call replays' scripted one); otherwise
    ``backend = "emulator"`` starts the default one for the block. Blocks on entry until the
    emulator (if any) serves and the connector resolved its config and credentials.

    Raises:
        SonicFatalError: credentials or client configuration are unusable.
    """
    async with contextlib.AsyncExitStack() as stack:
        settings: SonicSettings
        credentials: CredentialsProvider
        if emulator is not None or config.backend == "emulator":
            if emulator is None:
                from gateway.emulator import EmulatorSettings, run_emulator

                emulator = await stack.enter_async_context(
                    run_emulator(EmulatorSettings(region=config.sonic.region))
                )
            settings = config.sonic.to_sonic_settings(
                endpoint_uri=emulator.endpoint_uri,
                ca_bundle=emulator.ca_path,
                tools=sonic_tools(config.tools),
                system_prompt=config.system_prompt(),
            )
            credentials = StaticCredentials()
            _log.info("backend.emulator_started", endpoint=emulator.endpoint_uri)
        else:
            settings = config.sonic.to_sonic_settings(
                tools=sonic_tools(config.tools), system_prompt=config.system_prompt()
            )
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
    router: CallRouter | None = None,
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
    transfers a call whose Sonic session failed for good. The ``[[intents]]`` become the calls'
    intent book (:func:`gateway.intents.build_intents`). ``router`` chooses each call's route (the
    app's voice webhook uses the same one); None: the config's routes, without configuration
    webhooks (no HTTP client).

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
        min_barge_in_speech_ms=float(call.min_barge_in_speech_ms),
        on_finished=on_finished,
        dtmf=DtmfSettings(
            interdigit_ms=call.dtmf_interdigit_ms,
            terminator=call.dtmf_terminator,
            max_digits=call.dtmf_max_digits,
        ),
        tools=Toolbox() if tools is None else tools,
        call_control=call_control,
        intents=build_intents(
            config.intents, {name: config.prompts.text(name) for name in PROMPT_NAMES}
        ),
        intent_tools=tools,
        hold_after_ms=float(call.hold_after_ms),
        fallback=fallback,
    )

    if router is None:
        router = CallRouter.from_config(config)
    return CallBuilder(RoutedDeps(deps, prompts, config.system_prompt), router)


@final
class CallBuilder:
    """The call factory :func:`build_call_factory` returns; also the connector's statistics and
    the router.

    ``connector_statistics`` lets ``/metrics`` report the Sonic pool and connections without the
    app holding the connector itself; ``router`` lets the app's voice webhook route through the
    router whose plans this factory reads (:class:`gateway.routing.RoutedFactory`).
    """

    __slots__ = ("_deps", "_router")

    def __init__(self, deps: RoutedDeps, router: CallRouter) -> None:
        self._deps = deps
        self._router = router

    @property
    def router(self) -> CallRouter:
        """Chooses routes (voice webhook) and hands out the plans calls are built from."""
        return self._router

    def __call__(self, socket: TwilioSocket, identity: CallIdentity) -> Call:
        plan = self._router.plan_for(identity)
        _log.info("call.route", route=plan.route, source=plan.source)
        return Call(socket, identity, self._deps.for_plan(plan))

    def connector_statistics(self) -> ConnectorStatistics:
        """The Sonic connector's pool and connection counters now."""
        return self._deps.base.connector.statistics()


@final
class RoutedDeps:
    """The :class:`CallDeps` of each call plan: the top-level deps with the plan's changes.

    Args:
        base: the top-level (default route's) deps; their Sonic settings offer every tool.
        prompts: the prompt cache a plan's greeting names a clip of.
        system_prompt: composes a session's system prompt from a persona and the greeting
            played (:meth:`GatewayConfig.system_prompt`); None: a plan's persona as it is.
    """

    __slots__ = ("_by_route", "_clips", "_system_prompt", "base")

    def __init__(
        self,
        base: CallDeps,
        prompts: PromptCache,
        system_prompt: Callable[..., str] | None = None,
    ) -> None:
        self.base = base
        self._clips: dict[str, bytes] = dict(prompts.clips.items())
        self._system_prompt = system_prompt
        self._by_route: dict[CallPlan, CallDeps] = {}

    def for_plan(self, plan: CallPlan) -> CallDeps:
        """The deps of a call with ``plan``: built once per route, per call with overrides."""
        if plan.source == "webhook":
            return self._build(plan)
        deps = self._by_route.get(plan)
        if deps is None:
            deps = self._by_route[plan] = self._build(plan)
        return deps

    def _build(self, plan: CallPlan) -> CallDeps:
        base = self.base
        if (plan.system_prompt, plan.voice_id, plan.tools, plan.greeting, plan.intents) == (
            None,
        ) * 5:
            return base  # the top-level settings: the connector's own (its warm pool serves them)
        intents = base.intents
        if plan.intents is not None:
            chosen = set(plan.intents)
            intents = IntentBook([rule for rule in base.intents.rules if rule.name in chosen])
        settings = base.sonic_settings
        offered = settings.tools
        toolbox = base.tools
        if plan.tools is not None:
            wanted = set(plan.tools)
            offered = tuple(t for t in settings.tools if t.name in wanted)
            kept = (base.tools.get(name) for name in base.tools.names if name in wanted)
            toolbox = Toolbox(
                [tool for tool in kept if tool is not None], max_in_flight=base.tools.max_in_flight
            )
        greeting = base.greeting_ulaw
        if plan.greeting == GREETING_NONE:
            greeting = b""
        elif plan.greeting is not None:
            greeting = self._clips[plan.greeting]  # a prompt name: checked at load / in the answer
        system_prompt = settings.system_prompt
        if self._system_prompt is not None and (plan.system_prompt, plan.greeting) != (None, None):
            # What the caller heard first (or that nothing was played) goes with the persona.
            system_prompt = self._system_prompt(
                base=plan.system_prompt,
                greeting=None if plan.greeting == GREETING_NONE else plan.greeting or "greeting",
            )
        elif plan.system_prompt is not None:
            system_prompt = plan.system_prompt
        sonic = attrs.evolve(
            settings,
            system_prompt=system_prompt,
            voice_id=settings.voice_id if plan.voice_id is None else plan.voice_id,
            tools=offered,
        )
        return attrs.evolve(
            base, sonic_settings=sonic, tools=toolbox, greeting_ulaw=greeting, intents=intents
        )


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


@final
@attrs.frozen
class CallStack:
    """What serves calls: the factory of call trees and what the debug endpoints and the call
    replays read (finished calls, the connector)."""

    factory: CallFactory
    finished: FinishedCalls
    connector: SonicConnector
    sources: DebugSources


@contextlib.asynccontextmanager
async def open_call_stack(
    config: GatewayConfig, *, emulator: Emulator | None = None
) -> AsyncIterator[CallStack]:
    """Open everything calls need for the block: prompts, the tool client and toolbox, Twilio's
    REST client, the Sonic connector (over ``emulator`` when given, see
    :func:`open_sonic_connector`), the router, and the call factory. ``serve`` and the call
    replays both build their calls here. Blocks on entry until the connector is ready.

    Raises:
        ConfigError: a prompt file is unusable (before anything opens).
        SonicFatalError: credentials or client configuration are unusable.
    """
    finished = FinishedCalls()
    # Before the connector opens: a bad prompt file stops the start with one ConfigError line.
    prompts = load_prompts(config)
    async with (
        open_tool_client() as http,
        open_call_control(config) as control,
        open_sonic_connector(config, emulator=emulator) as connector,
    ):
        tools = build_toolbox(config.tools, http, max_in_flight=config.call.tools_max_in_flight)
        if config.tools:
            _log.info("gateway.tools", names=list(tools.names))
        factory = build_call_factory(
            config,
            connector,
            on_finished=finished.add,
            prompts=prompts,
            tools=tools,
            call_control=control,
            router=CallRouter.from_config(config, http=http),
        )
        yield CallStack(
            factory=factory,
            finished=finished,
            connector=connector,
            sources=DebugSources(
                recent_reports=finished.recent, sonic_statistics=connector.statistics
            ),
        )


async def serve_command(config: GatewayConfig) -> None:
    """Run the whole service until a signal and the drain stop it; returns normally; blocks."""
    async with open_call_stack(config) as calls:
        freeze_startup_heap()
        await run_gateway(config, calls.factory, debug_sources=calls.sources)


def freeze_startup_heap() -> None:
    """Keep what start-up built out of every later garbage collection (``gc.freeze``).

    Why: the modules, the SDK, the prompt cache and the warm connections live as long as the
    process, yet a full collection walks all of them, holding the event loop: under load with
    100 calls one took 120 ms, and every call's audio stopped for that long. Frozen, they are
    never scanned; the calls' own objects are collected as before. The price: a start-up object
    that later becomes an unreachable cycle (a first warm connection, once replaced) is not
    freed, a one-time amount bounded by what start-up built.
    """
    gc.collect()
    gc.freeze()
