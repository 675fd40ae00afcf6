"""``GET /metrics``: the collector on its own, and real calls through the in-process stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from actors.call import CallReport, IntentTrigger
from actors.call.report import BargeInSummary, IntentSummary, ToolCallSummary, TurnLatency
from actors.sonic import ConnectorStatistics
from actors.sonic.transport import ConnectionStatistics
from gateway.loop_lag import LoopLagMonitor
from gateway.metrics import GatewayMetrics, mailbox_drops, outcome_of
from gateway.registry import CallRefused, CallRegistry
from gateway.replay import bundled_scenarios, load_scenario, replay_stack

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

pytestmark = pytest.mark.anyio


def parse(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (0.0 when absent)."""
    for family in families.values():
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def report(**overrides: Any) -> CallReport:
    fields: dict[str, Any] = {
        "call_sid": "CA1",
        "stream_sid": "MZ1",
        "duration_ms": 12_000.0,
        "end_reason": "caller_hangup",
        "greeting_ms": 40.0,
        "turns": [
            TurnLatency(
                turn_id=0, end_of_speech=None, model_ms=None, gateway_ms=3.0, total_ms=None
            ),
            TurnLatency(
                turn_id=1, end_of_speech="vad", model_ms=500.0, gateway_ms=5.0, total_ms=505.0
            ),
        ],
        "transcript": [],
        "barge_ins": [
            BargeInSummary(
                source="local_vad", at_ms=3000.0, turn_id=1, stop_ms=20.0, heard_ms=800.0
            )
        ],
        "heard_ms": 2500.0,
        "handovers": 1,
        "sonic_restarts": 0,
        "cleared_ms": 1500.0,
        "sonic_errors": ["modelStreamErrorException"],
    }
    fields.update(overrides)
    return CallReport(**fields)


def connector_stats() -> ConnectorStatistics:
    conn = ConnectionStatistics(
        id=1, open=True, draining=False, streams=3, bound=50, peer_max_streams=100, streams_opened=9
    )
    return ConnectorStatistics(
        level="connect",
        hits=7,
        misses=2,
        pooled=0,
        pre_opened=0,
        recycled=1,
        fill_failures=0,
        open_connections=1,
        draining_connections=0,
        nodelay_sockets=1,
        refused_streams=0,
        pool_full=0,
        connections=(conn,),
    )


# ------------------------------------------------------------------------------- the collector


def test_outcome_is_the_static_prefix_of_the_end_reason() -> None:
    assert outcome_of("caller_hangup") == "caller_hangup"
    assert outcome_of("sonic_fatal:accessDeniedException") == "sonic_fatal"
    assert outcome_of("protocol_error:media.payload") == "protocol_error"
    assert outcome_of("") == "unknown"


def test_report_figures_land_in_counters_and_histograms() -> None:
    metrics = GatewayMetrics(CallRegistry(4))
    metrics.observe_report(report())
    metrics.observe_report(report(end_reason="sonic_fatal:accessDeniedException", turns=[]))
    f = parse(metrics.render().decode())
    assert sample(f, "sonic_gateway_calls_total", outcome="caller_hangup") == 1
    assert sample(f, "sonic_gateway_calls_total", outcome="sonic_fatal") == 1
    assert sample(f, "sonic_gateway_turn_response_seconds_count") == 1
    assert sample(f, "sonic_gateway_turn_response_seconds_sum") == pytest.approx(0.505)
    assert sample(f, "sonic_gateway_turn_model_seconds_count") == 1
    assert sample(f, "sonic_gateway_turn_gateway_seconds_count") == 2
    assert sample(f, "sonic_gateway_greeting_seconds_count") == 2
    assert (
        sample(f, "sonic_gateway_barge_in_stop_seconds_bucket", source="local_vad", le="0.02") == 2
    )
    assert sample(f, "sonic_gateway_assistant_audio_heard_seconds_total") == pytest.approx(5.0)
    assert sample(f, "sonic_gateway_assistant_audio_cleared_seconds_total") == pytest.approx(3.0)
    assert sample(f, "sonic_gateway_sonic_handovers_total") == 2
    assert sample(f, "sonic_gateway_sonic_errors_total", kind="modelStreamErrorException") == 2
    assert f["sonic_gateway_turn_response_seconds"].type == "histogram"


