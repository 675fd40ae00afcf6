"""SonicSettings / PoolSettings / SonicTool validate at construction and name the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from actors.errors import ConfigError
from actors.sonic import PoolSettings, SonicSettings, SonicTool


def test_defaults_are_valid_and_derive_batch_sizes() -> None:
    s = SonicSettings()
    assert (s.input_rate, s.output_rate, s.audio_batch_ms) == (16000, 24000, 20)
    assert s.batch_bytes == 640
    assert s.replay_bytes == 96000
    assert PoolSettings().level == "connect"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_rate", 44100),
        ("output_rate", 12000),
        ("audio_batch_ms", 30),
        ("audio_batch_ms", 0),
        ("quiet_batch_ms", 50),
        ("quiet_batch_ms", 420),
        ("endpointing_sensitivity", "FAST"),
        ("top_p", 0.0),
        ("temperature", 1.5),
        ("max_tokens", 0),
        ("endpoint_uri", "http://127.0.0.1:1234"),
        ("voice_id", ""),
        ("replay_audio_ms", 3010),
        ("handover_after_s", 600.0),
        ("history_max_total_bytes", 10),
        ("stall_timeout_s", 0.0),
    ],
)
def test_bad_value_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        SonicSettings(**{field: value})
    assert info.value.key == f"sonic.{field}"


def test_ca_bundle_must_exist(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"sonic\.ca_bundle"):
        SonicSettings(ca_bundle=tmp_path / "missing.pem")


def test_telephony_mode_is_accepted() -> None:
    s = SonicSettings(input_rate=8000, output_rate=8000, audio_batch_ms=40)
    assert s.batch_bytes == 640


def test_tools_are_validated() -> None:
    tool = SonicTool(
        name="get_order", description="Look up an order", input_schema_json='{"type":"object"}'
    )
    SonicSettings(tools=(tool,))
    with pytest.raises(ConfigError, match="input_schema_json"):
        SonicTool(name="x", description="d", input_schema_json="not json")
    with pytest.raises(ConfigError, match=r"sonic\.tools"):
        SonicSettings(tools=(tool, tool))


@pytest.mark.parametrize(
    ("field", "value"), [("size", -1), ("level", "socket"), ("max_idle_s", 0.5)]
)
def test_pool_settings_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        PoolSettings(**{field: value})
    assert info.value.key == f"sonic.pool.{field}"
