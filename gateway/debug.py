"""``GET /debug/actors``: a JSON snapshot of every live call, guarded.

Rules: off unless ``debug.enabled`` (404, as if the route did not exist); with ``debug.bearer_token``
the request needs ``Authorization: Bearer <token>`` (401 otherwise, compared in constant time).
The body is ``{"calls": [<each live call's statistics()>], "count": N}``, encoded by msgspec; it
carries no PII (call snapshots must keep PII out of ``statistics()``).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, final

import msgspec
from starlette.responses import Response

if TYPE_CHECKING:
    from starlette.requests import Request

    from gateway.config import DebugConfig
    from gateway.registry import CallRegistry

__all__ = ["ActorsSnapshot", "DebugActorsEndpoint", "bearer_token_ok"]


class ActorsSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The body of ``/debug/actors``."""

    calls: list[object]
    count: int


def bearer_token_ok(authorization: str | None, token: str) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <token>`` (constant-time compare)."""
    if authorization is None:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


_ENCODER = msgspec.json.Encoder()


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
        if not self._config.enabled:
            return Response(b"Not Found", status_code=404, media_type="text/plain")
        token = self._config.bearer_token
        if token is not None and not bearer_token_ok(request.headers.get("authorization"), token):
            return Response(
                b"Unauthorized",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="sonic-gateway"'},
            )
        calls = self._registry.snapshots()
        body = _ENCODER.encode(ActorsSnapshot(calls=calls, count=len(calls)))
        return Response(body, media_type="application/json")