def test_live_state_is_read_at_scrape_time() -> None:
    registry = CallRegistry(2)
    monitor = LoopLagMonitor()
    for lag_ms in (0.2, 0.8, 4.0, 40.0):
        monitor.record(lag_ms)
    metrics = GatewayMetrics(registry, loop_monitor=monitor, connector_statistics=connector_stats)
    with registry.reserve_nowait("CA1"):
        registry.refuse("busy")
        with pytest.raises(CallRefused):
            registry.reserve_nowait("CA1")
        f = parse(metrics.render().decode())
        assert sample(f, "sonic_gateway_live_calls") == 1
        assert sample(f, "sonic_gateway_refusals_total", reason="busy") == 1
        assert sample(f, "sonic_gateway_refusals_total", reason="duplicate") == 1
        assert sample(f, "sonic_gateway_refusals_total", reason="overloaded") == 0
    f = parse(metrics.render().decode())
    assert sample(f, "sonic_gateway_live_calls") == 0
    assert sample(f, "sonic_gateway_calls_started_total") == 1
    assert sample(f, "sonic_gateway_draining") == 0
    assert sample(f, "sonic_gateway_event_loop_lag_seconds_count") == 4
    assert sample(f, "sonic_gateway_event_loop_lag_seconds_bucket", le="0.001") == 2
    assert sample(f, "sonic_gateway_event_loop_lag_seconds_bucket", le="0.05") == 4
    assert sample(f, "sonic_gateway_event_loop_lag_seconds_sum") == pytest.approx(0.045)
    assert sample(f, "sonic_gateway_sonic_streams") == 3
    assert sample(f, "sonic_gateway_sonic_stream_capacity") == 50
    assert sample(f, "sonic_gateway_sonic_sessions_total", pool="hit") == 7
    assert sample(f, "sonic_gateway_sonic_pool_recycled_total") == 1


def test_two_apps_keep_separate_registries() -> None:
    first, second = GatewayMetrics(CallRegistry(1)), GatewayMetrics(CallRegistry(1))
    first.observe_report(report())
    assert (
        sample(parse(first.render().decode()), "sonic_gateway_calls_total", outcome="caller_hangup")
        == 1
    )
    assert (
        sample(
            parse(second.render().decode()), "sonic_gateway_calls_total", outcome="caller_hangup"
        )
        == 0
    )


