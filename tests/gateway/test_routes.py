"""The route choice, sans-I/O: the table, the webhook's answer, the kept plans, each call's deps."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.call import CallDeps, CallIdentity, IntentBook, IntentRule, PromptCache
from actors.errors import RemoteProtocolError
from actors.sonic import SonicSettings, SonicTool
from actors.tools import Toolbox, ToolResult
from gateway.routes import (
    DEFAULT_ROUTE,
    MAX_OVERRIDES_BYTES,
    CallOverrides,
    CallPlan,
    CallWebhookConfig,
    RouteConfig,
    RouteTable,
    parse_overrides,
)
from gateway.routing import CallRouter
from gateway.stream_token import StreamTokens
from gateway.wiring import RoutedDeps

SALES = RouteConfig(
    name="sales",
    numbers=("+15550001111", "+15550002222"),
    system_prompt="You are Sam, from sales.",
    voice_id="tiffany",
    tools=("lookup",),
    greeting="none",
)
SUPPORT = RouteConfig(
    name="support",
    numbers=("+15550003333",),
    greeting="hold",
    webhook=CallWebhookConfig(url="https://c.example/support", secret="support-secret"),
)
TABLE = RouteTable.build([SALES, SUPPORT], tool_names=["lookup", "refund"])


def test_the_called_number_picks_the_route_and_others_get_the_default() -> None:
    assert TABLE.choose("+15550001111") == "sales"
    assert TABLE.choose("+15550002222") == "sales"
    assert TABLE.choose("+15550003333") == "support"
    assert TABLE.choose("+15559999999") == DEFAULT_ROUTE
    assert TABLE.choose("sip:+15550001111@example.com") == DEFAULT_ROUTE  # exact E.164 only
    assert TABLE.choose(None) == DEFAULT_ROUTE


def test_a_route_plan_carries_its_settings_and_the_default_carries_none() -> None:
    assert TABLE.plan("sales") == CallPlan(
        route="sales",
        system_prompt="You are Sam, from sales.",
        voice_id="tiffany",
        tools=("lookup",),
        greeting="none",
    )
    assert TABLE.plan(DEFAULT_ROUTE) == CallPlan(route=DEFAULT_ROUTE)
    assert TABLE.plan("gone") == CallPlan(route=DEFAULT_ROUTE)  # a route this config lacks


def test_overrides_go_on_top_of_the_route_they_name() -> None:
    plan = TABLE.plan(
        "support", CallOverrides(route="sales", system_prompt="VIP caller.", tools=())
    )
    assert plan == CallPlan(
        route="sales",
        system_prompt="VIP caller.",
        voice_id="tiffany",
        tools=(),
        greeting="none",
        source="webhook",
    )
    assert TABLE.plan("sales", CallOverrides()) == CallPlan(
        route="sales",
        system_prompt="You are Sam, from sales.",
        voice_id="tiffany",
        tools=("lookup",),
        greeting="none",
        source="webhook",
    )


def test_the_webhook_asked_is_the_routes_own_else_the_top_level_one() -> None:
    top = CallWebhookConfig(url="https://c.example/all", secret="top-secret-key")
    table = RouteTable.build([SALES, SUPPORT], webhook=top)
    assert table.webhook("support") == SUPPORT.webhook
    assert table.webhook("sales") == top
    assert table.webhook(DEFAULT_ROUTE) == top
    assert TABLE.webhook("sales") is None


def test_a_good_answer_is_parsed() -> None:
    body = (
        b'{"route": "support", "system_prompt": "Hi.", "voice_id": "amy",'
        b' "greeting": "none", "tools": ["refund"]}'
    )
    assert parse_overrides(body, TABLE) == CallOverrides(
        route="support", system_prompt="Hi.", voice_id="amy", greeting="none", tools=("refund",)
    )
    assert parse_overrides(b"", TABLE) == CallOverrides()
    assert parse_overrides(b"{}", TABLE) == CallOverrides()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"not json", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'{"systemPrompt": "typo"}', "bad_json"),
        (b'{"voice_id": "not a voice"}', "bad_json"),
        (b'{"system_prompt": ""}', "bad_json"),
        (b'{"tools": "lookup"}', "bad_json"),
        (b'{"route": "nowhere"}', "unknown_route"),
        (b'{"tools": ["lookup", "launch_missiles"]}', "unknown_tool"),
        (b'{"greeting": "welcome"}', "unknown_greeting"),
        (b" " * (MAX_OVERRIDES_BYTES + 1), "too_large"),
    ],
)
def test_a_bad_answer_is_refused_with_a_reason(body: bytes, kind: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_overrides(body, TABLE)
    assert caught.value.kind == kind


@given(st.binary(max_size=256) | st.text(max_size=256).map(str.encode))
def test_any_body_is_an_answer_or_a_refusal(body: bytes) -> None:
    outcome: object
    try:
        outcome = parse_overrides(body, TABLE)
    except RemoteProtocolError as refused:
        outcome = refused.kind
    assert isinstance(outcome, CallOverrides) or outcome in {
        "bad_json",
        "unknown_route",
        "unknown_tool",
        "unknown_greeting",
    }


# ---------------------------------------------------------------- the router's kept plans


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def identity(call_sid: str, **custom: str) -> CallIdentity:
    return CallIdentity(
        call_sid=call_sid,
        stream_sid="MZ" + call_sid[2:],
        account_sid="AC1",
        custom_parameters=custom,
    )


@pytest.mark.anyio
async def test_a_route_without_a_webhook_is_chosen_and_nothing_is_kept() -> None:
    router = CallRouter(TABLE)
    assert await router.route_call({"CallSid": "CA1", "To": "+15550001111"}) == "sales"
    assert await router.route_call({"CallSid": "CA2", "To": "+15551234567"}) == DEFAULT_ROUTE
    assert router.kept == 0
    assert router.plan_for(identity("CA1", route="sales")) == TABLE.plan("sales")
    assert router.plan_for(identity("CA2")) == TABLE.plan(DEFAULT_ROUTE)
    # A route this process does not know (another config): the default route.
    assert router.plan_for(identity("CA3", route="gone")) == TABLE.plan(DEFAULT_ROUTE)


@pytest.mark.anyio
async def test_without_an_http_client_the_webhook_route_is_kept_as_is() -> None:
    router = CallRouter(TABLE)
    assert await router.route_call({"CallSid": "CA1", "To": "+15550003333"}) == "support"
    assert router.kept == 1
    assert router.plan_for(identity("CA1", route="support")) == TABLE.plan("support")
    assert router.kept == 0


def test_kept_plans_are_taken_once_and_forgotten_after_their_time() -> None:
    clock = Clock()
    router = CallRouter(TABLE, keep_s=10.0, max_plans=2, clock=clock)
    webhook_plan = TABLE.plan("support", CallOverrides(system_prompt="From the webhook."))
    router._keep("CA1", webhook_plan)  # what route_call keeps after the webhook answered
    assert router.plan_for(identity("CA1", route="support")) == webhook_plan
    # Taken once: a second socket for the same call gets the route alone.
    assert router.plan_for(identity("CA1", route="support")) == TABLE.plan("support")
    router._keep("CA2", webhook_plan)
    clock.now += 10.0
    assert router.plan_for(identity("CA2", route="support")) == TABLE.plan("support")
    # At most max_plans: the oldest goes first.
    for sid in ("CA3", "CA4", "CA5"):
        router._keep(sid, webhook_plan)
    assert router.kept == 2
    assert router.plan_for(identity("CA3", route="support")).source == "route"
    assert router.plan_for(identity("CA5", route="support")).source == "webhook"


# ---------------------------------------------------------------- the stream token binds it


def test_the_stream_token_binds_the_route() -> None:
    tokens = StreamTokens(b"k" * 32, ttl_s=60.0, clock=lambda: 1000.0)
    sales = tokens.mint("CA1", "AC1", "sales")
    assert tokens.verify(sales, "CA1", "AC1", "support") == "bad_stream_token"
    assert tokens.verify(sales, "CA1", "AC1") == "bad_stream_token"
    assert tokens.verify(sales, "CA1", "AC1", "sales") is None
    default = tokens.mint("CA2", "AC1")
    assert tokens.verify(default, "CA2", "AC1", "sales") == "bad_stream_token"
    assert tokens.verify(default, "CA2", "AC1") is None


# ---------------------------------------------------------------- each call's deps


class NamedTool:
    def __init__(self, name: str) -> None:
        self.name = name

    async def invoke(self, input_json: str) -> ToolResult:
        raise NotImplementedError


def spec(name: str) -> SonicTool:
    return SonicTool(name=name, description=name, input_schema_json='{"type": "object"}')


@pytest.fixture
def routed() -> RoutedDeps:
    base = CallDeps(
        connector=cast("Any", None),  # never used: only the deps are compared
        sonic_settings=SonicSettings(tools=(spec("lookup"), spec("refund"))),
        tools=Toolbox([NamedTool("lookup"), NamedTool("refund")], max_in_flight=3),
        greeting_ulaw=b"\x01" * 80,
    )
    return RoutedDeps(base, PromptCache.bundled())


def test_the_default_plan_is_the_top_level_deps_themselves(routed: RoutedDeps) -> None:
    assert routed.for_plan(TABLE.plan(DEFAULT_ROUTE)) is routed.base


def test_a_route_changes_prompt_voice_tools_and_greeting(routed: RoutedDeps) -> None:
    deps = routed.for_plan(TABLE.plan("sales"))
    assert deps.sonic_settings.system_prompt == "You are Sam, from sales."
    assert deps.sonic_settings.voice_id == "tiffany"
    assert [t.name for t in deps.sonic_settings.tools] == ["lookup"]
    assert deps.tools.names == ("lookup",)
    assert deps.tools.max_in_flight == 3
    assert deps.greeting_ulaw == b""  # greeting = "none"
    # The rest is the top level's.
    assert deps.sonic_settings.model_id == routed.base.sonic_settings.model_id
    assert deps.playback_chunk_ms == routed.base.playback_chunk_ms
    # Built once per route.
    assert routed.for_plan(TABLE.plan("sales")) is deps


def test_a_named_greeting_plays_that_prompt(routed: RoutedDeps) -> None:
    deps = routed.for_plan(TABLE.plan("support"))
    assert deps.greeting_ulaw == PromptCache.bundled().get("hold")
    assert deps.sonic_settings.system_prompt == routed.base.sonic_settings.system_prompt
    assert deps.tools.names == ("lookup", "refund")


def test_webhook_plans_are_built_per_call(routed: RoutedDeps) -> None:
    plan = TABLE.plan(DEFAULT_ROUTE, CallOverrides(tools=("refund", "lookup"), voice_id="amy"))
    deps = routed.for_plan(plan)
    assert deps.sonic_settings.voice_id == "amy"
    # The configuration's order, whatever order the webhook named them in.
    assert [t.name for t in deps.sonic_settings.tools] == ["lookup", "refund"]
    assert routed.for_plan(plan) is not deps


def test_a_route_may_keep_only_some_intents() -> None:
    def rule(name: str, digits: str) -> IntentRule:
        return IntentRule(
            name=name,
            prompt="transferring",
            prompt_text="Transferring your call now.",
            tool="transfer_call",
            input_json="{}",
            digits=digits,
        )

    base = CallDeps(
        connector=cast("Any", None),
        sonic_settings=SonicSettings(),
        intents=IntentBook([rule("operator", "0"), rule("sales", "1")]),
    )
    routed = RoutedDeps(base, PromptCache.bundled())
    only_sales = RouteConfig(name="shop", numbers=("+15550004444",), intents=("sales",))
    none = RouteConfig(name="quiet", numbers=("+15550005555",), intents=())
    table = RouteTable.build([only_sales, none], intent_names=["operator", "sales"])
    assert [r.name for r in routed.for_plan(table.plan("shop")).intents.rules] == ["sales"]
    assert routed.for_plan(table.plan("quiet")).intents.rules == ()
    assert routed.for_plan(table.plan(DEFAULT_ROUTE)) is base  # every intent
    # A webhook may narrow them too, naming configured intents only.
    answer = parse_overrides(b'{"intents": ["operator"]}', table)
    plan = table.plan("shop", answer)
    assert [r.name for r in routed.for_plan(plan).intents.rules] == ["operator"]
    with pytest.raises(RemoteProtocolError) as refused:
        parse_overrides(b'{"intents": ["nobody"]}', table)
    assert refused.value.kind == "unknown_intent"
