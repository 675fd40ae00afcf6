"""``[[tools]]`` in the config: parsing, checks that name the entry, and what Sonic is told."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import msgspec
import pytest

from actors.errors import ConfigError
from gateway.config import GatewayConfig, ToolConfig
from gateway.tools import build_toolbox, sonic_tools

if TYPE_CHECKING:
    from pathlib import Path

TOOL = """
[[tools]]
name = "balance"
description = "Look up the caller's balance."
url = "https://tools.example.com/balance"
bearer_token = "bearer-s3cret"
hmac_key = "hmac-s3cret-key"
timeout_s = 2.5
max_retries = 2
[tools.input_schema]
type = "object"
properties = { account = { type = "string" } }
required = ["account"]
"""


def load(tmp_path: Path, text: str) -> GatewayConfig:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return GatewayConfig.from_toml(path)


def test_a_tool_entry_loads_and_becomes_a_sonic_tool_and_an_http_tool(tmp_path: Path) -> None:
    config = load(tmp_path, TOOL)
    (tool,) = config.tools
    assert tool == ToolConfig(
        name="balance",
        description="Look up the caller's balance.",
        url="https://tools.example.com/balance",
        bearer_token="bearer-s3cret",
        hmac_key="hmac-s3cret-key",
        timeout_s=2.5,
        max_retries=2,
        input_schema={
            "type": "object",
            "properties": {"account": {"type": "string"}},
            "required": ["account"],
        },
    )
    assert "s3cret" not in repr(tool)
    (spec,) = sonic_tools(config.tools)
    assert spec.name == "balance"
    assert msgspec.json.decode(spec.input_schema_json)["required"] == ["account"]
    settings = config.sonic.to_sonic_settings(tools=sonic_tools(config.tools))
    assert settings.tools == (spec,)
    toolbox = build_toolbox(config.tools, httpx.AsyncClient(), max_in_flight=2)
    assert toolbox.names == ("balance",)
    assert toolbox.max_in_flight == 2


def test_the_schema_may_be_a_json_string_and_defaults_to_an_empty_object(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[[tools]]\nname = "a"\ndescription = "A."\nurl = "http://127.0.0.1:9/a"\n'
        'input_schema = \'{"type": "object", "properties": {"x": {"type": "integer"}}}\'\n'
        '[[tools]]\nname = "b"\ndescription = "B."\nurl = "http://127.0.0.1:9/b"\n',
    )
    a, b = sonic_tools(config.tools)
    assert msgspec.json.decode(a.input_schema_json)["properties"] == {"x": {"type": "integer"}}
    assert msgspec.json.decode(b.input_schema_json) == {"type": "object", "properties": {}}
    assert config.tools[1].timeout_s == 5.0
    assert config.tools[1].max_retries == 1


def test_no_tools_by_default() -> None:
    assert GatewayConfig().tools == ()


BASE = '[[tools]]\nname = "a"\ndescription = "A."\nurl = "https://t.example/a"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE + BASE, "tools[1].name"),
        (BASE + "colour = 1\n", "tools[0].colour"),
        (BASE + "input_schema = '{not json'\n", "tools[0].input_schema"),
        (BASE + "input_schema = '[1, 2]'\n", "tools[0].input_schema"),
        (BASE + 'input_schema = { type = "string" }\n', "tools[0].input_schema"),
        (BASE + "input_schema = { properties = 3 }\n", "tools[0].input_schema"),
        (BASE + 'bearer_token = "short"\n', "tools[0].bearer_token"),
        (BASE + 'hmac_key = " spaced-key "\n', "tools[0].hmac_key"),
        ('[[tools]]\nname = "a"\ndescription = "A."\n', "tools[0].url"),
        ('[[tools]]\nname = "a"\ndescription = "A."\nurl = "ftp://x/y"\n', "tools[0].url"),
        ('[[tools]]\nname = "a"\ndescription = "A."\nurl = "https://u:p@x/y"\n', "tools[0].url"),
    ],
)
def test_bad_entries_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key == key


@pytest.mark.parametrize(
    "text",
    [
        '[[tools]]\nname = "a b"\ndescription = "A."\nurl = "https://t.example/a"\n',
        '[[tools]]\nname = "a"\ndescription = ""\nurl = "https://t.example/a"\n',
        BASE + "timeout_s = 0\n",
        BASE + "max_retries = 9\n",
        BASE + 'kind = "grpc"\n',
    ],
)
def test_bad_values_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="tools"):
        load(tmp_path, text)
