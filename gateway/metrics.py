"""``GET /metrics``: the gateway's figures in the Prometheus text format (``prometheus-client``).

Theory of operation. Nothing here runs per frame. Two sources feed one :class:`CollectorRegistry`
per app (never the process-global default registry, so several apps share a process cleanly):

* **Per call, once, when it ends.** :meth:`GatewayMetrics.meter` wraps the app's call factory; the
  wrapper awaits the call and then reads its :class:`~actors.call.CallReport` (the figures of the
  ``call.summary`` log line): outcome, greeting time, each turn's model / gateway / total response
  time, barge-in stop times, assistant audio heard and cleared, Sonic handovers, restarts and
  errors, tool calls by tool and outcome with their latency, intents matched and how fast their
  prompt went out. These go into ordinary counters and histograms.
* **Live state, at scrape time.** :class:`LiveCollector` reads the call registry (live calls,
  handshakes, refusals by reason, caller audio dropped, drain state), the loop-lag monitor's
  cumulative histogram, the Sonic connector's pool and connection statistics, and the mailbox
  drops of every live call, and builds metric families from them on each scrape. Counters of live
  calls add what ended calls left behind to what live calls hold now; a call's figures move from
  the one to the other synchronously (no await in between), so the sums only ever grow.

Labels are low-cardinality only: an end reason's prefix (``sonic_fatal:accessDeniedException`` is
outcome ``sonic_fatal``), a refusal reason, a Sonic error kind (a closed set, see
:mod:`actors.sonic.classify`), a mailbox name, a barge-in source, a configured tool's name (a name the model made up is
``_unknown``), a configured intent's name. Never a CallSid or a number.
docs/metrics.md lists every metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, final, runtime_checkable

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.responses import Response

from actors.runtime import ActorSnapshot, SupervisorSnapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from starlette.requests import Request

    from actors.call import CallIdentity, CallOutcome, CallReport, TwilioSocket
    from actors.sonic import ConnectorStatistics
    from gateway.loop_lag import LoopLagMonitor
    from gateway.registry import CallFactory, CallRegistry, LiveCall

__all__ = [
    "ConnectorStatisticsSource",
    "GatewayMetrics",
    "LiveCollector",
    "mailbox_drops",
    "outcome_of",
]

PREFIX: Final = "sonic_gateway"

# Bucket upper bounds, seconds. Response time is dominated by the model (hundreds of ms); gateway
# time and barge-in stop are the gateway's own work (a few ms when healthy).
_RESPONSE_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
_GATEWAY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5)
_TOOL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
UNKNOWN_TOOL_LABEL: Final = "_unknown"
"""The ``tool`` label of calls to a name that is not configured (the model chose the name: never a
label value of its own)."""
_BARGE_IN_BUCKETS: Final = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
_GREETING_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
_DURATION_BUCKETS: Final = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)


@runtime_checkable
class ConnectorStatisticsSource(Protocol):
    """A call factory that can also report its Sonic connector (``gateway.wiring.CallBuilder``)."""

    def connector_statistics(self) -> ConnectorStatistics:
        """The connector's pool and connection counters now."""
        ...


@runtime_checkable
class _Reporting(Protocol):
    def report(self) -> CallReport: ...


def outcome_of(end_reason: str) -> str:
    """The ``outcome`` label of an end reason: its static prefix (``"sonic_fatal:x"`` -> ``"sonic_fatal"``)."""
    return end_reason.partition(":")[0] or "unknown"


def mailbox_drops(snapshot: object) -> dict[str, int]:
    """Messages dropped per mailbox name in one call's ``statistics()`` tree (0 entries omitted).

    A mailbox seen by several actors (or by a restarted one) is counted once.
    """
    drops: dict[str, int] = {}
    stack = [snapshot]
    while stack:
        node = stack.pop()
        if isinstance(node, SupervisorSnapshot):
            stack.extend(node.children)
        elif isinstance(node, ActorSnapshot):
            for box in node.mailboxes:
                if box.dropped:
                    drops[box.name] = max(drops.get(box.name, 0), box.dropped)
    return drops


