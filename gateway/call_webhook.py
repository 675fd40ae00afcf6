"""The per-call configuration webhook's client: POST the call's facts, signed; read the overrides.

Rules:

* The request is ``POST <url>`` with ``Content-Type: application/json`` and the body
  :class:`CallFacts` (``call_sid``, ``account_sid``, ``from``, ``to``, ``route``: the route the
  called number picked), signed like the tools' requests: ``X-Sonic-Gateway-Signature:
  sha256=<hex>``, the HMAC-SHA256 of the exact body under the webhook's ``secret``
  (:func:`actors.tools.signature_header_value`; the receiver checks it with
  :func:`actors.tools.verify_signature`).
* ``timeout_s`` bounds the whole exchange (anyio's clock): the caller is hearing the ring tone
  meanwhile, and Twilio waits for the gateway's TwiML. Nothing is retried.
* A 2xx answer is a JSON object of overrides (:class:`gateway.routes.CallOverrides`; at most
  :data:`gateway.routes.MAX_OVERRIDES_BYTES`, read incrementally); an empty body or 204 means
  "no overrides". Anything else is a :class:`WebhookFailure` with a static ``reason``:
  ``timeout``, ``connect``, ``transport``, ``http_status``, ``too_large``, ``bad_json``,
  ``unknown_route``, ``unknown_tool``, ``unknown_greeting``. The caller of this module logs it and
  applies the route.
* One ``httpx.AsyncClient`` per process, passed in (the tools' client, :func:`gateway.tools.open_tool_client`);
  redirects are not followed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio
import httpx
import msgspec

from actors.errors import RemoteProtocolError
from actors.tools import SIGNATURE_HEADER, signature_header_value
from gateway.routes import MAX_OVERRIDES_BYTES, CallOverrides, parse_overrides

if TYPE_CHECKING:
    from gateway.routes import CallWebhookConfig, RouteTable

__all__ = ["EVENT_HEADER", "CallFacts", "WebhookFailure", "ask_call_webhook"]

EVENT_HEADER: Final = "X-Sonic-Gateway-Event"
"""Names what the request is for (``call.config``), so one receiver can serve several hooks."""
_EVENT: Final = "call.config"


class CallFacts(msgspec.Struct, frozen=True, kw_only=True):
    """The request body: what the gateway knows of the call when Twilio's webhook arrives.

    ``from`` and ``to`` are PII (the caller's number, the number called): never logged in clear.
    """

    call_sid: str
    account_sid: str
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    route: str


class WebhookFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a configuration webhook's answer was not used (the route applies instead)."""

    reason: str
    status: int | None = None
    detail: str = ""


_ENCODER: Final = msgspec.json.Encoder()


async def ask_call_webhook(
    client: httpx.AsyncClient, webhook: CallWebhookConfig, facts: CallFacts, table: RouteTable
) -> CallOverrides | WebhookFailure:
    """POST ``facts`` to ``webhook`` and return its checked overrides, or why not.

    Blocks (asynchronously) at most ``webhook.timeout_s``; raises only on cancellation.
    """
    assert webhook.url is not None  # checked at load: an enabled webhook has both
    assert webhook.secret is not None
    body = _ENCODER.encode(facts)
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        EVENT_HEADER: _EVENT,
        SIGNATURE_HEADER: signature_header_value(webhook.secret, body),
    }
    with anyio.move_on_after(webhook.timeout_s):
        try:
            answer = await _post(client, webhook, body, headers)
        except httpx.ConnectError as exc:
            return WebhookFailure(reason="connect", detail=type(exc).__name__)
        except httpx.TimeoutException:
            return WebhookFailure(reason="timeout")
        except httpx.HTTPError as exc:
            return WebhookFailure(reason="transport", detail=type(exc).__name__)
        if isinstance(answer, WebhookFailure):
            return answer
        try:
            return parse_overrides(answer, table)
        except RemoteProtocolError as exc:
            return WebhookFailure(reason=exc.kind, detail=str(exc)[:200])
    return WebhookFailure(reason="timeout")


async def _post(
    client: httpx.AsyncClient, webhook: CallWebhookConfig, body: bytes, headers: dict[str, str]
) -> bytes | WebhookFailure:
    assert webhook.url is not None
    async with client.stream(
        "POST", webhook.url, content=body, headers=headers, timeout=webhook.timeout_s
    ) as response:
        if not 200 <= response.status_code < 300:
            return WebhookFailure(reason="http_status", status=response.status_code)
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > MAX_OVERRIDES_BYTES:
                return WebhookFailure(reason="too_large")
    return bytes(data)
