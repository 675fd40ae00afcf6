"""A small Twilio REST client for call control: redirect a live call to new TwiML, or hang it up.

Theory of operation:

* Sans-I/O core. :func:`update_call_twiml_request` and :func:`complete_call_request` build a
  :class:`RestRequest` (method, path, form body, headers) for Twilio's Call resource,
  ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``, with the form field ``Twiml``
  (replace what the call is doing, e.g. stop the media stream and ``<Dial>`` someone) or
  ``Status=completed`` (hang up). :func:`interpret_response` turns Twilio's answer into a
  :class:`CallUpdated`, a :class:`CallAlreadyEnded`, or a :class:`TwilioApiError`. None of these
  touch the network, so they are tested without one.
* Thin async shell. :class:`TwilioRestClient` sends those requests on one shared
  ``httpx.AsyncClient`` (one per process, made by :func:`open_twilio_rest`: a connection pool, kept
  alive between requests, and a timeout). It retries *connection* errors only, a bounded number of
  times: a request that never reached Twilio (connect refused, connect timeout) is retried for
  both operations; a connection dropped after the request was sent is retried only by
  :meth:`~TwilioRestClient.complete_call`, because hanging up twice is harmless while running
  new TwiML twice could dial the transfer target twice. An HTTP answer, whatever its status, is
  never retried.
* "The call has already ended" is an answer, not a failure: 404 with Twilio error 20404 (no such
  call, or it is gone), or error 21220 ("Invalid call state": the call is no longer in progress).
  Callers get :class:`CallAlreadyEnded` and can carry on with their own clean-up.
* Auth is HTTP basic: the account SID and its auth token, or an API key SID (``SK...``) and its
  secret. The secret is kept out of every ``repr``, exception and log line; exceptions carry the
  HTTP status and Twilio's error code and message.
* The base URL is ``https://api.twilio.com`` (Region US1), or
  ``https://api.<edge>.<region>.twilio.com`` with a Region and edge location (Twilio, "Using the
  Twilio REST API in a non-US Region"; the older ``api.<region>.twilio.com`` form is being retired,
  so a Region needs an edge). API credentials belong to one Region. ``twilio.api_base_url``
  overrides both.

Twilio limits the ``Twiml`` parameter to 4000 characters; longer documents are refused here.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, Literal, final

import anyio
import attrs
import httpx
import msgspec
import structlog

from actors.errors import ConfigError, GatewayError, LocalProtocolError
from gateway.version import VERSION

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from gateway.config import TwilioConfig

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "MAX_TWIML_CHARS",
    "CallAlreadyEnded",
    "CallUpdated",
    "RestRequest",
    "TwilioApiError",
    "TwilioConnectionError",
    "TwilioRestClient",
    "TwilioRestError",
    "TwilioRestResult",
    "TwilioRestSettings",
    "basic_authorization",
    "complete_call_request",
    "interpret_response",
    "open_twilio_rest",
    "rest_base_url",
    "update_call_twiml_request",
]

API_VERSION: Final = "2010-04-01"
DEFAULT_BASE_URL: Final = "https://api.twilio.com"
MAX_TWIML_CHARS: Final = 4000

# Twilio error codes meaning "the call is not there to change any more".
_NOT_FOUND: Final = 20404
_INVALID_CALL_STATE: Final = 21220

_CALL_SID: Final = re.compile(r"CA[0-9a-fA-F]{32}")
_ACCOUNT_SID: Final = re.compile(r"AC[0-9a-fA-F]{32}")

Operation = Literal["update_call_twiml", "complete_call"]

_log = structlog.get_logger(__name__)


# ---------------------------------------------------------------- errors


class TwilioRestError(GatewayError):
    """A Twilio REST request failed.

    Attributes:
        operation: ``"update_call_twiml"`` or ``"complete_call"``.
        call_sid: the call the request was about.
    """

    def __init__(self, message: str, *, operation: Operation, call_sid: str) -> None:
        self.operation = operation
        self.call_sid = call_sid
        super().__init__(f"twilio {operation} {call_sid}: {message}")


class TwilioApiError(TwilioRestError):
    """Twilio answered with an error status (never retried).

    Attributes:
        status: the HTTP status.
        code: Twilio's error code (``20003`` bad credentials...), None when the body had none.
        twilio_message: Twilio's error message, None when the body had none.
    """

    def __init__(
        self,
        *,
        operation: Operation,
        call_sid: str,
        status: int,
        code: int | None,
        twilio_message: str | None,
    ) -> None:
        self.status = status
        self.code = code
        self.twilio_message = twilio_message
        detail = f"HTTP {status}"
        if code is not None:
            detail += f", Twilio error {code}"
        if twilio_message:
            detail += f": {twilio_message}"
        super().__init__(detail, operation=operation, call_sid=call_sid)


class TwilioConnectionError(TwilioRestError):
    """No answer from Twilio: the connection failed (after the allowed retries) or timed out.

    Attributes:
        attempts: how many times the request was tried.
        cause: the transport error's class name (``"ConnectError"``, ``"ReadTimeout"``...).
    """

    def __init__(self, *, operation: Operation, call_sid: str, attempts: int, cause: str) -> None:
        self.attempts = attempts
        self.cause = cause
        super().__init__(
            f"no answer after {attempts} attempt(s) ({cause})",
            operation=operation,
            call_sid=call_sid,
        )


# ---------------------------------------------------------------- sans-I/O core


class RestRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request to Twilio's REST API, without its credentials (see :func:`basic_authorization`).

    Attributes:
        method: the HTTP method.
        path: the URL path below the base URL.
        form: the form fields, in order.
        headers: the headers (``Content-Type``, ``Accept``, ``User-Agent``).
    """

    method: Literal["POST"]
    path: str
    form: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]

    def body(self) -> bytes:
        """The ``application/x-www-form-urlencoded`` body."""
        return urllib.parse.urlencode(self.form).encode("ascii")


