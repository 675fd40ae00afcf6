"""Run replay scenarios: one call through the peer, the in-process stack, the CLI entry points.

Theory of operation.

* :func:`run_scenario` places ONE call against a running gateway with a :class:`TwilioPeer`, then
  asks a :class:`CallObserver` (when given) for the system's record of the call and the live-call
  count, and builds the :class:`ReplayReport`.
* :func:`replay_stack` starts, in-process and on free loopback ports, the Nova Sonic emulator (with
  the scenario's model script and ``[emulator]`` overrides), the local servers the scenario asks
  for (a fake Twilio REST API, a tool receiver: :mod:`gateway.replay.services`) and the gateway
  (defaults + the scenario's ``[gateway]`` overrides + the servers' URLs and credentials, backend =
  that emulator, the calls built as ``serve`` builds them: :func:`gateway.wiring.open_call_stack`). Each
  scenario gets a fresh stack, so counters and records belong to that one call.
* :func:`main_replay` / :func:`main_demo` are what ``sonic-gateway replay`` / ``demo`` call: run
  scenarios sequentially, print each report and a summary, return the exit status.

The ``[gateway]`` table has the shape of the gateway's own config file (``[gateway.sonic]
handover_after_s = 2.0``, ``[gateway.twilio] auth_token = "..."``).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import anyio
import attrs

from gateway.config import VOICE_PATH, GatewayConfig, config_from_mapping
from gateway.emulator import Emulator
from gateway.replay.audio import load_caller_audio, speech_like_ulaw
from gateway.replay.peer import TwilioPeer
from gateway.replay.report import (
    CallRecord,
    IntentTiming,
    TurnSplit,
    build_report,
    format_report,
    format_summary,
)
from gateway.replay.scenario import BargeIn, Say, Scenario, ScenarioError, load_scenario
from gateway.replay.services import ReplayServices, start_services
from gateway.replay.tool_report import ToolCallSeen
from gateway.server import RunningGateway
from gateway.wiring import FinishedCalls

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from actors.call import CallReport as GatewayCallReport
    from gateway.emulator import EmulatedSession
    from gateway.replay.report import ReplayReport

__all__ = [
    "BUNDLED_SCENARIOS",
    "CallObserver",
    "ReplayStack",
    "bundled_scenarios",
    "main_demo",
    "main_replay",
    "replay_stack",
    "run_scenario",
    "step_audio",
]

BUNDLED_SCENARIOS: Final = Path(__file__).resolve().parents[2] / "scripts" / "calls"
DEFAULT_PUBLIC_URL: Final = "https://gateway.replay.test"
RECORD_TIMEOUT_S: Final = 3.0
CALL_END_TIMEOUT_S: Final = 2.0


class CallObserver(Protocol):
    """What the runner may ask the system under test about the call it just drove."""

    def calls_started(self) -> int:
        """Calls the gateway has started since it began serving."""
        ...

    def sessions_opened(self) -> int | None:
        """Sonic sessions opened since start (None: unknown)."""
        ...

    async def wait_no_live_calls(self, timeout_s: float) -> int:
        """Wait (bounded) until the gateway has no live call; return the live count at the end."""
        ...

    async def wait_call_record(self, call_sid: str, timeout_s: float) -> CallRecord | None:
        """Return the system's record of ``call_sid`` once the call has ended (None: none)."""
        ...


def step_audio(scenario: Scenario, step: Say | BargeIn) -> bytes:
    """The μ-law audio of a ``say`` / ``barge_in`` step (file or generated)."""
    if step.audio is not None:
        return load_caller_audio(scenario.resolve(step.audio))
    assert step.ms is not None
    return speech_like_ulaw(step.ms, step.seed)


