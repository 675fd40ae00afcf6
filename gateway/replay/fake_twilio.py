"""A fake of Twilio's Call resource on 127.0.0.1: what the gateway's REST client talks to in replays.

Theory of operation. :class:`FakeTwilioRest` is an ASGI app (served with
:func:`gateway.replay.loopback.serve_asgi`) around a sans-I/O decision, :meth:`FakeTwilioRest.decide`.
It checks a request the way Twilio does, as far as the gateway uses the API:

* HTTP basic auth with the expected username and secret (else 401, error 20003);
* ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` for the configured account and
  a call it knows (else 404, error 20404: no such resource);
* an ``application/x-www-form-urlencoded`` body with exactly one of ``Twiml`` (a TwiML document
  whose root is ``<Response>``, at most 4000 characters) or ``Status=completed`` (else 400; the
  fake does not model Twilio's code for each malformed case and sends none).

Every request is recorded (:class:`RecordedRestRequest`, with ``anyio.current_time()`` of its arrival and
what was wrong with it, if anything), whatever the answer. A well-formed request for a live call
succeeds (200 with the call's JSON) and ends the call's media stream, as Twilio does when a call
runs new TwiML or hangs up: ``on_stream_end`` is told. A call that was hung up (through the API, or
by the caller: :meth:`FakeTwilioRest.caller_hung_up`), or one it never placed, answers 404 with
error 20404, the way Twilio answers for a call that already ended. ``script`` overrides the answer
to the next well-formed, authorized requests, one entry each, whatever the call's state (``ok``,
``not_found``, ``invalid_state`` (400/21220), ``error`` (500), ``drop``: the connection closes with
the response unfinished).
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, final

import anyio
import attrs
import msgspec

from gateway.replay.loopback import read_body, reply_json, serve_asgi

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from starlette.types import Receive, Scope, Send

__all__ = [
    "MAX_TWIML_CHARS",
    "FakeTwilioRest",
    "RecordedRestRequest",
    "RestAnswer",
    "dial_target",
]

RestAnswer = Literal["ok", "not_found", "invalid_state", "error", "drop"]
MAX_TWIML_CHARS: Final = 4000
_PATH: Final = re.compile(
    r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Calls/(CA[0-9a-fA-F]{32})\.json$"
)
_FORM: Final = "application/x-www-form-urlencoded"


class RecordedRestRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request the fake received, as it saw it.

    Attributes:
        method / path: the request line.
        username: the basic-auth username ("" without basic auth).
        authorized: the credentials were the expected ones.
        form: the decoded form body.
        at: ``anyio.current_time()`` when it arrived.
        call_sid: the call the path names (None: the path is not a Call resource).
        action: ``dial`` (TwiML with a ``<Dial>``), ``twiml`` (other TwiML), ``complete``
            (``Status=completed``), or None (malformed).
        dial: the ``<Dial>``'s number or SIP URI (``dial`` only).
        problem: what was wrong with the request (None: well-formed).
        status / code: the HTTP status answered and Twilio's error code in it (None: no answer
            or no code).
    """

    method: str
    path: str
    username: str
    authorized: bool
    form: dict[str, list[str]]
    at: float
    call_sid: str | None = None
    action: Literal["dial", "twiml", "complete"] | None = None
    dial: str | None = None
    problem: str | None = None
    status: int | None = None
    code: int | None = None

    @property
    def twiml(self) -> str | None:
        """The ``Twiml`` form field, if any."""
        values = self.form.get("Twiml")
        return values[0] if values else None


class _Answer(msgspec.Struct, frozen=True):
    status: int
    body: dict[str, Any] | None  # None: drop the connection mid-response