class CallUpdated(msgspec.Struct, frozen=True, kw_only=True):
    """Twilio accepted the change.

    Attributes:
        call_sid: the call.
        status: the call's status in Twilio's answer (``"in-progress"``, ``"completed"``...), None
            when the body did not say.
    """

    call_sid: str
    status: str | None


class CallAlreadyEnded(msgspec.Struct, frozen=True, kw_only=True):
    """The call had already ended (or never existed for this account): nothing was changed.

    Attributes:
        call_sid: the call.
        code: Twilio's error code: 20404 (not found) or 21220 (not in progress).
    """

    call_sid: str
    code: int


TwilioRestResult = CallUpdated | CallAlreadyEnded


class _ErrorBody(msgspec.Struct, frozen=True):
    code: int | None = None
    message: str | None = None


class _CallBody(msgspec.Struct, frozen=True):
    status: str | None = None


_error_decoder: Final = msgspec.json.Decoder(_ErrorBody)
_call_decoder: Final = msgspec.json.Decoder(_CallBody)
_HEADERS: Final = (
    ("Content-Type", "application/x-www-form-urlencoded"),
    ("Accept", "application/json"),
    ("User-Agent", f"sonic-gateway/{VERSION}"),
)


def _call_path(account_sid: str, call_sid: str) -> str:
    # Both SIDs go into the path: check their shape so nothing else can be spliced into it.
    if not _matches(_ACCOUNT_SID, account_sid):
        raise LocalProtocolError("account SID: expected AC and 32 hex digits")
    if not _matches(_CALL_SID, call_sid):
        raise LocalProtocolError("call SID: expected CA and 32 hex digits")
    return f"/{API_VERSION}/Accounts/{account_sid}/Calls/{call_sid}.json"