async def run_scenario(
    scenario: Scenario,
    *,
    gateway_url: str,
    public_url: str,
    auth_token: str | None,
    observer: CallObserver | None = None,
    webhook_url: str | None = None,
    public_webhook_url: str | None = None,
    services: ReplayServices | None = None,
) -> ReplayReport:
    """Drive one call through the gateway at ``gateway_url`` and check the scenario's expectations.

    Blocks for the length of the call plus the record wait (bounded).

    Args:
        scenario: the call.
        gateway_url: the media WebSocket to connect to (``ws://127.0.0.1:PORT/twilio/media``).
        public_url: the public ``wss://`` media URL the gateway validates signatures against.
        auth_token: the gateway's Twilio auth token (the peer signs with it unless the scenario
            says ``[peer] sign_requests = false``); None: unsigned.
        observer: access to the gateway's records and counters; without it, checks needing them
            fail with "no call record" / "live calls unknown".
        webhook_url: the voice webhook the peer POSTs first, as Twilio does (None: skipped).
        public_webhook_url: the public webhook URL the gateway validates signatures against.
        services: the local servers of the call (told about the call; their records reported).
    """
    for step in scenario.caller:  # fail early on missing audio files, before the call starts
        if isinstance(step, Say | BargeIn) and step.audio is not None:
            step_audio(scenario, step)
    started_before = observer.calls_started() if observer is not None else 0
    sessions_before = observer.sessions_opened() if observer is not None else None
    peer = TwilioPeer(
        url=gateway_url,
        public_url=public_url,
        auth_token=auth_token,
        steps=scenario.caller,
        audio_for=functools.partial(step_audio, scenario),
        settings=scenario.peer,
        webhook_url=webhook_url,
        public_webhook_url=public_webhook_url,
        # Called during ``run``, when ``peer`` is bound.
        on_hangup=None
        if services is None
        else lambda: services.caller_hung_up(peer.result.call_sid),
    )
    if services is not None:
        services.call_started(peer.result.call_sid, end_stream=peer.end_stream)
    result = await peer.run()
    record: CallRecord | None = None
    live: int | None = None
    started: int | None = None
    sessions: int | None = None
    if observer is not None:
        live = await observer.wait_no_live_calls(CALL_END_TIMEOUT_S)
        if result.connected:
            record = await observer.wait_call_record(result.call_sid, RECORD_TIMEOUT_S)
        started = observer.calls_started() - started_before
        after = observer.sessions_opened()
        if after is not None and sessions_before is not None:
            sessions = after - sessions_before
    return build_report(
        scenario,
        result,
        record=record,
        live_calls_after=live,
        calls_started=started,
        sessions_opened=sessions,
        services=None if services is None else services.record(),
    )


# ---------------------------------------------------------------------------------- the stack


@final
@attrs.define
class ReplayStack:
    """An emulator and a gateway running in-process for one scenario."""

    scenario: Scenario
    config: GatewayConfig
    emulator: Emulator
    gateway: RunningGateway
    observer: CallObserver
    finished: FinishedCalls
    """The gateway's own reports of the calls it finished (latency split, barge-in stop times)."""
    services: ReplayServices
    """The local servers the scenario asked for (fake Twilio REST API, tool receiver)."""

    @property
    def media_url(self) -> str:
        """Where the peer connects."""
        return self.gateway.ws_url + "/twilio/media"

    @property
    def public_media_url(self) -> str:
        """The URL the gateway validates upgrade signatures against."""
        url = self.config.server.public_media_url()
        return url if url is not None else self.media_url

    async def run(self) -> ReplayReport:
        """Replay the scenario's call against this stack."""
        return await run_scenario(
            self.scenario,
            gateway_url=self.media_url,
            public_url=self.public_media_url,
            auth_token=self.config.twilio.auth_token,
            observer=self.observer,
            webhook_url=self.gateway.base_url + VOICE_PATH,
            public_webhook_url=self.config.server.public_voice_url(),
            services=self.services,
        )


_CLEAN_ENDS: Final = frozenset(
    {"caller_hangup", "stopped", "socket_closed", "tool_end_call", "tool_transfer"}
)


