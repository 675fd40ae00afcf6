"""A tool receiver on 127.0.0.1: what the gateway's ``http`` tools POST to in replays.

Theory of operation. :class:`ToolReceiver` is an ASGI app (served with
:func:`gateway.replay.loopback.serve_asgi`) that answers for the tools it is given, each at
``/tools/<name>``. It checks what a real receiver should (docs/tools.md): the
``X-Sonic-Gateway-Tool`` header names a tool it serves and matches the path, the bearer token when
the tool has one, and the HMAC-SHA256 signature of the exact body when the tool has a key; a
request failing a check is answered 401 (404 for a tool it does not serve). Otherwise it answers
from the tool's scripted replies (:class:`ToolReply`, consumed in order, the last one repeating):
JSON (or a raw body) with a status, after a delay, or never (``hang``: the gateway's timeout fires
first).

Every request is recorded (:class:`ToolRequest`: its input, the checks, when it arrived and when
it was answered, or when the gateway gave up waiting and closed the connection). Requests still
waiting when the server stops are released without an answer, so the server stops at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, final

import anyio
import attrs
import msgspec

from actors.tools import SIGNATURE_HEADER, verify_signature
from gateway.replay.loopback import read_body, reply_json, serve_asgi

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from starlette.types import Receive, Scope, Send

__all__ = ["TOOL_PATH_PREFIX", "ReceiverTool", "ToolReceiver", "ToolReply", "ToolRequest"]

TOOL_PATH_PREFIX: Final = "/tools/"
_TOOL_HEADER: Final = "x-sonic-gateway-tool"


class ToolReply(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One scripted answer of the receiver (a scenario's ``[[tool_replies]]`` entry).

    Attributes:
        tool: the tool it answers for.
        answer: the JSON answered (default ``{}``).
        raw_body: a body sent as is instead of JSON (e.g. to answer something that is not JSON).
        status: the HTTP status.
        delay_ms: how long the receiver takes to answer.
        hang: never answer: the gateway's timeout for the tool fires first.
    """

    tool: str
    answer: Any = None
    raw_body: str | None = None
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] = 200
    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] = 0
    hang: bool = False

    def __post_init__(self) -> None:
        if self.answer is not None and self.raw_body is not None:
            raise ValueError("give at most one of `answer` (JSON) and `raw_body`")

    def body(self) -> bytes:
        """The bytes answered."""
        if self.raw_body is not None:
            return self.raw_body.encode()
        return msgspec.json.encode({} if self.answer is None else self.answer)


class ToolRequest(msgspec.Struct, kw_only=True):
    """One request as the receiver saw it (times are ``anyio.current_time()``).

    Attributes:
        tool: the ``X-Sonic-Gateway-Tool`` header ("" when missing).
        path: the request path.
        body: the exact body.
        input: the body decoded as JSON (None when it is not JSON).
        authorized: the bearer token was right (True when the tool has none).
        signed: the signature verified (True when the tool has no key).
        at: when it arrived.
        status: the status answered (None: not answered).
        answered_at: when the answer went out (None: not answered).
        abandoned_at: when the gateway closed the connection before the answer (its timeout).
    """

    tool: str
    path: str
    body: bytes
    input: Any
    authorized: bool
    signed: bool
    at: float
    status: int | None = None
    answered_at: float | None = None
    abandoned_at: float | None = None


@attrs.define
class ReceiverTool:
    """How the receiver answers for one tool: the secrets it checks, its scripted replies."""

    hmac_key: str | None = attrs.field(default=None, repr=False)
    bearer_token: str | None = attrs.field(default=None, repr=False)
    replies: list[ToolReply] = attrs.Factory(list)


_Wait = Literal["elapsed", "gone", "released"]


@final
@attrs.define
class ToolReceiver:
    """The receiver's ASGI app; see the module docstring.

    Attributes:
        tools: the tools it serves, by name.
        requests: every request received, in order of arrival.
    """

    tools: dict[str, ReceiverTool] = attrs.Factory(dict)
    requests: list[ToolRequest] = attrs.Factory(list)
    _answered: dict[str, int] = attrs.Factory(dict)
    _release: anyio.Event = attrs.Factory(anyio.Event)

    def next_reply(self, tool: str) -> ToolReply:
        """The scripted reply for the tool's next request (the last one repeats; ``{}`` when none)."""
        replies = self.tools[tool].replies
        if not replies:
            return ToolReply(tool=tool)
        index = self._answered.get(tool, 0)
        self._answered[tool] = index + 1
        return replies[min(index, len(replies) - 1)]

    def release(self) -> None:
        """Let every waiting request go without an answer (the server is stopping)."""
        self._release.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        name = headers.get(_TOOL_HEADER, "")
        tool = self.tools.get(name)
        try:
            decoded: Any = msgspec.json.decode(body)
        except msgspec.DecodeError:
            decoded = None
        request = ToolRequest(
            tool=name,
            path=path,
            body=body,
            input=decoded,
            authorized=tool is None
            or tool.bearer_token is None
            or headers.get("authorization") == f"Bearer {tool.bearer_token}",
            signed=tool is None
            or tool.hmac_key is None
            or verify_signature(tool.hmac_key, body, headers.get(SIGNATURE_HEADER.lower())),
            at=anyio.current_time(),
        )
        self.requests.append(request)
        if tool is None or path != TOOL_PATH_PREFIX + name or scope["method"] != "POST":
            request.status = 404
            request.answered_at = anyio.current_time()
            await reply_json(send, 404, b'{"error": "no such tool"}')
            return
        if not (request.authorized and request.signed):
            request.status = 401
            request.answered_at = anyio.current_time()
            await reply_json(send, 401, b'{"error": "unauthorized"}')
            return
        reply = self.next_reply(name)
        match await self._wait(receive, None if reply.hang else reply.delay_ms / 1000.0):
            case "elapsed":
                request.status = reply.status
                request.answered_at = anyio.current_time()
                await reply_json(send, reply.status, reply.body())
            case "gone":
                request.abandoned_at = anyio.current_time()
            case "released":
                pass

    async def _wait(self, receive: Receive, seconds: float | None) -> _Wait:
        """Wait ``seconds`` (None: until released); return early when the client goes away or
        the receiver is released."""
        if seconds == 0.0:
            return "elapsed"
        outcome: _Wait = "elapsed"
        async with anyio.create_task_group() as tg:

            async def client_gone() -> None:
                nonlocal outcome
                while (await receive())["type"] != "http.disconnect":
                    pass
                outcome = "gone"
                tg.cancel_scope.cancel()

            async def released() -> None:
                nonlocal outcome
                await self._release.wait()
                outcome = "released"
                tg.cancel_scope.cancel()

            tg.start_soon(client_gone)
            tg.start_soon(released)
            await anyio.sleep(float("inf") if seconds is None else seconds)
            tg.cancel_scope.cancel()
        return outcome

    def serving(self) -> AbstractAsyncContextManager[str]:
        """Serve the receiver on a free loopback port for the block; yields its base URL."""
        return serve_asgi(self, before_exit=self.release)
