"""The configuration of Sonic fault handling: stall threshold, hold prompt delay, fallback target."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from actors.errors import ConfigError
from gateway.config import GatewayConfig, load_config
from gateway.tools import fallback_transfer

if TYPE_CHECKING:
    from pathlib import Path

REST = '[twilio]\naccount_sid = "AC' + "0" * 32 + '"\nauth_token = "auth-token-value"\n'
SERVER = '[server]\npublic_url = "https://voice.example.com"\n'
TRANSFER = """
[[tools]]
name = "transfer_call"
description = "Transfer the caller."
kind = "transfer_call"
[[tools.targets]]
name = "sales"
number = "+15551234567"
[[tools.targets]]
name = "support"
sip = "sip:support@pbx.example.com"
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> GatewayConfig:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env or {})


def test_defaults_stall_detection_on_hold_after_a_second_no_fallback() -> None:
    config = load_config(None, {})
    assert config.sonic.stall_timeout_s == 10.0
    assert config.sonic.to_sonic_settings().stall_timeout_s == 10.0
    assert config.call.hold_after_ms == 1000
    assert config.call.fallback_target is None


def test_stall_detection_can_be_turned_off_and_tiny_values_are_refused() -> None:
    config = load_config(None, {"SONIC_GATEWAY_SONIC__STALL_TIMEOUT_S": "0"})
    assert config.sonic.to_sonic_settings().stall_timeout_s is None
    with pytest.raises(ConfigError) as info:
        load_config(None, {"SONIC_GATEWAY_SONIC__STALL_TIMEOUT_S": "0.05"})
    assert "SONIC_GATEWAY_SONIC__STALL_TIMEOUT_S" in str(info.value)


def test_a_fallback_target_must_name_a_transfer_call_target(tmp_path: Path) -> None:
    config = load(tmp_path, SERVER + REST + '[call]\nfallback_target = "support"\n' + TRANSFER)
    assert config.call.fallback_target == "support"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, SERVER + REST + '[call]\nfallback_target = "billing"\n' + TRANSFER)
    message = str(info.value)
    assert "call.fallback_target" in message
    assert "sales, support" in message
    with pytest.raises(ConfigError, match="none is configured"):
        load(tmp_path, '[call]\nfallback_target = "support"\n')


def test_the_fallback_transfer_dials_the_named_target(tmp_path: Path) -> None:
    config = load(tmp_path, SERVER + REST + '[call]\nfallback_target = "sales"\n' + TRANSFER)
    twiml = fallback_transfer(config.tools, "sales")
    assert b"<Number>+15551234567</Number>" in twiml
