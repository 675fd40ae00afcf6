"""``GET /debug/actors`` and ``GET /debug/load``: JSON snapshots for operators, guarded.

Rules: off unless ``debug.enabled`` (404, as if the routes did not exist); with
``debug.bearer_token`` a request needs ``Authorization: Bearer <token>`` (401 otherwise, compared
in constant time). Bodies are encoded by msgspec and carry no PII (call snapshots must keep PII
out of ``statistics()``).

* ``/debug/actors``: ``{"calls": [<each live call's statistics()>], "count": N}``.
* ``/debug/load``: the registry's counters (live calls, refusals by reason, caller audio dropped)
  and the event loop's cumulative lag histogram (:class:`gateway.loop_lag.LagSnapshot`; null when
  the app runs without a monitor). Counts are cumulative since start, so a reader takes two
  snapshots and differences them for a window's figures (the load benchmark does).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, final

import msgspec
from starlette.responses import Response

from gateway.loop_lag import LagSnapshot  # noqa: TC001  (a msgspec field type: needed at run time)
from gateway.registry import RegistryStatistics

if TYPE_CHECKING:
    from starlette.requests import Request

    from gateway.config import DebugConfig
    from gateway.loop_lag import LoopLagMonitor
    from gateway.registry import CallRegistry

__all__ = [
    "ActorsSnapshot",
    "DebugActorsEndpoint",
    "DebugLoadEndpoint",
    "LoadSnapshot",
    "bearer_token_ok",
]


class ActorsSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The body of ``/debug/actors``."""

    calls: list[object]
    count: int


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


def _refusal(config: DebugConfig, request: Request) -> Response | None:
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
    """

    __slots__ = ("_config", "_registry")

    def __init__(self, config: DebugConfig, registry: CallRegistry) -> None:
        self._config = config
        self._registry = registry

    async def handle(self, request: Request) -> Response:
        """Answer one request (no awaits: the snapshot is taken synchronously)."""
        refused = _refusal(self._config, request)
        if refused is not None:
            return refused
        calls = self._registry.snapshots()
        body = _ENCODER.encode(ActorsSnapshot(calls=calls, count=len(calls)))
        return Response(body, media_type="application/json")


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
        refused = _refusal(self._config, request)
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
