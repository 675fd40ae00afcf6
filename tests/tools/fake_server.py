"""A tool endpoint on a real loopback socket: an ASGI app served by uvicorn on 127.0.0.1.

:class:`FakeToolServer` checks what a receiver should (the bearer token, the HMAC signature of the
exact body), records every request, and answers from its script: JSON (``answer``), a status, a
body that is not JSON, or no answer until released (``hang``: the caller's timeout fires first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs
import msgspec

from actors.tools import SIGNATURE_HEADER, verify_signature
from tests.loopback import reply_json, serve_asgi

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from starlette.types import Receive, Scope, Send

__all__ = ["BEARER", "HMAC_KEY", "FakeToolServer", "Seen", "serving"]

BEARER = "tool-bearer-s3cret"
HMAC_KEY = "tool-hmac-key-s3cret"

Mode = Literal["answer", "status", "not_json", "hang"]


@attrs.frozen
class Seen:
    """One request as the server saw it."""

    path: str
    body: bytes
    authorized: bool
    signed: bool
    tool: str | None


@attrs.define
class FakeToolServer:
    """The ASGI app; ``mode`` and ``answer`` say how it replies."""

    mode: Mode = "answer"
    answer: Any = attrs.Factory(lambda: {"balance": "42.17", "currency": "EUR"})
    status: int = 502
    seen: list[Seen] = attrs.Factory(list)
    release: anyio.Event = attrs.Factory(anyio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = Seen(
            path=scope["path"],
            body=body,
            authorized=headers.get("authorization") == f"Bearer {BEARER}",
            signed=verify_signature(HMAC_KEY, body, headers.get(SIGNATURE_HEADER.lower())),
            tool=headers.get("x-sonic-gateway-tool"),
        )
        self.seen.append(seen)
        if not (seen.authorized and seen.signed):
            await reply_json(send, 401, b'{"error": "unauthorized"}')
            return
        match self.mode:
            case "answer":
                await reply_json(send, 200, msgspec.json.encode(self.answer))
            case "status":
                await reply_json(send, self.status, b"upstream down")
            case "not_json":
                await reply_json(send, 200, b"<html>hello</html>")
            case "hang":
                await self.release.wait()
                await reply_json(send, 200, b"{}")


def serving(fake: FakeToolServer) -> AbstractAsyncContextManager[str]:
    """Serve ``fake`` on a free loopback port for the block; yields its base URL."""
    return serve_asgi(fake, before_exit=fake.release.set)
