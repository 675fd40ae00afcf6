"""``kind = "end_call"`` / ``"transfer_call"`` in the config: checks, the schema, the tools."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import msgspec
import pytest

from actors.errors import ConfigError
from actors.tools import EndCall, TransferCall
from gateway.config import GatewayConfig
from gateway.tools import build_toolbox, sonic_tools

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

REST = """
[twilio]
account_sid = "AC0123456789abcdef0123456789abcdef"
api_key_sid = "SK0123456789abcdef0123456789abcdef"
api_key_secret = "secret-0123456789"
"""

BUILTINS = """
[[tools]]
name = "end_call"
description = "Hang up when the caller is done."
kind = "end_call"

[[tools]]
name = "transfer_call"
description = "Transfer the caller to a person."
kind = "transfer_call"
[[tools.targets]]
name = "sales"
number = "+15551234567"
timeout_s = 20
[[tools.targets]]
name = "support"
sip = "sip:support@pbx.example.com"
"""


def load(tmp_path: Path, text: str) -> GatewayConfig:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return GatewayConfig.from_toml(path)


def test_builtins_load_with_rest_credentials_and_enumerate_the_targets(tmp_path: Path) -> None:
    config = load(tmp_path, REST + BUILTINS)
    specs = {s.name: msgspec.json.decode(s.input_schema_json) for s in sonic_tools(config.tools)}
    assert specs["end_call"] == {"type": "object", "properties": {}}
    target = specs["transfer_call"]["properties"]["target"]
    assert target["enum"] == ["sales", "support"]
    assert specs["transfer_call"]["required"] == ["target"]


def test_a_builtin_without_rest_credentials_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tools\[0\]\.kind"):
        load(tmp_path, BUILTINS)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('url = "https://x.example.com/"', "tools[0].url"),
        ('input_schema = \'{"type": "object"}\'', "tools[0].input_schema"),
    ],
)
def test_a_builtin_refuses_http_keys(tmp_path: Path, extra: str, key: str) -> None:
    text = REST + f'[[tools]]\nname = "end"\ndescription = "d"\nkind = "end_call"\n{extra}\n'
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load(tmp_path, text)


@pytest.mark.parametrize(
    ("targets", "key"),
    [
        ("", r"tools\[0\]\.targets"),
        ('[[tools.targets]]\nname = "a"\n', r"tools\[0\]\.targets\[0\]"),
        ('[[tools.targets]]\nname = "a"\nnumber = "+1555"\nsip = "sip:a@b"\n', r"targets\[0\]"),
        ('[[tools.targets]]\nname = "a"\nnumber = "not-a-number"\n', r"targets\[0\]"),
        (
            '[[tools.targets]]\nname = "a"\nnumber = "+15551234567"\n'
            '[[tools.targets]]\nname = "a"\nnumber = "+15551234568"\n',
            r"targets\[1\]\.name",
        ),
    ],
)
def test_transfer_targets_are_checked(tmp_path: Path, targets: str, key: str) -> None:
    text = REST + f'[[tools]]\nname = "t"\ndescription = "d"\nkind = "transfer_call"\n{targets}'
    with pytest.raises(ConfigError, match=key) as caught:
        load(tmp_path, text)
    assert "not-a-number" not in str(caught.value)


async def test_the_built_tools_answer_and_carry_their_action(tmp_path: Path) -> None:
    config = load(tmp_path, REST + BUILTINS)
    async with httpx.AsyncClient() as http:
        toolbox = build_toolbox(config.tools, http)
    end = toolbox.get("end_call")
    transfer = toolbox.get("transfer_call")
    assert end is not None
    assert transfer is not None
    ended = await end.invoke("{}")
    assert ended.outcome == "ok"
    assert ended.action == EndCall()
    moved = await transfer.invoke('{"target": "sales"}')
    assert moved.outcome == "ok"
    assert isinstance(moved.action, TransferCall)
    assert moved.action.target == "sales"
    assert b"<Number>+15551234567</Number>" in moved.action.twiml
    assert b'timeout="20"' in moved.action.twiml
    for bad, reason in (
        ('{"target": "+15550000000"}', "unknown_target"),
        ("{}", "missing_target"),
        ("nope", "not_json"),
    ):
        refused = await transfer.invoke(bad)
        assert refused.outcome == "bad_input"
        assert refused.action is None
        assert msgspec.json.decode(refused.content_json) == {
            "error": "bad_input",
            "reason": reason,
            "targets": ["sales", "support"],
        }


def test_an_unknown_target_key_is_named(tmp_path: Path) -> None:
    text = (
        REST + '[[tools]]\nname = "t"\ndescription = "d"\nkind = "transfer_call"\n'
        '[[tools.targets]]\nname = "a"\nnumbr = "+15551234567"\n'
    )
    with pytest.raises(ConfigError, match=r"tools\[0\]\.targets\[0\]\.numbr"):
        load(tmp_path, text)
