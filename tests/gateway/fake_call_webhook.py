"""A configuration webhook on a real loopback socket: an ASGI app served by uvicorn on 127.0.0.1.

:class:`FakeCallWebhook` checks what a receiver should (the HMAC signature of the exact body, the
event header), records every request's facts, and answers per CallSid from its script: a JSON
object, a raw body, a status, or nothing until released (the gateway's timeout fires first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import attrs
import msgspec

from actors.tools import SIGNATURE_HEADER, verify_signature
from gateway.call_webhook import EVENT_HEADER
from gateway.replay.loopback import reply_json, serve_asgi

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from starlette.types import Receive, Scope, Send

__all__ = ["SECRET", "FakeCallWebhook", "Hang", "Raw", "Status", "serving"]

SECRET = "call-webhook-s3cret"


@attrs.frozen
class Raw:
    """Answer 200 with this body as is."""

    body: bytes


@attrs.frozen
class Status:
    """Answer with this status."""

    status: int


@attrs.frozen
class Hang:
    """Answer nothing until the server stops."""


@attrs.define
class FakeCallWebhook:
    """The ASGI app; ``answers`` maps a CallSid to its answer (a dict is sent as JSON; none: {})."""

    answers: dict[str, Any] = attrs.Factory(dict)
    seen: list[dict[str, Any]] = attrs.Factory(list)
    refused: int = 0
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
        signed = verify_signature(SECRET, body, headers.get(SIGNATURE_HEADER.lower()))
        if not signed or headers.get(EVENT_HEADER.lower()) != "call.config":
            self.refused += 1
            await reply_json(send, 401, b'{"error": "unauthorized"}')
            return
        facts = msgspec.json.decode(body)
        self.seen.append(facts)
        answer = self.answers.get(facts["call_sid"], {})
        match answer:
            case Raw(body=raw):
                await reply_json(send, 200, raw)
            case Status(status=status):
                await reply_json(send, status, b"down")
            case Hang():
                await self.release.wait()
                await reply_json(send, 200, b"{}")
            case _:
                await reply_json(send, 200, msgspec.json.encode(answer))


def serving(fake: FakeCallWebhook) -> AbstractAsyncContextManager[str]:
    """Serve ``fake`` for the block; yields its base URL. Held answers are released at the end."""
    return serve_asgi(fake, before_exit=fake.release.set)
