"""The ``http`` tool kind: POST the model's input to a URL, answer with the JSON it returns.

Rules:

* The request body is the tool input exactly as the model sent it (a JSON text; anything else is
  answered ``{"error": "bad_input"}`` without a request), ``Content-Type: application/json``.
  Optional ``Authorization: Bearer <token>``; with an HMAC key, the body's signature in
  ``X-Sonic-Gateway-Signature: sha256=<hex>`` (:mod:`actors.tools.core`). The tool's name is sent
  in ``X-Sonic-Gateway-Tool``.
* One ``httpx.AsyncClient`` per process, passed in (connection reuse across calls); this module
  never opens one.
* ``timeout_s`` bounds the whole call, retries included (anyio's clock): past it the model gets
  ``{"error": "timeout"}``. Only a failure to CONNECT is retried (the request cannot have reached
  the receiver), at most ``max_retries`` times, after a short backoff; a response of any status,
  a read error or a timeout is never retried (the receiver may have acted on it).
* A 2xx answer's body must be JSON and at most :data:`MAX_RESPONSE_BYTES` (read incrementally, so
  a huge body is refused without being held): else ``{"error": "bad_response", "reason": ...}``.
  A non-2xx answer is ``{"error": "http_status", "status": <code>}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

import anyio
import attrs
import httpx
import msgspec

from actors.tools.core import SIGNATURE_HEADER, ToolResult, error_result, signature_header_value

__all__ = ["MAX_RESPONSE_BYTES", "TOOL_HEADER", "HttpTool", "HttpToolSpec"]

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_RESPONSE_BYTES: Final = 16 * 1024
"""Largest response body accepted: a tool result is read by the model, not a document store."""
TOOL_HEADER: Final = "X-Sonic-Gateway-Tool"


@attrs.frozen
class HttpToolSpec:
    """One configured ``http`` tool (already validated by the gateway's config layer).

    Attributes:
        name: the tool's name (as the model calls it).
        url: where the input is POSTed.
        bearer_token: sent as ``Authorization: Bearer``; None for no header.
        hmac_key: signs the body; None for no signature header.
        timeout_s: bound on the whole call, retries included.
        max_retries: extra attempts after a connection failure.
        retry_backoff_s: pause before the first retry (doubles each retry).
    """

    name: str
    url: str
    bearer_token: str | None = attrs.field(default=None, repr=False)
    hmac_key: str | None = attrs.field(default=None, repr=False)
    timeout_s: float = 5.0
    max_retries: int = 1
    retry_backoff_s: float = 0.05


@final
class HttpTool:
    """An ``http`` tool over the process's shared client; see the module docstring."""

    __slots__ = ("_client", "spec")

    def __init__(self, spec: HttpToolSpec, client: httpx.AsyncClient) -> None:
        self.spec = spec
        self._client = client

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        return self.spec.name

    def request_headers(self, body: bytes) -> dict[str, str]:
        """The headers sent with ``body`` (auth and signature as configured)."""
        spec = self.spec
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            TOOL_HEADER: spec.name,
        }
        if spec.bearer_token is not None:
            headers["Authorization"] = f"Bearer {spec.bearer_token}"
        if spec.hmac_key is not None:
            headers[SIGNATURE_HEADER] = signature_header_value(spec.hmac_key, body)
        return headers

    async def invoke(self, input_json: str) -> ToolResult:
        """POST the input; the parsed JSON answer or a structured error. Raises only on cancel."""
        body = input_json.encode()
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError:
            return error_result("bad_input")
        headers = self.request_headers(body)
        with anyio.move_on_after(self.spec.timeout_s):
            return await self._post(body, headers)
        return error_result("timeout")

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> ToolResult:
        spec = self.spec
        retries = 0
        while True:
            try:
                return await self._attempt(body, headers)
            except httpx.ConnectError:
                if retries >= spec.max_retries:
                    return error_result("connect")
            except httpx.TimeoutException:
                return error_result("timeout")
            except httpx.HTTPError as exc:
                return error_result("transport", reason=type(exc).__name__)
            await anyio.sleep(spec.retry_backoff_s * 2**retries)
            retries += 1

    async def _attempt(self, body: bytes, headers: Mapping[str, str]) -> ToolResult:
        spec = self.spec
        async with self._client.stream(
            "POST", spec.url, content=body, headers=headers, timeout=spec.timeout_s
        ) as response:
            if not 200 <= response.status_code < 300:
                return error_result("http_status", status=response.status_code)
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_RESPONSE_BYTES:
                    return error_result("bad_response", reason="too_large")
        try:
            value = msgspec.json.decode(bytes(data))
        except msgspec.DecodeError:
            return error_result("bad_response", reason="not_json")
        return ToolResult(outcome="ok", content_json=msgspec.json.encode(value).decode())