class _FakeCall:
    """A LiveCall without a report whose mailbox dropped messages."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def run(self) -> None:
        if self.fail:
            raise RuntimeError("boom")

    def statistics(self) -> object:
        from actors.runtime import ActorSnapshot, MailboxStats
        from actors.runtime.mailbox import Overflow

        box = MailboxStats(
            name="sonic.audio",
            capacity=50,
            overflow=Overflow.DROP_OLDEST,
            depth=0,
            sent=10,
            received=7,
            dropped=3,
            closed=True,
        )
        return ActorSnapshot(
            name="a",
            kind="A",
            state="done",
            mailboxes=(box, box),
            messages_in=0,
            messages_out=0,
            restarts=0,
            age_s=1.0,
        )

    def caller_audio_dropped_ms(self) -> float:
        return 60.0


async def test_metered_calls_count_outcome_and_mailbox_drops() -> None:
    registry = CallRegistry(2)
    metrics = GatewayMetrics(registry)
    assert mailbox_drops(_FakeCall(False).statistics()) == {"sonic.audio": 3}
    factory = metrics.meter(lambda socket, identity: _FakeCall(fail=identity == "bad"))  # type: ignore[comparison-overlap]
    await factory(None, "good").run()  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await factory(None, "bad").run()  # type: ignore[arg-type]
    f = parse(metrics.render().decode())
    assert sample(f, "sonic_gateway_calls_total", outcome="ended") == 1
    assert sample(f, "sonic_gateway_calls_total", outcome="failed") == 1
    assert sample(f, "sonic_gateway_mailbox_dropped_messages_total", mailbox="sonic.audio") == 6


# ------------------------------------------------------------------------- the in-process stack


def _scenario(stem: str) -> Any:
    (path,) = [p for p in bundled_scenarios() if p.stem == stem]
    return load_scenario(path)


async def _scrape(base_url: str) -> dict[str, Metric]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def _refused_duplicate(stack: Any, frames: Any) -> int | None:
    """Open a media socket for a CallSid that already holds a slot; its close code."""
    registry = stack.gateway.app.state.gateway.registry
    with registry.reserve_nowait("CA-held"):
        async with websockets.connect(stack.gateway.ws_url + "/twilio/media") as ws:
            await ws.send(frames.connected())
            await ws.send(frames.start("CA-held", "MZ-dup"))
            with anyio.fail_after(10):
                try:
                    while True:
                        await ws.recv()
                except ConnectionClosed:
                    pass
            return ws.close_code


@pytest.mark.slow
async def test_replayed_calls_show_up_in_metrics(frames: Any) -> None:
    async with replay_stack(_scenario("barge_in_mid_answer")) as stack:
        result = await stack.run()
        assert result.passed
        assert await _refused_duplicate(stack, frames) == 1008
        f = await _scrape(stack.gateway.base_url)
    assert (
        sample(f, "sonic_gateway_calls_total", outcome="caller_hangup")
        + sample(f, "sonic_gateway_calls_total", outcome="socket_closed")
        + sample(f, "sonic_gateway_calls_total", outcome="stopped")
        == 1
    )
    assert sample(f, "sonic_gateway_live_calls") == 0
    assert sample(f, "sonic_gateway_refusals_total", reason="duplicate") == 1
    assert sample(f, "sonic_gateway_turn_response_seconds_count") >= 1
    assert sample(f, "sonic_gateway_turn_model_seconds_count") >= 1
    assert sample(f, "sonic_gateway_turn_gateway_seconds_count") >= 2  # greeting + answers
    assert sample(f, "sonic_gateway_greeting_seconds_count") == 1
    stops = sum(
        s.value
        for s in f["sonic_gateway_barge_in_stop_seconds"].samples
        if s.name.endswith("_count")
    )
    assert stops >= 1
    assert sample(f, "sonic_gateway_assistant_audio_cleared_seconds_total") > 0
    assert sample(f, "sonic_gateway_assistant_audio_heard_seconds_total") > 0
    assert sample(f, "sonic_gateway_event_loop_lag_seconds_count") > 0
    assert (
        sample(f, "sonic_gateway_sonic_sessions_total", pool="hit")
        + sample(f, "sonic_gateway_sonic_sessions_total", pool="miss")
        >= 1
    )


@pytest.mark.slow
async def test_a_recovered_sonic_fault_is_counted_by_kind() -> None:
    async with replay_stack(_scenario("sonic_fault_recovered")) as stack:
        result = await stack.run()
        assert result.passed
        f = await _scrape(stack.gateway.base_url)
    assert sample(f, "sonic_gateway_sonic_errors_total", kind="modelStreamErrorException") == 1
    assert sample(f, "sonic_gateway_sonic_handovers_total") >= 1
    assert sample(f, "sonic_gateway_live_calls") == 0


def test_dashboard_is_json_and_names_only_metrics_that_exist() -> None:
    import json
    import re
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
    dashboard = json.loads(path.read_text())
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    names = set(re.findall(r"sonic_gateway_\w+", path.read_text()))
    metrics = GatewayMetrics(
        CallRegistry(1), loop_monitor=LoopLagMonitor(), connector_statistics=connector_stats
    )
    metrics.observe_report(report())
    families = parse(metrics.render().decode())
    exposed = {s.name for f in families.values() for s in f.samples}
    exposed |= {f"{f.name}_total" for f in families.values() if f.type == "counter"}
    assert names
    assert names <= exposed, names - exposed


def test_tool_calls_are_counted_by_tool_and_outcome_with_their_latency() -> None:
    tools = [
        ToolCallSummary(name="balance", outcome="ok", latency_ms=120.0, at_ms=1.0, delivered=True),
        ToolCallSummary(
            name="balance", outcome="timeout", latency_ms=5000.0, at_ms=2.0, delivered=True
        ),
        ToolCallSummary(
            name="made_up", outcome="unknown_tool", latency_ms=0.5, at_ms=3.0, delivered=True
        ),
        ToolCallSummary(
            name="balance", outcome="cancelled", latency_ms=10.0, at_ms=4.0, delivered=False
        ),
    ]
    metrics = GatewayMetrics(CallRegistry(4))
    metrics.observe_report(report(tools=tools))
    f = parse(metrics.render().decode())
    assert sample(f, "sonic_gateway_tool_calls_total", tool="balance", outcome="ok") == 1
    assert sample(f, "sonic_gateway_tool_calls_total", tool="balance", outcome="timeout") == 1
    assert sample(f, "sonic_gateway_tool_calls_total", tool="balance", outcome="cancelled") == 1
    assert sample(f, "sonic_gateway_tool_calls_total", tool="_unknown", outcome="unknown_tool") == 1
    assert sample(f, "sonic_gateway_tool_latency_seconds_count", tool="balance") == 2
    assert sample(f, "sonic_gateway_tool_latency_seconds_sum", tool="balance") == pytest.approx(
        5.12
    )


def test_intents_are_counted_by_intent_and_trigger_with_their_prompts_time() -> None:
    def matched(name: str, trigger: IntentTrigger, media_ms: float | None) -> IntentSummary:
        return IntentSummary(
            intent=name,
            trigger=trigger,
            at_ms=1.0,
            tool="transfer_call",
            outcome="ok",
            caller=None,
            caller_to_match_ms=None,
            match_to_media_ms=media_ms,
            caller_to_media_ms=None,
        )

    metrics = GatewayMetrics(CallRegistry(4))
    metrics.observe_report(
        report(intents=[matched("operator", "dtmf", 2.0), matched("operator", "transcript", None)])
    )
    f = parse(metrics.render().decode())
    assert sample(f, "sonic_gateway_intents_total", intent="operator", trigger="dtmf") == 1
    assert sample(f, "sonic_gateway_intents_total", intent="operator", trigger="transcript") == 1
    assert sample(f, "sonic_gateway_intent_prompt_seconds_count") == 1
    assert sample(f, "sonic_gateway_intent_prompt_seconds_sum") == pytest.approx(0.002)
