"""ModelScript from TOML: the scenario format replays use; unknown keys are rejected."""

from __future__ import annotations

import msgspec
import pytest

from gateway.emulator import (
    Fault,
    ModelScript,
    ScriptedToolUse,
    model_script_from_mapping,
    model_script_from_toml,
)

SCENARIO = b"""
session_cap_s = 5.0
faults = [{ kind = "stall", after_ms = 4000 }]

[[turns]]
transcript = "where is my order"
reply = "It shipped yesterday."
answer_ms = 800
tool_use = { name = "get_order", arguments = { orderId = "42" } }

[[turns]]
fault = { kind = "throttlingException", message = "slow down" }
"""


def test_a_scenario_table_decodes() -> None:
    script = model_script_from_toml(SCENARIO)
    assert script.session_cap_s == 5.0
    assert script.faults == [Fault(kind="stall", after_ms=4000)]
    assert script.turns[0].tool_use == ScriptedToolUse(
        name="get_order", arguments={"orderId": "42"}
    )
    assert script.turns[0].think_ms is None
    assert script.turns[1].fault == Fault(kind="throttlingException", message="slow down")
    assert model_script_from_mapping(msgspec.to_builtins(script)) == script


def test_unknown_keys_and_kinds_are_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        model_script_from_toml(b"[[turns]]\ntranscirpt = 'typo'\n")
    with pytest.raises(msgspec.ValidationError):
        model_script_from_mapping({"faults": [{"kind": "meltdown"}]})
    with pytest.raises(msgspec.ValidationError):
        model_script_from_mapping({"faults": [{"kind": "stall", "after_ms": -1}]})
    assert model_script_from_mapping({}) == ModelScript()
