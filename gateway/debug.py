"""``GET /debug/actors`` and ``GET /debug/load``: JSON snapshots for operators, guarded.

Rules: off unless ``debug.enabled`` (404, as if the routes did not exist); with
``debug.bearer_token`` a request needs ``Authorization: Bearer <token>`` (401 otherwise, compared
in constant time). Bodies are encoded by msgspec. Phone numbers are masked unless
``logging.log_pii`` is on (:func:`actors.call.mask_number`); nothing else in them is PII.

* ``/debug/actors``: ``{"calls": [...], "count": N, "recent": [...], "sonic": {...}}``: each live
  call's :class:`actors.call.CallView` (CallSid, StreamSid, age, floor, masked numbers, the actor
  tree with mailboxes, counters and recent supervisor events), the reports of the last
  :data:`RECENT_REPORTS` finished calls (newest first), and the Sonic connector's statistics
  (warm pool and HTTP/2 connections); ``recent`` is empty and ``sonic`` null when the app was
  built without those sources (:class:`DebugSources`).
* ``/debug/load``: the registry's counters (live calls, refusals by reason, caller audio dropped)
  and the event loop's cumulative lag histogram (:class:`gateway.loop_lag.LagSnapshot`; null when
  the app runs without a monitor). Counts are cumulative since start, so a reader takes two
  snapshots and differences them for a window's figures (the load benchmark does).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, final

import attrs
import msgspec
from starlette.responses import Response

# msgspec field types and attrs annotations: needed at run time.
from actors.call import BargeInSummary, CallReport, TranscriptLine, TurnLatency
from gateway.loop_lag import LagSnapshot  # noqa: TC001
from gateway.registry import RegistryStatistics

if TYPE_CHECKING:
    from starlette.requests import Request

    from gateway.config import DebugConfig
    from gateway.loop_lag import LoopLagMonitor
    from gateway.registry import CallRegistry

__all__ = [
    "RECENT_REPORTS",
    "ActorsSnapshot",
    "DebugActorsEndpoint",
    "DebugLoadEndpoint",
    "DebugSources",
    "FinishedCall",
    "LoadSnapshot",
    "bearer_token_ok",
    "debug_refusal",
    "finished_call",
]


RECENT_REPORTS: Final = 20
"""Finished-call reports shown by ``/debug/actors``."""


class ActorsSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The body of ``/debug/actors``."""

    calls: list[object]
    count: int
    recent: list[FinishedCall]
    """Reports of the latest finished calls, newest first."""
    sonic: object | None
    """The Sonic connector's statistics (pool, connections)."""


class FinishedCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A finished call's report as ``/debug/actors`` shows it: the transcript only with PII on."""

    call_sid: str
    stream_sid: str
    duration_ms: float
    end_reason: str
    greeting_ms: float | None
    turns: list[TurnLatency]
    barge_ins: list[BargeInSummary]
    heard_ms: float
    handovers: int
    sonic_restarts: int
    transcript: list[TranscriptLine] | None
    """None unless ``logging.log_pii`` is on (what callers said is PII)."""


def finished_call(report: CallReport, *, reveal_pii: bool) -> FinishedCall:
    """The operator's view of ``report``."""
    return FinishedCall(
        call_sid=report.call_sid,
        stream_sid=report.stream_sid,
        duration_ms=report.duration_ms,
        end_reason=report.end_reason,
        greeting_ms=report.greeting_ms,
        turns=report.turns,
        barge_ins=report.barge_ins,
        heard_ms=report.heard_ms,
        handovers=report.handovers,
        sonic_restarts=report.sonic_restarts,
        transcript=report.transcript if reveal_pii else None,
    )


@attrs.frozen
class DebugSources:
    """What ``/debug/actors`` shows beyond the live calls; the service wires them.

    Attributes:
        recent_reports: returns the reports of the latest ``n`` finished calls, newest first.
        sonic_statistics: returns the Sonic connector's statistics.
    """

    recent_reports: Callable[[int], Sequence[CallReport]]
    sonic_statistics: Callable[[], object]


class LoadSnapshot(RegistryStatistics, frozen=True, kw_only=True, gc=False):
    """The body of ``/debug/load``: the registry's counters, flat, plus the loop's lag."""

    loop_lag: LagSnapshot | None
    loop_lag_recent_ms: float | None
    """The admission signal now: 90th percentile of the last 2 s of lag samples."""
    overloaded: bool


def bearer_token_ok(authorization: str | None, token: str) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <token>`` (constant-time compare)."""
    if authorization is None:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


_ENCODER = msgspec.json.Encoder()


def debug_refusal(config: DebugConfig, request: Request) -> Response | None:
    """The 404/401 answer when the debug routes are off or the token is wrong, else None."""
    if not config.enabled:
        return Response(b"Not Found", status_code=404, media_type="text/plain")
    token = config.bearer_token
    if token is not None and not bearer_token_ok(request.headers.get("authorization"), token):
        return Response(
            b"Unauthorized",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="sonic-gateway"'},
        )
    return None


@final
class DebugActorsEndpoint:
    """The ``/debug/actors`` handler.

    Args:
        config: the ``[debug]`` section.
        registry: the app's call registry.
        reveal_pii: show phone numbers unmasked (``logging.log_pii``).
        sources: finished-call reports and Sonic statistics, if the service has them.
    """

    __slots__ = ("_config", "_registry", "_reveal_pii", "_sources")

    def __init__(
        self,
        config: DebugConfig,
        registry: CallRegistry,
        *,
        reveal_pii: bool = False,
        sources: DebugSources | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._reveal_pii = reveal_pii
        self._sources = sources

    async def handle(self, request: Request) -> Response:
        """Answer one request (no awaits: the snapshot is taken synchronously)."""
        refused = debug_refusal(self._config, request)
        if refused is not None:
            return refused
        calls = self._registry.views(reveal_pii=self._reveal_pii)
        sources = self._sources
        snapshot = ActorsSnapshot(
            calls=calls,
            count=len(calls),
            recent=[]
            if sources is None
            else [
                finished_call(r, reveal_pii=self._reveal_pii)
                for r in sources.recent_reports(RECENT_REPORTS)
            ],
            sonic=None if sources is None else sources.sonic_statistics(),
        )
        return Response(_ENCODER.encode(snapshot), media_type="application/json")


@final
class DebugLoadEndpoint:
    """The ``/debug/load`` handler.

    Args:
        config: the ``[debug]`` section.
        registry: the app's call registry.
        monitor: the server's loop-lag monitor, if one runs.
    """

    __slots__ = ("_config", "_monitor", "_registry")

    def __init__(
        self, config: DebugConfig, registry: CallRegistry, monitor: LoopLagMonitor | None
    ) -> None:
        self._config = config
        self._registry = registry
        self._monitor = monitor

    async def handle(self, request: Request) -> Response:
        """Answer one request (synchronous snapshot)."""
        refused = debug_refusal(self._config, request)
        if refused is not None:
            return refused
        monitor = self._monitor
        snapshot = LoadSnapshot(
            **msgspec.structs.asdict(self._registry.statistics()),
            loop_lag=None if monitor is None else monitor.histogram.snapshot(),
            loop_lag_recent_ms=None if monitor is None else monitor.recent_ms(),
            overloaded=self._registry.is_overloaded(),
        )
        return Response(_ENCODER.encode(snapshot), media_type="application/json")
