"""Signing, structured errors, the Toolbox and the http tool's error mapping (no network:
``httpx.MockTransport`` stands in for the receiver)."""

from __future__ import annotations

import hashlib
import hmac

import anyio
import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.tools import (
    MAX_RESPONSE_BYTES,
    SIGNATURE_HEADER,
    HttpTool,
    HttpToolSpec,
    Toolbox,
    ToolResult,
    error_result,
    sign_body,
    signature_header_value,
    verify_signature,
)

KEY = "k3y-for-signing"


def test_signature_is_hmac_sha256_hex_of_the_exact_body() -> None:
    body = b'{"account": "1234"}'
    expected = hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    assert sign_body(KEY, body) == expected
    assert signature_header_value(KEY, body) == "sha256=" + expected


@given(st.binary(max_size=256), st.binary(min_size=1, max_size=8))
def test_a_signature_verifies_only_for_its_own_body(body: bytes, extra: bytes) -> None:
    header = signature_header_value(KEY, body)
    assert verify_signature(KEY, body, header)
    assert not verify_signature(KEY, body + extra, header)
    assert not verify_signature("another-key", body, header)
    assert not verify_signature(KEY, body, header.removeprefix("sha256="))
    assert not verify_signature(KEY, body, None)


def test_error_results_are_json_objects_naming_the_error() -> None:
    assert error_result("timeout") == ToolResult(
        outcome="timeout", content_json='{"error":"timeout"}'
    )
    result = error_result("http_status", status=502)
    assert msgspec.json.decode(result.content_json) == {"error": "http_status", "status": 502}


def test_toolbox_refuses_duplicate_names_and_a_zero_bound() -> None:
    spec = HttpToolSpec(name="a", url="http://127.0.0.1:1/")
    client = httpx.AsyncClient()
    tool = HttpTool(spec, client)
    with pytest.raises(ValueError, match="duplicate"):
        Toolbox([tool, HttpTool(spec, client)])
    with pytest.raises(ValueError, match="max_in_flight"):
        Toolbox([tool], max_in_flight=0)
    assert Toolbox([tool]).names == ("a",)


def _tool(handler: httpx.MockTransport, **kw: object) -> HttpTool:
    spec = HttpToolSpec(name="lookup", url="http://tools.test/lookup", **kw)  # type: ignore[arg-type]
    return HttpTool(spec, httpx.AsyncClient(transport=handler))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, json={"ok": True}), {"ok": True}),
        (httpx.Response(502, text="bad gateway"), {"error": "http_status", "status": 502}),
        (httpx.Response(404, json={"x": 1}), {"error": "http_status", "status": 404}),
        (httpx.Response(200, text="<html>"), {"error": "bad_response", "reason": "not_json"}),
        (
            httpx.Response(200, content=b'"' + b"x" * MAX_RESPONSE_BYTES + b'"'),
            {"error": "bad_response", "reason": "too_large"},
        ),
    ],
)
async def test_http_answers_map_to_results(
    response: httpx.Response, expected: dict[str, object]
) -> None:
    tool = _tool(httpx.MockTransport(lambda request: response))
    result = await tool.invoke('{"q": 1}')
    assert msgspec.json.decode(result.content_json) == expected
    assert result.outcome == expected.get("error", "ok")


@pytest.mark.anyio
async def test_the_request_carries_the_input_bearer_and_signature() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={})

    tool = _tool(httpx.MockTransport(handler), bearer_token="bearer-t0ken", hmac_key=KEY)
    await tool.invoke('{"q": "a b"}')
    (request,) = requests
    assert request.method == "POST"
    assert request.content == b'{"q": "a b"}'
    assert request.headers["authorization"] == "Bearer bearer-t0ken"
    assert verify_signature(KEY, request.content, request.headers[SIGNATURE_HEADER])
    assert request.headers["content-type"] == "application/json"


@pytest.mark.anyio
async def test_no_auth_headers_unless_configured() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={})

    await _tool(httpx.MockTransport(handler)).invoke("{}")
    assert "authorization" not in requests[0].headers
    assert SIGNATURE_HEADER not in requests[0].headers


@pytest.mark.anyio
async def test_input_that_is_not_json_is_refused_without_a_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    result = await _tool(httpx.MockTransport(handler)).invoke("not json")
    assert result == error_result("bad_input")


@pytest.mark.anyio
async def test_connection_errors_are_retried_a_bounded_number_of_times() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("refused", request=request)

    result = await _tool(httpx.MockTransport(handler), max_retries=2).invoke("{}")
    assert result == error_result("connect")
    assert attempts == 3


@pytest.mark.anyio
async def test_a_connection_error_then_success_answers() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"n": attempts})

    result = await _tool(httpx.MockTransport(handler)).invoke("{}")
    assert msgspec.json.decode(result.content_json) == {"n": 2}


@pytest.mark.anyio
async def test_read_errors_and_timeouts_are_not_retried() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise httpx.ReadTimeout("slow", request=request)
        raise httpx.RemoteProtocolError("reset", request=request)

    tool = _tool(httpx.MockTransport(handler), max_retries=3)
    assert await tool.invoke("{}") == error_result("timeout")
    result = await tool.invoke("{}")
    assert result.outcome == "transport"
    assert attempts == 2


@pytest.mark.anyio
async def test_the_deadline_bounds_the_whole_call() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError

    tool = _tool(httpx.MockTransport(handler), timeout_s=0.05)
    assert await tool.invoke("{}") == error_result("timeout")