@final
class _StackObserver:
    """Observes the in-process stack: the gateway's registry and call reports, the emulator."""

    def __init__(
        self, gateway: RunningGateway, emulator: Emulator, finished: FinishedCalls
    ) -> None:
        self._gateway = gateway
        self._emulator = emulator
        self._finished = finished

    def _registry_stats(self) -> Any:
        return self._gateway.app.state.gateway.registry.statistics()

    def calls_started(self) -> int:
        return int(self._registry_stats().calls_started)

    def sessions_opened(self) -> int | None:
        return len(self._emulator.sessions)

    async def wait_no_live_calls(self, timeout_s: float) -> int:
        with anyio.move_on_after(timeout_s):
            await self._gateway.app.state.gateway.registry.wait_idle()
        return int(self._registry_stats().live_calls)

    async def wait_call_record(self, call_sid: str, timeout_s: float) -> CallRecord | None:
        # The transcript, handovers and end reason come from the gateway's own report of the call
        # (assistant lines cut to what the caller heard); faults recovered are counted from the
        # emulator, which knows which of its sessions it ended with an injected fault.
        report = None
        with anyio.move_on_after(timeout_s):
            report = await self._finished.wait_report(call_sid)
        if report is None:
            return None
        sessions = self._emulator.sessions
        recovered = sum(1 for session in sessions[:-1] if session.faults)
        return CallRecord(
            call_sid=call_sid,
            transcript=[f"{line.role}: {line.text}" for line in report.transcript],
            handovers=report.handovers,
            recovered_faults=recovered,
            error=None if report.end_reason in _CLEAN_ENDS else report.end_reason,
            sessions=len(sessions),
            source="gateway",
            text_inputs=[text for session in sessions for text in session.text_inputs],
            turn_splits=_turn_splits(sessions, report),
            tool_calls=[
                ToolCallSeen(
                    name=t.name, outcome=t.outcome, latency_ms=t.latency_ms, delivered=t.delivered
                )
                for t in report.tools
            ],
            tool_results=[content for session in sessions for _, content in session.tool_results],
            system_prompts=[session.system_prompt or "" for session in sessions],
            voices=[session.voice_id or "" for session in sessions],
            intents=[
                IntentTiming(
                    intent=i.intent,
                    trigger=i.trigger,
                    caller_to_match_ms=i.caller_to_match_ms,
                    match_to_media_ms=i.match_to_media_ms,
                    caller_to_media_ms=i.caller_to_media_ms,
                )
                for i in report.intents
            ],
        )


