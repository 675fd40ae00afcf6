"""A fake of Twilio's Call resource on 127.0.0.1, shared by the REST client and built-in tool tests.

It checks what Twilio would (basic auth, the path, a form body with ``Twiml`` or
``Status=completed``), records every request with the time it arrived (``anyio.current_time()``),
and answers as scripted.
"""

from __future__ import annotations

import base64
import urllib.parse
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs
import msgspec

from tests.loopback import reply_json, serve_asgi

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from starlette.types import Receive, Scope, Send

ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "1" * 32
TOKEN = "auth-token-s3cret-value"
KEY_SID = "SK" + "2" * 32
KEY_SECRET = "api-key-s3cret-value"

Answer = Literal["ok", "not_found", "invalid_state", "error", "drop"]


@attrs.define
class Recorded:
    method: str
    path: str
    username: str
    password: str
    form: dict[str, list[str]]
    at: float = 0.0
    """``anyio.current_time()`` when the request arrived."""


@attrs.define
class FakeTwilioRest:
    """Twilio's Call resource, as far as the client uses it.

    ``script`` is consumed one answer per request; when empty, requests succeed.
    """

    username: str
    password: str
    call: str = CALL
    script: list[Answer] = attrs.Factory(list)
    requests: list[Recorded] = attrs.Factory(list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        username, _, password = (
            base64.b64decode(headers["authorization"].removeprefix("Basic "))
            .decode()
            .partition(":")
        )
        form = urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True)
        self.requests.append(
            Recorded(scope["method"], scope["path"], username, password, form, anyio.current_time())
        )
        if (username, password) != (self.username, self.password):
            return await _json(send, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        assert scope["path"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{self.call}.json"
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        assert set(form) in ({"Twiml"}, {"Status"}), form
        if "Twiml" in form:
            assert ET.fromstring(form["Twiml"][0]).tag == "Response"
        else:
            assert form["Status"] == ["completed"]
        answer = self.script.pop(0) if self.script else "ok"
        match answer:
            case "ok":
                status = "completed" if "Status" in form else "in-progress"
                await _json(send, 200, {"sid": self.call, "status": status})
            case "not_found":
                await _json(send, 404, {"code": 20404, "message": "Not found", "status": 404})
            case "invalid_state":
                await _json(send, 400, {"code": 21220, "message": "Not in progress"})
            case "error":
                await _json(send, 500, {"code": 20500, "message": "Internal Server Error"})
            case "drop":
                # Headers promise a body that never comes; uvicorn closes the connection when the
                # app returns with the response unfinished.
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", b"100")],
                    }
                )


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    await reply_json(send, status, msgspec.json.encode(body))


def serving(fake: FakeTwilioRest) -> AbstractAsyncContextManager[str]:
    """Serve ``fake`` on a free loopback port for the block; yields its base URL."""
    return serve_asgi(fake)
