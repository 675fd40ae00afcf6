"""The http tool against a real receiver on 127.0.0.1 (uvicorn): bearer, HMAC, answers, timeout."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from actors.tools import HttpTool, HttpToolSpec, error_result
from tests.tools.fake_server import BEARER, HMAC_KEY, FakeToolServer, serving

pytestmark = pytest.mark.anyio


def spec(url: str, **kw: object) -> HttpToolSpec:
    return HttpToolSpec(name="balance", url=url, bearer_token=BEARER, hmac_key=HMAC_KEY, **kw)  # type: ignore[arg-type]


async def test_the_receiver_verifies_bearer_and_signature_and_its_json_comes_back() -> None:
    fake = FakeToolServer()
    async with serving(fake) as base, httpx.AsyncClient() as client:
        result = await HttpTool(spec(base + "/balance"), client).invoke('{"account": "12345678"}')
    assert result.outcome == "ok"
    assert msgspec.json.decode(result.content_json) == {"balance": "42.17", "currency": "EUR"}
    (seen,) = fake.seen
    assert (seen.path, seen.authorized, seen.signed, seen.tool) == (
        "/balance",
        True,
        True,
        "balance",
    )
    assert seen.body == b'{"account": "12345678"}'


async def test_a_wrong_key_is_refused_by_the_receiver() -> None:
    fake = FakeToolServer()
    async with serving(fake) as base, httpx.AsyncClient() as client:
        wrong = HttpToolSpec(name="balance", url=base, bearer_token=BEARER, hmac_key="wrong-key-1")
        result = await HttpTool(wrong, client).invoke("{}")
    assert result == error_result("http_status", status=401)
    assert not fake.seen[0].signed


async def test_status_and_non_json_answers_become_structured_errors() -> None:
    fake = FakeToolServer(mode="status", status=503)
    async with serving(fake) as base, httpx.AsyncClient() as client:
        tool = HttpTool(spec(base), client)
        assert await tool.invoke("{}") == error_result("http_status", status=503)
        fake.mode = "not_json"
        assert (await tool.invoke("{}")).outcome == "bad_response"


async def test_a_receiver_that_does_not_answer_in_time_is_a_timeout() -> None:
    fake = FakeToolServer(mode="hang")
    async with serving(fake) as base, httpx.AsyncClient() as client:
        result = await HttpTool(spec(base, timeout_s=0.3), client).invoke("{}")
    assert result == error_result("timeout")


async def test_a_closed_port_is_a_connect_error_after_the_retries() -> None:
    fake = FakeToolServer()
    async with serving(fake) as base:
        pass  # the port is free again once the server has stopped
    async with httpx.AsyncClient() as client:
        result = await HttpTool(spec(base, max_retries=1), client).invoke("{}")
    assert result == error_result("connect")