def _turn_splits(sessions: Sequence[EmulatedSession], report: GatewayCallReport) -> list[TurnSplit]:
    """The emulator's spoken turns it answered with audio, in order, each with the gateway's time.

    The gateway's turns that followed caller speech (``model_ms`` set) pair with them in order;
    when the counts differ (a turn the gateway did not see as one), the gateway's time is left
    out rather than paired with the wrong turn.
    """
    timings = [
        t
        for session in sessions
        for t in session.turn_timings
        if t.pause_ms is not None and t.first_audio_at is not None
    ]
    gateway = [t.gateway_ms for t in report.turns if t.model_ms is not None]
    paired = len(gateway) == len(timings)
    return [
        TurnSplit(
            pause_ms=None if t.pause_ms is None else round(t.pause_ms, 1),
            first_audio_ms=None if t.first_audio_ms is None else round(t.first_audio_ms, 1),
            gateway_ms=gateway[i] if paired else None,
        )
        for i, t in enumerate(timings)
    ]


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@contextlib.asynccontextmanager
async def replay_stack(scenario: Scenario) -> AsyncIterator[ReplayStack]:
    """Start the emulator and the gateway for ``scenario``, in-process on free loopback ports.

    The gateway's config goes through the same checks as a config file (:func:`config_from_mapping`)
    and its calls are built as ``serve`` builds them (:func:`gateway.wiring.open_call_stack`), over
    the scenario's scripted emulator. Blocks on entry until both listen; on exit stops both
    (bounded by their own shutdown).

    Raises:
        ScenarioError: an ``[emulator]`` or ``[gateway]`` override is not a valid setting (the
            message is the gateway's own config error).
    """
    from actors.errors import ConfigError
    from gateway.emulator import EmulatorSettings, run_emulator
    from gateway.server import serve_gateway
    from gateway.wiring import open_call_stack

    try:
        settings = EmulatorSettings(**{"port": 0, **scenario.emulator})
    except (TypeError, ValueError) as bad:
        raise ScenarioError("$.emulator", 0, f"bad [emulator] override: {bad}") from None
    try:
        async with contextlib.AsyncExitStack() as stack:
            emulator = await stack.enter_async_context(run_emulator(settings, scenario.model))
            services = await stack.enter_async_context(start_services(scenario))
            raw = _merge(
                {
                    "backend": "emulator",
                    "server": {"host": "127.0.0.1", "port": 0, "public_url": DEFAULT_PUBLIC_URL},
                    "logging": {"level": "error"},
                    # No warm pool: every Sonic session the emulator sees belongs to the call.
                    "sonic": {"pool_size": 0},
                },
                scenario.gateway,
            )
            try:
                config = config_from_mapping(services.configure(raw), Path(scenario.base_dir))
            except ConfigError as bad:
                raise ScenarioError("$.gateway", 0, f"bad [gateway] override: {bad}") from None
            services.bind(config)
            calls = await stack.enter_async_context(open_call_stack(config, emulator=emulator))
            async with serve_gateway(config, calls.factory, debug_sources=calls.sources) as gateway:
                yield ReplayStack(
                    scenario=scenario,
                    config=config,
                    emulator=emulator,
                    gateway=gateway,
                    observer=_StackObserver(gateway, emulator, calls.finished),
                    finished=calls.finished,
                    services=services,
                )
    except* ScenarioError as group:
        # Task groups in the emulator and connector wrap what we raise; hand back the error itself.
        raise _first_leaf(group) from None


def _first_leaf(group: BaseExceptionGroup[Exception]) -> Exception:
    first: Exception | BaseExceptionGroup[Exception] = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


# ---------------------------------------------------------------------------------- entry points


def bundled_scenarios() -> list[Path]:
    """The scenario files shipped in ``scripts/calls/``, sorted by name."""
    return sorted(BUNDLED_SCENARIOS.glob("*.toml"))


async def _replay_all(paths: Sequence[Path]) -> int:
    reports: list[ReplayReport] = []
    for path in paths:
        try:
            scenario = load_scenario(path)
        except (ScenarioError, OSError) as bad:
            print(f"error: {bad}", file=sys.stderr)
            return 2
        try:
            async with replay_stack(scenario) as stack:
                report = await stack.run()
        except ScenarioError as bad:
            print(f"error: {bad}", file=sys.stderr)
            return 2
        print(format_report(report), flush=True)
        print(flush=True)
        reports.append(report)
    print(format_summary(reports), flush=True)
    return 0 if all(r.passed for r in reports) else 1


def main_replay(paths: list[str]) -> int:
    """Run scenario files sequentially, print reports and a summary; 0 when all pass.

    Blocks (runs its own event loop). Returns 1 when an expectation failed, 2 on a bad scenario
    file or when the stack cannot start.
    """
    if not paths:
        print("error: no scenario files given", file=sys.stderr)
        return 2
    return anyio.run(_replay_all, [Path(p) for p in paths], backend="asyncio")


def main_demo() -> int:
    """Run every bundled scenario (``scripts/calls/*.toml``); see :func:`main_replay`."""
    paths = bundled_scenarios()
    if not paths:
        print(f"error: no bundled scenarios in {BUNDLED_SCENARIOS}", file=sys.stderr)
        return 2
    return anyio.run(_replay_all, paths, backend="asyncio")