def _matches(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None


def update_call_twiml_request(account_sid: str, call_sid: str, twiml: str | bytes) -> RestRequest:
    """The request that makes a live call run ``twiml`` instead of what it runs now.

    Args:
        account_sid: the account owning the call (``AC...``).
        call_sid: the call (``CA...``).
        twiml: a TwiML document (``bytes`` are decoded as UTF-8), at most 4000 characters.

    Raises:
        LocalProtocolError: a malformed SID, or TwiML over Twilio's limit.
    """
    text = twiml.decode("utf-8") if isinstance(twiml, bytes) else twiml
    if len(text) > MAX_TWIML_CHARS:
        raise LocalProtocolError(f"TwiML: at most {MAX_TWIML_CHARS} characters, got {len(text)}")
    return RestRequest(
        method="POST",
        path=_call_path(account_sid, call_sid),
        form=(("Twiml", text),),
        headers=_HEADERS,
    )


def complete_call_request(account_sid: str, call_sid: str) -> RestRequest:
    """The request that hangs up a call (``Status=completed``).

    Raises:
        LocalProtocolError: a malformed SID.
    """
    return RestRequest(
        method="POST",
        path=_call_path(account_sid, call_sid),
        form=(("Status", "completed"),),
        headers=_HEADERS,
    )


def basic_authorization(username: str, secret: str) -> str:
    """The ``Authorization`` header value for HTTP basic auth (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
    return f"Basic {token}"


def interpret_response(
    status: int, body: bytes, *, operation: Operation, call_sid: str
) -> TwilioRestResult:
    """Classify Twilio's answer to a call update.

    Returns:
        :class:`CallUpdated` for 2xx; :class:`CallAlreadyEnded` for 404 with error 20404, or any
        4xx with error 21220.

    Raises:
        TwilioApiError: any other answer (carrying the status and Twilio's code and message).
    """
    if 200 <= status < 300:
        try:
            call_status = _call_decoder.decode(body).status
        except msgspec.DecodeError:
            call_status = None
        return CallUpdated(call_sid=call_sid, status=call_status)
    try:
        error = _error_decoder.decode(body)
    except msgspec.DecodeError:
        error = _ErrorBody()
    if (status == 404 and error.code == _NOT_FOUND) or (
        400 <= status < 500 and error.code == _INVALID_CALL_STATE
    ):
        return CallAlreadyEnded(call_sid=call_sid, code=error.code)
    raise TwilioApiError(
        operation=operation,
        call_sid=call_sid,
        status=status,
        code=error.code,
        twilio_message=error.message,
    )


def rest_base_url(*, region: str | None, edge: str | None, override: str | None) -> str:
    """The REST API's base URL (no trailing ``/``).

    ``override`` wins; else ``https://api.<edge>.<region>.twilio.com`` (region ``us1`` when only
    an edge is given); else ``https://api.twilio.com``.

    Raises:
        ConfigError: a region without an edge (the ``api.<region>.twilio.com`` form is retired).
    """
    if override is not None:
        return override.rstrip("/")
    if edge is None:
        if region is not None:
            raise ConfigError("twilio.edge", "set when twilio.region is set (e.g. dublin)")
        return DEFAULT_BASE_URL
    return f"https://api.{edge}.{region or 'us1'}.twilio.com"


# ---------------------------------------------------------------- settings


@final
@attrs.frozen
class TwilioRestSettings:
    """What the client needs: where, who, how long.

    Attributes:
        account_sid: the account whose calls are changed (``AC...``).
        username: the basic-auth user: the API key SID, or the account SID.
        secret: the API key secret or the auth token (never shown in ``repr``).
        base_url: see :func:`rest_base_url`.
        timeout_s: httpx's timeout for each of connect, write, read and pool wait.
        connect_retries: retries after a connection error (so at most ``1 + connect_retries``
            attempts).
        retry_backoff_s: wait before the first retry, doubled before each further one.
        max_connections: the connection pool's size.
    """

    account_sid: str
    username: str
    secret: str = attrs.field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = 10.0
    connect_retries: int = 2
    retry_backoff_s: float = 0.2
    max_connections: int = 20

    @classmethod
    def from_config(cls, twilio: TwilioConfig) -> TwilioRestSettings:
        """Settings from the ``[twilio]`` section.

        Raises:
            ConfigError: no ``account_sid``, or neither an API key nor an auth token.
        """
        if twilio.account_sid is None:
            raise ConfigError("twilio.account_sid", "an AC... SID (needed by the REST client)")
        if twilio.api_key_sid is not None and twilio.api_key_secret is not None:
            username, secret = twilio.api_key_sid, twilio.api_key_secret
        elif twilio.auth_token is not None:
            username, secret = twilio.account_sid, twilio.auth_token
        else:
            raise ConfigError(
                "twilio.api_key_sid", "an API key (or twilio.auth_token) for the REST client"
            )
        return cls(
            account_sid=twilio.account_sid,
            username=username,
            secret=secret,
            base_url=rest_base_url(
                region=twilio.region, edge=twilio.edge, override=twilio.api_base_url
            ),
            timeout_s=twilio.rest_timeout_s,
        )


# ---------------------------------------------------------------- async shell

# Transport errors that mean the request never left: safe to retry for any operation.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout)
# The connection broke after (part of) the request may have been sent.
_MAYBE_SENT: Final = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


@final
class TwilioRestClient:
    """Call control over Twilio's REST API on a shared ``httpx.AsyncClient``.

    Build it with :func:`open_twilio_rest` (which owns the ``httpx.AsyncClient``), or pass a client
    you own. Safe to use from many tasks at once.
    """

    def __init__(self, settings: TwilioRestSettings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._authorization = basic_authorization(settings.username, settings.secret)

    def __repr__(self) -> str:
        return f"TwilioRestClient({self._settings!r})"

    async def update_call_twiml(self, call_sid: str, twiml: str | bytes) -> TwilioRestResult:
        """Make the live call ``call_sid`` run ``twiml`` now (e.g. a transfer ``<Dial>``).

        Returns:
            :class:`CallUpdated`, or :class:`CallAlreadyEnded` when the call had ended.

        Raises:
            TwilioApiError: Twilio refused (bad credentials, bad TwiML...).
            TwilioConnectionError: no answer from Twilio.
            LocalProtocolError: a malformed call SID or TwiML over 4000 characters.
        """
        request = update_call_twiml_request(self._settings.account_sid, call_sid, twiml)
        return await self._send(request, "update_call_twiml", call_sid, idempotent=False)

    async def complete_call(self, call_sid: str) -> TwilioRestResult:
        """Hang up the call ``call_sid``.

        Returns:
            :class:`CallUpdated`, or :class:`CallAlreadyEnded` when the call had ended.

        Raises:
            TwilioApiError: Twilio refused.
            TwilioConnectionError: no answer from Twilio.
            LocalProtocolError: a malformed call SID.
        """
        request = complete_call_request(self._settings.account_sid, call_sid)
        return await self._send(request, "complete_call", call_sid, idempotent=True)

    async def _send(
        self, request: RestRequest, operation: Operation, call_sid: str, *, idempotent: bool
    ) -> TwilioRestResult:
        retryable = (*_NOT_SENT, *_MAYBE_SENT) if idempotent else _NOT_SENT
        attempts = 1 + self._settings.connect_retries
        backoff = self._settings.retry_backoff_s
        url = self._settings.base_url + request.path
        headers = [*request.headers, ("Authorization", self._authorization)]
        body = request.body()
        for attempt in range(1, attempts + 1):
            try:
                response = await self._http.request(
                    request.method, url, content=body, headers=headers
                )
            except retryable as exc:
                cause = type(exc).__name__
                if attempt == attempts:
                    raise TwilioConnectionError(
                        operation=operation, call_sid=call_sid, attempts=attempt, cause=cause
                    ) from None
                _log.warning(
                    "twilio_rest.retry",
                    operation=operation,
                    call_sid=call_sid,
                    attempt=attempt,
                    reason=cause,
                )
                await anyio.sleep(backoff)
                backoff *= 2
            except httpx.TransportError as exc:
                # Not retried (a timeout, or a broken connection on a non-idempotent update).
                # ``from None``: httpx's exception text is not ours to vouch for.
                raise TwilioConnectionError(
                    operation=operation,
                    call_sid=call_sid,
                    attempts=attempt,
                    cause=type(exc).__name__,
                ) from None
            else:
                result = interpret_response(
                    response.status_code, response.content, operation=operation, call_sid=call_sid
                )
                if isinstance(result, CallAlreadyEnded):
                    _log.info(
                        "twilio_rest.call_already_ended",
                        operation=operation,
                        call_sid=call_sid,
                        code=result.code,
                    )
                return result
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


@asynccontextmanager
async def open_twilio_rest(
    settings: TwilioRestSettings,
) -> AsyncIterator[TwilioRestClient]:
    """A :class:`TwilioRestClient` on a new pooled ``httpx.AsyncClient``, closed on exit.

    Open one per process (e.g. for the life of ``serve``) and share it between calls.
    """
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
    )
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout_s),
        limits=limits,
        follow_redirects=False,
    ) as http:
        yield TwilioRestClient(settings, http)