def dial_target(twiml: str) -> str | None:
    """The number or SIP URI a ``<Response><Dial>`` document dials (None: no ``<Dial>`` target)."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return None
    for noun in ("Dial/Number", "Dial/Sip"):
        found = root.find(noun)
        if found is not None and found.text:
            return found.text.strip()
    return None


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if header is None or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def _error(status: int, code: int | None, message: str) -> _Answer:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if code is not None:
        body["more_info"] = f"https://www.twilio.com/docs/errors/{code}"
    return _Answer(status, body)


@final
@attrs.define
class FakeTwilioRest:
    """Twilio's Call resource for one account; see the module docstring.

    Attributes:
        account_sid: the account in the path.
        username / password: the expected basic-auth credentials (an API key and its secret, or
            the account SID and its auth token).
        live_calls: the calls in progress (a request for any other call is a 404).
        script: answers for the next well-formed requests, consumed one per request.
        requests: every request received, in order.
        on_stream_end: told the CallSid when a request ended that call's media stream.
    """

    account_sid: str
    username: str
    password: str = attrs.field(repr=False)
    live_calls: set[str] = attrs.Factory(set)
    script: list[RestAnswer] = attrs.Factory(list)
    requests: list[RecordedRestRequest] = attrs.Factory(list)
    on_stream_end: Callable[[str], None] | None = None

    def call_started(self, call_sid: str) -> None:
        """A call is in progress (the simulated Twilio placed it)."""
        self.live_calls.add(call_sid)

    def caller_hung_up(self, call_sid: str) -> None:
        """The caller hung up: the call is over; later requests for it get 404/20404."""
        self.live_calls.discard(call_sid)

    def decide(
        self, method: str, path: str, headers: dict[str, str], body: bytes, now: float
    ) -> tuple[RecordedRestRequest, _Answer]:
        """Check and record one request; return the record and the answer (no I/O)."""
        credentials = _basic_auth(headers.get("authorization"))
        username = credentials[0] if credentials is not None else ""
        authorized = credentials == (self.username, self.password)
        try:
            form = urllib.parse.parse_qs(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)
            )
        except (UnicodeDecodeError, ValueError):
            form = {}
        found = _PATH.match(path)
        call_sid = found.group(2) if found is not None else None
        action, dial, problem = self._classify(method, headers, body, form)
        record = RecordedRestRequest(
            method=method,
            path=path,
            username=username,
            authorized=authorized,
            form=form,
            at=now,
            call_sid=call_sid,
            action=action,
            dial=dial,
            problem=problem,
        )
        answer = self._answer(record, found)
        record = msgspec.structs.replace(
            record,
            status=None if answer.body is None else answer.status,
            code=None if answer.body is None else answer.body.get("code"),
        )
        self.requests.append(record)
        return record, answer

    def _classify(
        self, method: str, headers: dict[str, str], body: bytes, form: dict[str, list[str]]
    ) -> tuple[Literal["dial", "twiml", "complete"] | None, str | None, str | None]:
        if method != "POST":
            return None, None, f"method {method}, expected POST"
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != _FORM:
            return None, None, f"Content-Type {content_type or 'missing'}, expected {_FORM}"
        if body and not form:
            return None, None, "the body is not a form"
        if set(form) == {"Status"}:
            if form["Status"] != ["completed"]:
                return None, None, f"Status={form['Status']!r}, expected completed"
            return "complete", None, None
        if set(form) != {"Twiml"} or len(form["Twiml"]) != 1:
            return None, None, f"form fields {sorted(form)}, expected Twiml or Status"
        twiml = form["Twiml"][0]
        if len(twiml) > MAX_TWIML_CHARS:
            return None, None, f"Twiml of {len(twiml)} characters, at most {MAX_TWIML_CHARS}"
        try:
            root = ET.fromstring(twiml)
        except ET.ParseError as bad:
            return None, None, f"Twiml does not parse: {bad}"
        if root.tag != "Response":
            return None, None, f"Twiml root <{root.tag}>, expected <Response>"
        target = dial_target(twiml)
        return ("dial" if target is not None else "twiml"), target, None

    def _answer(self, record: RecordedRestRequest, found: re.Match[str] | None) -> _Answer:
        if not record.authorized:
            return _error(401, 20003, "Authenticate")
        if found is None or found.group(1) != self.account_sid:
            return _error(404, 20404, f"The requested resource {record.path} was not found")
        if record.problem is not None:
            return _error(400, None, record.problem)
        sid = found.group(2)
        scripted = self.script.pop(0) if self.script else None
        not_found = _error(404, 20404, f"The requested resource {record.path} was not found")
        match scripted:
            case "not_found":
                return not_found
            case "invalid_state":
                return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
            case "error":
                return _error(500, 20500, "Internal Server Error")
            case "drop":
                return _Answer(200, None)
            case None if sid not in self.live_calls:
                return not_found  # never placed, or already over
            case "ok" | None:
                pass
        status = "completed" if record.action == "complete" else "in-progress"
        if record.action == "complete":
            self.live_calls.discard(sid)
        if self.on_stream_end is not None:
            self.on_stream_end(sid)
        return _Answer(200, {"sid": sid, "account_sid": self.account_sid, "status": status})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        _, answer = self.decide(scope["method"], scope["path"], headers, body, anyio.current_time())
        if answer.body is None:
            # Headers promise a body that never comes; uvicorn closes the connection when the
            # app returns with the response unfinished.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"100")],
                }
            )
            return
        await reply_json(send, answer.status, msgspec.json.encode(answer.body))

    def serving(self) -> AbstractAsyncContextManager[str]:
        """Serve the fake on a free loopback port for the block; yields its base URL."""
        return serve_asgi(self)
