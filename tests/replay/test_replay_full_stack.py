"""Every bundled scenario through the real stack: emulator + gateway + call actors + simulated Twilio.

Skipped ONLY while ``gateway.wiring.build_call_factory`` does not exist (the lead wires the call
actors into the gateway); once it lands, every bundled scenario must pass here and in ``.ci/run``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.replay import (
    StackUnavailable,
    bundled_scenarios,
    format_report,
    load_scenario,
    replay_stack,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.mark.parametrize("path", bundled_scenarios(), ids=lambda p: Path(p).stem)
async def test_bundled_scenario_passes(path: Path) -> None:
    scenario = load_scenario(path)
    try:
        async with replay_stack(scenario) as stack:
            report = await stack.run()
    except StackUnavailable as unwired:  # the ONLY reason to skip: no call factory yet
        pytest.skip(str(unwired))
    assert report.passed, format_report(report)


def test_there_are_eight_bundled_scenarios() -> None:
    names = {p.stem for p in bundled_scenarios()}
    assert names == {
        "greeting_and_two_turns",
        "barge_in_mid_answer",
        "hangup_mid_answer",
        "dtmf",
        "dtmf_entry",
        "sonic_fault_recovered",
        "session_handover",
        "rejected_unsigned_socket",
    }
