"""A conversation with its own settings (a call's route) over the connector's endpoint."""

from __future__ import annotations

import attrs
import pytest

from actors.sonic import PoolSettings
from tests.sonic.test_sonic_emulator import FRAME, sonic_env

pytestmark = pytest.mark.anyio


async def test_own_settings_reach_the_session_and_never_take_a_pooled_stream() -> None:
    pool = PoolSettings(size=1, level="stream", refill=False, max_idle_s=30)
    async with sonic_env(pool=pool) as (emu, connector):
        await connector.wait_warm()
        own = attrs.evolve(connector.settings, system_prompt="You are Sam.", voice_id="tiffany")
        async with connector.conversation(settings=own) as conv:
            await conv.send_audio(bytes(FRAME))
        stats = connector.statistics()
        assert (stats.hits, stats.misses, stats.pooled) == (0, 1, 1)  # opened cold
        # Equal settings are the connector's own: the pooled stream serves them.
        same = attrs.evolve(connector.settings)
        async with connector.conversation(settings=same) as conv:
            await conv.send_audio(bytes(FRAME))
        assert connector.statistics().hits == 1
    # The pre-opened session served the second conversation; the first opened its own.
    pooled, routed = emu.sessions
    assert (routed.system_prompt, routed.voice_id) == ("You are Sam.", "tiffany")
    assert (pooled.system_prompt, pooled.voice_id) == (
        connector.settings.system_prompt,
        connector.settings.voice_id,
    )


async def test_settings_for_another_endpoint_are_refused() -> None:
    async with sonic_env() as (_, connector):
        other = attrs.evolve(connector.settings, endpoint_uri="https://127.0.0.1:9")
        with pytest.raises(ValueError, match="endpoint"):
            connector.conversation(settings=other)