@final
class LiveCollector(Collector):
    """Metric families computed from live state on each scrape (see the module docstring).

    Args:
        registry: the app's call registry.
        ended_drops: mailbox drops of calls that have ended, by mailbox name (owned by
            :class:`GatewayMetrics`, read here).
        loop_monitor: the server's loop-lag monitor, if one runs.
        connector_statistics: the Sonic connector's statistics, if the app knows its connector.
    """

    def __init__(
        self,
        registry: CallRegistry,
        ended_drops: dict[str, int],
        *,
        loop_monitor: LoopLagMonitor | None = None,
        connector_statistics: Callable[[], ConnectorStatistics] | None = None,
    ) -> None:
        self._registry = registry
        self._ended_drops = ended_drops
        self._monitor = loop_monitor
        self._connector_statistics = connector_statistics

    def collect(self) -> Iterable[Metric]:
        """Build the families now (synchronous; called by the exposition code)."""
        yield from self._registry_families()
        yield from self._loop_families()
        yield from self._sonic_families()

    def _registry_families(self) -> Iterator[Metric]:
        registry = self._registry
        stats = msgspec.structs.asdict(registry.statistics())
        yield GaugeMetricFamily(
            f"{PREFIX}_live_calls", "Calls holding a slot now.", value=stats["live_calls"]
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_handshakes",
            "Media sockets accepted and waiting for their start message.",
            value=stats["handshakes"],
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_max_calls", "Most calls admitted at once.", value=stats["max_calls"]
        )
        yield CounterMetricFamily(
            f"{PREFIX}_calls_started",
            "Calls admitted (a slot taken for a CallSid).",
            value=stats["calls_started"],
        )
        refusals = CounterMetricFamily(
            f"{PREFIX}_refusals",
            "Calls refused, by reason (webhook <Reject> and refused media sockets).",
            labels=["reason"],
        )
        for key, value in stats.items():
            if key.startswith("refused_"):
                refusals.add_metric([key.removeprefix("refused_")], value)
        yield refusals
        yield CounterMetricFamily(
            f"{PREFIX}_caller_audio_dropped_seconds",
            "Caller audio dropped before reaching Sonic because a call fell behind.",
            value=stats["caller_audio_dropped_ms"] / 1000.0,
        )
        drops = dict(self._ended_drops)
        for snapshot in registry.snapshots():
            for name, n in mailbox_drops(snapshot).items():
                drops[name] = drops.get(name, 0) + n
        family = CounterMetricFamily(
            f"{PREFIX}_mailbox_dropped_messages",
            "Messages dropped by full drop-oldest/drop-newest mailboxes, by mailbox.",
            labels=["mailbox"],
        )
        for name in sorted(drops):
            family.add_metric([name], drops[name])
        yield family
        # The drain flag is the registry's when it has one (graceful drain); absent means never.
        draining = bool(getattr(registry, "draining", False))
        yield GaugeMetricFamily(
            f"{PREFIX}_draining", "1 while the gateway drains (admits no new call).", value=draining
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_overloaded",
            "1 while new calls are refused because the event loop lags.",
            value=registry.is_overloaded(),
        )

    def _loop_families(self) -> Iterator[Metric]:
        monitor = self._monitor
        if monitor is None:
            return
        snap = monitor.histogram.snapshot()
        buckets: list[tuple[str, float]] = []
        seen = 0
        for bound_ms, n in zip(snap.bounds_ms, snap.counts, strict=False):
            seen += n
            buckets.append((repr(bound_ms / 1000.0), seen))
        buckets.append(("+Inf", snap.count))
        yield HistogramMetricFamily(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every 25 ms).",
            buckets=buckets,
            sum_value=snap.sum_ms / 1000.0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_event_loop_lag_recent_seconds",
            "The admission signal: 90th percentile of the last 2 s of loop-lag samples.",
            value=monitor.recent_ms() / 1000.0,
        )

    def _sonic_families(self) -> Iterator[Metric]:
        source = self._connector_statistics
        if source is None:
            return
        stats = source()
        open_conns = [c for c in stats.connections if c.open]
        yield GaugeMetricFamily(
            f"{PREFIX}_sonic_connections",
            "HTTP/2 connections to Sonic open now (draining ones included).",
            value=stats.open_connections,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_sonic_connections_draining",
            "Open connections to Sonic that take no new stream (GOAWAY received).",
            value=stats.draining_connections,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_sonic_streams",
            "Sonic streams open now, over all connections.",
            value=sum(c.streams for c in open_conns),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_sonic_stream_capacity",
            "Most streams the open, non-draining connections take.",
            value=sum(c.bound for c in open_conns if not c.draining),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_sonic_pooled_streams",
            "Warm Sonic streams waiting in the pool (stream-level pool only).",
            value=stats.pooled,
        )
        requests = CounterMetricFamily(
            f"{PREFIX}_sonic_sessions",
            "Sonic streams handed to conversations (first sessions, handovers, recoveries), "
            "by whether the pool had one ready.",
            labels=["pool"],
        )
        requests.add_metric(["hit"], stats.hits)
        requests.add_metric(["miss"], stats.misses)
        yield requests
        for name, value, doc in (
            ("sonic_pool_recycled", stats.recycled, "Pooled streams closed as stale or unusable."),
            ("sonic_pool_fill_failures", stats.fill_failures, "Failed warm-pool fills."),
            (
                "sonic_refused_streams",
                stats.refused_streams,
                "Streams a connection refused (GOAWAY), retried on another.",
            ),
            (
                "sonic_pool_full",
                stats.pool_full,
                "Opens refused because every allowed connection was full.",
            ),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


@final
class GatewayMetrics:
    """One app's metrics: its own registry, the per-call instruments and the live collector.

    Args:
        registry: the app's call registry.
        loop_monitor: the server's loop-lag monitor, if one runs.
        connector_statistics: the Sonic connector's statistics, if the app knows its connector.
    """

    def __init__(
        self,
        registry: CallRegistry,
        *,
        loop_monitor: LoopLagMonitor | None = None,
        connector_statistics: Callable[[], ConnectorStatistics] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._ended_drops: dict[str, int] = {}
        reg = self.registry
        self.calls = Counter(
            f"{PREFIX}_calls", "Calls ended, by outcome.", ["outcome"], registry=reg
        )
        self.call_duration = Histogram(
            f"{PREFIX}_call_duration_seconds",
            "Call length, start message to end.",
            buckets=_DURATION_BUCKETS,
            registry=reg,
        )
        self.greeting = Histogram(
            f"{PREFIX}_greeting_seconds",
            "Call start to the first greeting audio sent.",
            buckets=_GREETING_BUCKETS,
            registry=reg,
        )
        self.turn_model = Histogram(
            f"{PREFIX}_turn_model_seconds",
            "Caller end of speech to Sonic's first audio of the answer.",
            buckets=_RESPONSE_BUCKETS,
            registry=reg,
        )
        self.turn_gateway = Histogram(
            f"{PREFIX}_turn_gateway_seconds",
            "Sonic's first audio of an answer to its first media message sent to Twilio.",
            buckets=_GATEWAY_BUCKETS,
            registry=reg,
        )
        self.turn_response = Histogram(
            f"{PREFIX}_turn_response_seconds",
            "Caller end of speech to the answer's first media sent (model + gateway).",
            buckets=_RESPONSE_BUCKETS,
            registry=reg,
        )
        self.barge_in_stop = Histogram(
            f"{PREFIX}_barge_in_stop_seconds",
            "Barge-in signal to the clear message sent, by signal source.",
            ["source"],
            buckets=_BARGE_IN_BUCKETS,
            registry=reg,
        )
        self.heard = Counter(
            f"{PREFIX}_assistant_audio_heard_seconds",
            "Assistant audio the callers heard (greetings included).",
            registry=reg,
        )
        self.cleared = Counter(
            f"{PREFIX}_assistant_audio_cleared_seconds",
            "Assistant audio cut off by barge-ins (generated, never heard).",
            registry=reg,
        )
        self.handovers = Counter(
            f"{PREFIX}_sonic_handovers",
            "Sonic session switches within a call (planned, or recovering an error).",
            registry=reg,
        )
        self.restarts = Counter(
            f"{PREFIX}_sonic_restarts",
            "SonicSession actors restarted by their supervisor.",
            registry=reg,
        )
        self.sonic_errors = Counter(
            f"{PREFIX}_sonic_errors",
            "Sonic errors met by calls (recovered, restarted or fatal), by kind.",
            ["kind"],
            registry=reg,
        )
        self.tool_calls = Counter(
            f"{PREFIX}_tool_calls",
            "Tool calls the model made, by tool and outcome (ok or the structured error).",
            ["tool", "outcome"],
            registry=reg,
        )
        self.tool_latency = Histogram(
            f"{PREFIX}_tool_latency_seconds",
            "Tool call asked by the model to result sent back, by tool.",
            ["tool"],
            buckets=_TOOL_BUCKETS,
            registry=reg,
        )
        self.intents = Counter(
            f"{PREFIX}_intents",
            "Intents matched (a keypad entry or the caller's words answered by the gateway).",
            ["intent", "trigger"],
            registry=reg,
        )
        self.intent_prompt = Histogram(
            f"{PREFIX}_intent_prompt_seconds",
            "An intent's match to its cached prompt's first media message sent to Twilio.",
            buckets=_GATEWAY_BUCKETS,
            registry=reg,
        )
        reg.register(
            LiveCollector(
                registry,
                self._ended_drops,
                loop_monitor=loop_monitor,
                connector_statistics=connector_statistics,
            )
        )

    def meter(self, factory: CallFactory) -> CallFactory:
        """``factory`` whose calls are observed here when they end."""

        def build(socket: TwilioSocket, identity: CallIdentity) -> LiveCall:
            return _MeteredCall(factory(socket, identity), self)

        return build

    def observe_report(self, report: CallReport) -> None:
        """Count one ended call's report."""
        self.calls.labels(outcome_of(report.end_reason)).inc()
        self.call_duration.observe(report.duration_ms / 1000.0)
        if report.greeting_ms is not None:
            self.greeting.observe(report.greeting_ms / 1000.0)
        for turn in report.turns:
            if turn.model_ms is not None:
                self.turn_model.observe(turn.model_ms / 1000.0)
            if turn.gateway_ms is not None:
                self.turn_gateway.observe(turn.gateway_ms / 1000.0)
            if turn.total_ms is not None:
                self.turn_response.observe(turn.total_ms / 1000.0)
        for barge_in in report.barge_ins:
            if barge_in.stop_ms is not None:
                self.barge_in_stop.labels(barge_in.source).observe(barge_in.stop_ms / 1000.0)
        self.heard.inc(report.heard_ms / 1000.0)
        self.cleared.inc(report.cleared_ms / 1000.0)
        self.handovers.inc(report.handovers)
        self.restarts.inc(report.sonic_restarts)
        for kind in report.sonic_errors:
            self.sonic_errors.labels(kind).inc()
        for tool in report.tools:
            name = UNKNOWN_TOOL_LABEL if tool.outcome == "unknown_tool" else tool.name
            self.tool_calls.labels(name, tool.outcome).inc()
            if tool.outcome != "cancelled":
                self.tool_latency.labels(name).observe(tool.latency_ms / 1000.0)
        for intent in report.intents:
            self.intents.labels(intent.intent, intent.trigger).inc()
            if intent.match_to_media_ms is not None:
                self.intent_prompt.observe(intent.match_to_media_ms / 1000.0)

    def observe_ended(self, call: LiveCall, *, failed: bool) -> None:
        """Count a call that has just ended (its report when it has one, and its mailbox drops).

        Must run synchronously between the call's end and the release of its registry slot, so
        the live collector never counts its drops twice.
        """
        if isinstance(call, _Reporting):
            self.observe_report(call.report())
        else:
            self.calls.labels("failed" if failed else "ended").inc()
        for name, n in mailbox_drops(call.statistics()).items():
            self._ended_drops[name] = self._ended_drops.get(name, 0) + n

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    async def handle(self, request: Request) -> Response:
        """The ``GET /metrics`` handler (synchronous render)."""
        del request
        return Response(self.render(), media_type=CONTENT_TYPE_LATEST)


@final
class _MeteredCall:
    """A :class:`~gateway.registry.LiveCall` that reports to :class:`GatewayMetrics` when it ends."""

    __slots__ = ("_call", "_metrics")

    def __init__(self, call: LiveCall, metrics: GatewayMetrics) -> None:
        self._call = call
        self._metrics = metrics

    async def run(self) -> CallOutcome | None:
        failed = True
        try:
            outcome = await self._call.run()
            failed = False
        finally:
            self._metrics.observe_ended(self._call, failed=failed)
        return outcome

    def statistics(self) -> object:
        return self._call.statistics()

    def debug_view(self, *, reveal_pii: bool) -> object:
        return self._call.debug_view(reveal_pii=reveal_pii)

    def caller_audio_dropped_ms(self) -> float:
        return self._call.caller_audio_dropped_ms()

    def say_goodbye(self) -> None:
        self._call.say_goodbye()
