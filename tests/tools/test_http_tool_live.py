"""The http tool against a real receiver on 127.0.0.1 (uvicorn): bearer, HMAC, answers, timeout."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from actors.tools import HttpTool, HttpToolSpec, error_result
from gateway.replay.fake_tools import ReceiverTool, ToolReceiver, ToolReply

pytestmark = pytest.mark.anyio

BEARER = "tool-bearer-s3cret"
HMAC_KEY = "tool-hmac-key-s3cret"
BALANCE = {"balance": "42.17", "currency": "EUR"}


def receiver(*replies: ToolReply) -> ToolReceiver:
    """The replays' tool receiver, answering ``balance`` (bearer and HMAC checked)."""
    tool = ReceiverTool(hmac_key=HMAC_KEY, bearer_token=BEARER, replies=list(replies))
    return ToolReceiver(tools={"balance": tool})


def spec(base: str, **kw: object) -> HttpToolSpec:
    url = base + "/tools/balance"
    return HttpToolSpec(name="balance", url=url, bearer_token=BEARER, hmac_key=HMAC_KEY, **kw)  # type: ignore[arg-type]


async def test_the_receiver_verifies_bearer_and_signature_and_its_json_comes_back() -> None:
    fake = receiver(ToolReply(tool="balance", answer=BALANCE))
    async with fake.serving() as base, httpx.AsyncClient() as client:
        result = await HttpTool(spec(base), client).invoke('{"account": "12345678"}')
    assert result.outcome == "ok"
    assert msgspec.json.decode(result.content_json) == BALANCE
    (seen,) = fake.requests
    assert (seen.path, seen.authorized, seen.signed, seen.tool, seen.status) == (
        "/tools/balance",
        True,
        True,
        "balance",
        200,
    )
    assert seen.body == b'{"account": "12345678"}'
    assert seen.input == {"account": "12345678"}


async def test_a_wrong_key_is_refused_by_the_receiver() -> None:
    fake = receiver()
    async with fake.serving() as base, httpx.AsyncClient() as client:
        url = base + "/tools/balance"
        wrong = HttpToolSpec(name="balance", url=url, bearer_token=BEARER, hmac_key="wrong-key-1")
        result = await HttpTool(wrong, client).invoke("{}")
    assert result == error_result("http_status", status=401)
    assert not fake.requests[0].signed


async def test_status_and_non_json_answers_become_structured_errors() -> None:
    fake = receiver(
        ToolReply(tool="balance", status=503, raw_body="upstream down"),
        ToolReply(tool="balance", raw_body="<html>hello</html>"),
    )
    async with fake.serving() as base, httpx.AsyncClient() as client:
        tool = HttpTool(spec(base), client)
        assert await tool.invoke("{}") == error_result("http_status", status=503)
        assert (await tool.invoke("{}")).outcome == "bad_response"


async def test_a_receiver_that_does_not_answer_in_time_is_a_timeout() -> None:
    fake = receiver(ToolReply(tool="balance", hang=True))
    async with fake.serving() as base, httpx.AsyncClient() as client:
        result = await HttpTool(spec(base, timeout_s=0.3), client).invoke("{}")
    assert result == error_result("timeout")


async def test_a_closed_port_is_a_connect_error_after_the_retries() -> None:
    fake = receiver()
    async with fake.serving() as base:
        pass  # the port is free again once the server has stopped
    async with httpx.AsyncClient() as client:
        result = await HttpTool(spec(base, max_retries=1), client).invoke("{}")
    assert result == error_result("connect")
