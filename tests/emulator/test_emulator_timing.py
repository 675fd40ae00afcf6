"""The emulator's turn timing: the pause follows the session's endpointingSensitivity (Nova 2
Sonic's documented figures) unless the run overrides it; think time is a seeded distribution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from actors.wire import AudioOutput, UsageEvent
from gateway.emulator import ENDPOINTING_PAUSE_MS, EmulatorSettings, ThinkTimes, run_emulator

if TYPE_CHECKING:
    from actors.wire import EndpointingSensitivity

pytestmark = pytest.mark.anyio


def test_documented_pause_per_sensitivity() -> None:
    settings = EmulatorSettings()
    assert settings.end_of_turn_pause_ms("HIGH") == 1500.0
    assert settings.end_of_turn_pause_ms("MEDIUM") == 1750.0
    assert settings.end_of_turn_pause_ms("LOW") == 2000.0
    assert settings.end_of_turn_pause_ms(None) == 1750.0  # no turnDetectionConfiguration
    fixed = EmulatorSettings(end_of_turn_silence_ms=600.0)
    assert {fixed.end_of_turn_pause_ms(s) for s in ("HIGH", "MEDIUM", "LOW", None)} == {600.0}


def test_override_must_be_positive() -> None:
    with pytest.raises(ValueError, match="end_of_turn_silence_ms"):
        EmulatorSettings(end_of_turn_silence_ms=0.0)
    with pytest.raises(ValueError, match="think_jitter_ms"):
        EmulatorSettings(think_jitter_ms=-1)


async def _one_turn(
    settings: EmulatorSettings,
    sonic_client_class: Any,
    pcm: Any,
    sensitivity: EndpointingSensitivity | None,
    silence_ms: int,
) -> Any:
    async with run_emulator(settings) as emulator:
        client = sonic_client_class(emulator.endpoint_uri, str(emulator.ca_path))
        try:
            await client.start(sensitivity=sensitivity)
            await client.audio(
                pcm.speech(client.in_rate, 300) + pcm.silence(client.in_rate, silence_ms)
            )
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
            await client.finish()
            await client.drain()
        finally:
            await client.close()
        assert any(isinstance(e, AudioOutput) for e in client.events)
        (session,) = emulator.sessions
        return session


@pytest.mark.parametrize("sensitivity", ["HIGH", "LOW"])
async def test_session_pause_follows_endpointing_sensitivity(
    sensitivity: EndpointingSensitivity, sonic_client_class: Any, pcm_helpers: Any
) -> None:
    # Audio is sent faster than real time: the pause is audio time, so the test stays quick.
    settings = EmulatorSettings(answer_ms=200, think_ms=20, think_jitter_ms=0, close_grace_s=2.0)
    session = await _one_turn(settings, sonic_client_class, pcm_helpers, sensitivity, 2300)
    expected = ENDPOINTING_PAUSE_MS[sensitivity]
    assert session.end_of_turn_pause_ms == expected
    (timing,) = session.turn_timings
    assert timing.pause_ms is not None
    assert expected <= timing.pause_ms < expected + 50  # up to one VAD window later
    assert timing.first_audio_ms is not None
    assert 20 <= timing.first_audio_ms < 2000


async def test_explicit_override_wins(sonic_client_class: Any, pcm_helpers: Any) -> None:
    settings = EmulatorSettings(
        answer_ms=200, think_ms=20, end_of_turn_silence_ms=300.0, close_grace_s=2.0
    )
    session = await _one_turn(settings, sonic_client_class, pcm_helpers, "LOW", 400)
    assert session.end_of_turn_pause_ms == 300.0
    (timing,) = session.turn_timings
    assert timing.pause_ms is not None
    assert 300 <= timing.pause_ms < 350


def test_think_times_are_reproducible_and_bounded() -> None:
    settings = EmulatorSettings(think_ms=100, think_jitter_ms=80, seed=7)
    one = [ThinkTimes(settings, 1).draw() for _ in range(1)]
    first = ThinkTimes(settings, 1)
    again = ThinkTimes(settings, 1)
    draws = [first.draw() for _ in range(200)]
    assert draws == [again.draw() for _ in range(200)]
    assert draws[:1] == one
    assert all(20 <= d <= 180 for d in draws)
    assert len(set(draws)) > 10
    other = ThinkTimes(settings, 2)
    assert [other.draw() for _ in range(200)] != draws
    exact = ThinkTimes(EmulatorSettings(think_ms=100, think_jitter_ms=0), 1)
    assert {exact.draw() for _ in range(10)} == {100}
    floor = ThinkTimes(EmulatorSettings(think_ms=10, think_jitter_ms=50), 1)
    assert min(floor.draw() for _ in range(200)) == 0
