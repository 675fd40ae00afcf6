"""``[[routes]]`` and ``[call_webhook]`` in the config: parsing, and checks that name the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.call import PROMPT_NAMES as CALL_PROMPT_NAMES
from actors.errors import ConfigError
from gateway.config import CallWebhookConfig, GatewayConfig, RouteConfig, load_config
from gateway.routes import PROMPT_NAMES

TOOLS = """
[[tools]]
name = "lookup"
description = "Look an order up."
url = "https://tools.example.com/lookup"

[[tools]]
name = "refund"
description = "Refund an order."
url = "https://tools.example.com/refund"
"""

ROUTES = (
    TOOLS
    + """
[call_webhook]
url = "https://config.example.com/call"
secret = "top-level-secret"

[[routes]]
name = "sales"
numbers = ["+15550001111", "+15550002222"]
system_prompt = "You are Sam, from sales."
voice_id = "tiffany"
tools = ["lookup"]
greeting = "none"

[routes.webhook]
url = "https://config.example.com/sales"
secret = "sales-secret-key"
timeout_s = 0.5

[[routes]]
name = "support"
numbers = ["+442071234567"]
"""
)


def load(tmp_path: Path, text: str, **environ: str) -> GatewayConfig:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ)


def test_routes_and_webhooks_load(tmp_path: Path) -> None:
    config = load(tmp_path, ROUTES)
    sales, support = config.routes
    assert sales == RouteConfig(
        name="sales",
        numbers=("+15550001111", "+15550002222"),
        system_prompt="You are Sam, from sales.",
        voice_id="tiffany",
        tools=("lookup",),
        greeting="none",
        webhook=CallWebhookConfig(
            url="https://config.example.com/sales", secret="sales-secret-key", timeout_s=0.5
        ),
    )
    # Unset keys mean "the top-level setting"; no own webhook means [call_webhook].
    assert support == RouteConfig(name="support", numbers=("+442071234567",))
    assert not support.webhook.enabled
    assert config.call_webhook.url == "https://config.example.com/call"
    assert config.call_webhook.timeout_s == 2.0
    # Secrets and numbers stay out of reprs (and so out of logs of the config).
    assert "secret" not in repr(config.call_webhook).replace("CallWebhook", "")
    assert "+1555" not in repr(sales)


def test_no_routes_and_no_webhook_by_default() -> None:
    config = GatewayConfig()
    assert config.routes == ()
    assert not config.call_webhook.enabled


def test_the_webhook_may_come_from_the_environment(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        TOOLS,
        SONIC_GATEWAY_CALL_WEBHOOK__URL="http://127.0.0.1:9/call",
        SONIC_GATEWAY_CALL_WEBHOOK__SECRET="env-secret-key",
        SONIC_GATEWAY_CALL_WEBHOOK__TIMEOUT_S="0.25",
    )
    assert config.call_webhook == CallWebhookConfig(
        url="http://127.0.0.1:9/call", secret="env-secret-key", timeout_s=0.25
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, TOOLS, SONIC_GATEWAY_CALL_WEBHOOK__URL="http://127.0.0.1:9/call")
    assert caught.value.key == "SONIC_GATEWAY_CALL_WEBHOOK__SECRET"


def test_the_greeting_names_are_the_prompt_caches() -> None:
    assert PROMPT_NAMES == CALL_PROMPT_NAMES


ROUTE = '[[routes]]\nname = "a"\nnumbers = ["+15550001111"]\n'
WEBHOOK = '[call_webhook]\nurl = "https://c.example/x"\nsecret = "long-enough"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (ROUTE + "colour = 1\n", "routes[0].colour"),
        (
            ROUTE + '[routes.webhook]\nurl = "https://c.example/x"\nsecrt = "x"\n',
            "routes[0].webhook.secrt",
        ),
        (ROUTE + 'tools = ["lookup", "nope"]\n', "routes[0].tools[1]"),
        (ROUTE + 'tools = ["lookup", "lookup"]\n', "routes[0].tools[1]"),
        (ROUTE + 'greeting = "welcome"\n', "routes[0].greeting"),
        (ROUTE + ROUTE, "routes[1].name"),
        (ROUTE + '[[routes]]\nname = "b"\nnumbers = ["+15550001111"]\n', "routes[1].numbers[0]"),
        (
            '[[routes]]\nname = "a"\nnumbers = ["+15550001111", "+15550001111"]\n',
            "routes[0].numbers[1]",
        ),
        ('[[routes]]\nname = "a"\nnumbers = ["5550001111"]\n', "routes[0].numbers[0]"),
        ('[[routes]]\nname = "a"\nnumbers = ["+1 555 000 1111"]\n', "routes[0].numbers[0]"),
        ('[[routes]]\nname = "a"\nnumbers = []\n', "routes[0].numbers"),
        ('[[routes]]\nname = "a"\n', "routes[0].numbers"),
        ('[[routes]]\nname = "default"\nnumbers = ["+15550001111"]\n', "routes[0].name"),
        (ROUTE + '[routes.webhook]\nurl = "https://c.example/x"\n', "routes[0].webhook.secret"),
        (ROUTE + '[routes.webhook]\nsecret = "long-enough"\n', "routes[0].webhook.url"),
        (
            ROUTE + '[routes.webhook]\nurl = "ftp://c/x"\nsecret = "long-enough"\n',
            "routes[0].webhook.url",
        ),
        ('[call_webhook]\nurl = "https://c.example/x"\nsecret = "short"\n', "call_webhook.secret"),
        ('[call_webhook]\nurl = "c.example/x"\nsecret = "long-enough"\n', "call_webhook.url"),
        ('[call_webhook]\nsecret = "long-enough"\n', "call_webhook.url"),
        ("routes = [1]\n", "routes[0]"),
        (ROUTE + 'intents = ["nobody"]\n', "routes[0].intents[0]"),
    ],
)
def test_bad_routes_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, TOOLS + text if not text.startswith("routes =") else text)
    assert caught.value.key == key


def test_a_number_named_twice_is_refused_without_repeating_it(tmp_path: Path) -> None:
    text = ROUTE + '[[routes]]\nname = "b"\nnumbers = ["+15550001111"]\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert "routes[0].numbers[0] has it" in str(caught.value)
    assert "5550001111" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        '[[routes]]\nname = "a b"\nnumbers = ["+15550001111"]\n',
        ROUTE + 'voice_id = "not a voice"\n',
        ROUTE + 'system_prompt = ""\n',
        WEBHOOK + "timeout_s = 0\n",
        WEBHOOK.replace("[call_webhook]", "[call_webhook]\ntimeout_s = 60"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"routes|call_webhook"):
        load(tmp_path, text)


def test_the_complete_example_in_the_docs_loads(tmp_path: Path) -> None:
    """docs/routes.md's complete example config (its first ``toml`` block) is valid."""
    doc = Path(__file__).parents[2] / "docs" / "routes.md"
    block = doc.read_text(encoding="utf-8").split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "prompts").mkdir()  # the example's prompts.cache_dir
    config = load(tmp_path, block)
    sales, support = config.routes
    assert (sales.name, sales.tools, sales.webhook.enabled) == (
        "sales",
        ("opening_hours", "transfer_call"),
        True,
    )
    assert (support.name, support.greeting, support.webhook.enabled) == ("support", "none", False)
    assert config.call_webhook.enabled
