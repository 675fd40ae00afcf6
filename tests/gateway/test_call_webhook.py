"""The configuration webhook's client against a real loopback receiver: signed facts out; the
overrides, or why not, back."""

from __future__ import annotations

import anyio
import httpx
import pytest

from gateway.call_webhook import CallFacts, WebhookFailure, ask_call_webhook
from gateway.routes import CallOverrides, CallWebhookConfig, RouteConfig, RouteTable
from gateway.tools import open_tool_client
from tests.gateway.fake_call_webhook import SECRET, FakeCallWebhook, Hang, Raw, Status, serving

pytestmark = pytest.mark.anyio

TABLE = RouteTable.build(
    [RouteConfig(name="sales", numbers=("+15550001111",))], tool_names=["lookup"]
)


def facts(call_sid: str) -> CallFacts:
    return CallFacts(
        call_sid=call_sid,
        account_sid="AC1",
        from_="+15559990000",
        to="+15550001111",
        route="sales",
    )


async def ask(url: str, call_sid: str, *, timeout_s: float = 5.0, secret: str = SECRET) -> object:
    webhook = CallWebhookConfig(url=url, secret=secret, timeout_s=timeout_s)
    async with open_tool_client() as client:
        return await ask_call_webhook(client, webhook, facts(call_sid), TABLE)


async def test_an_answer_in_time_is_the_overrides_and_the_request_is_signed() -> None:
    fake = FakeCallWebhook(
        answers={"CA1": {"system_prompt": "You are Vic.", "tools": [], "greeting": "none"}}
    )
    async with serving(fake) as url:
        answer = await ask(url + "/call", "CA1")
    assert answer == CallOverrides(system_prompt="You are Vic.", tools=(), greeting="none")
    assert fake.seen == [
        {
            "call_sid": "CA1",
            "account_sid": "AC1",
            "from": "+15559990000",
            "to": "+15550001111",
            "route": "sales",
        }
    ]


async def test_an_empty_answer_means_no_overrides() -> None:
    fake = FakeCallWebhook(answers={"CA1": Raw(b"")})
    async with serving(fake) as url:
        assert await ask(url, "CA1") == CallOverrides()


async def test_a_late_answer_is_a_timeout_within_the_bound() -> None:
    fake = FakeCallWebhook(answers={"CA1": Hang()})
    async with serving(fake) as url:
        started = anyio.current_time()
        answer = await ask(url, "CA1", timeout_s=0.2)
        took = anyio.current_time() - started
    assert answer == WebhookFailure(reason="timeout")
    assert took < 5.0  # bounded by the timeout, not by the receiver


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        (Raw(b"<html>hello</html>"), "bad_json"),
        (Raw(b'{"systemPrompt": "a typo"}'), "bad_json"),
        ({"tools": ["launch"]}, "unknown_tool"),
        ({"route": "nowhere"}, "unknown_route"),
        (Raw(b"{" + b" " * 70_000 + b"}"), "too_large"),
        (Status(503), "http_status"),
    ],
)
async def test_a_bad_answer_is_a_failure_with_its_reason(answer: object, failure: str) -> None:
    fake = FakeCallWebhook(answers={"CA1": answer})
    async with serving(fake) as url:
        got = await ask(url, "CA1")
    assert isinstance(got, WebhookFailure)
    assert got.reason == failure


async def test_the_wrong_secret_is_refused_by_the_receiver() -> None:
    fake = FakeCallWebhook()
    async with serving(fake) as url:
        got = await ask(url, "CA1", secret="another-secret")
    assert got == WebhookFailure(reason="http_status", status=401)
    assert fake.refused == 1


async def test_nobody_listening_is_a_connect_failure() -> None:
    async with serving(FakeCallWebhook()) as url:
        pass  # the port is free again
    webhook = CallWebhookConfig(url=url, secret=SECRET, timeout_s=5.0)
    async with httpx.AsyncClient() as client:
        got = await ask_call_webhook(client, webhook, facts("CA1"), TABLE)
    assert isinstance(got, WebhookFailure)
    assert got.reason == "connect"
