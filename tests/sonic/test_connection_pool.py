"""The connector's pool of HTTP/2 connections, with real SDK streams against the emulator.

Streams spread over connections under ``streams_per_connection`` and the peer's
SETTINGS_MAX_CONCURRENT_STREAMS; a GOAWAY'd connection takes no new stream while its open streams
finish; a dropped connection fails only its own streams, and their conversations reopen on
another connection with their history.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import pytest

import audiocodec
from actors.errors import SonicRetryableError
from actors.sonic import (
    AssistantText,
    HandedOver,
    PoolSettings,
    SonicConnector,
    SonicEvent,
    SonicSettings,
    SonicStream,
    StaticCredentials,
)
from actors.sonic.transport import _Connection
from gateway.emulator import EmulatorSettings, run_emulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from actors.sonic import ConnectorStatistics
    from gateway.emulator import Emulator

pytestmark = pytest.mark.anyio

FAST = {"think_ms": 30, "answer_ms": 300, "end_of_turn_silence_ms": 300.0}


@contextlib.asynccontextmanager
async def pool_env(
    pool: PoolSettings, emulator: dict[str, Any] | None = None, **sonic: Any
) -> AsyncIterator[tuple[Emulator, SonicConnector]]:
    async with run_emulator(EmulatorSettings(**(FAST | (emulator or {})))) as emu:
        settings = SonicSettings(
            endpoint_uri=emu.endpoint_uri, ca_bundle=Path(emu.ca_path), **sonic
        )
        async with SonicConnector(settings, credentials=StaticCredentials(), pool=pool) as conn:
            yield emu, conn


async def wait_until(
    connector: SonicConnector, check: Callable[[ConnectorStatistics], bool]
) -> None:
    """Wait (bounded) for the connector's background work to reach a state."""
    with anyio.fail_after(5):
        # The CRT completes streams, and the fill task opens connections, with no event to await.
        while not check(connector.statistics()):  # noqa: ASYNC110
            await anyio.sleep(0.01)


def streams_per_connection(connector: SonicConnector) -> list[int]:
    return [c.streams for c in connector.statistics().connections if c.open]


async def open_many(connector: SonicConnector, n: int) -> list[SonicStream]:
    streams: list[SonicStream] = []

    async def one() -> None:
        streams.append(await connector.open_stream())

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return streams


async def test_streams_spread_over_connections_under_the_bound() -> None:
    pool = PoolSettings(size=0, streams_per_connection=2, max_connections=3)
    async with pool_env(pool) as (emu, connector):
        streams = await open_many(connector, 5)  # at once: builds are serialised, none wasted
        assert sorted(streams_per_connection(connector)) == [1, 2, 2]
        streams.append(await connector.open_stream())  # the one connection with room
        assert streams_per_connection(connector) == [2, 2, 2]
        with pytest.raises(SonicRetryableError) as info:
            await connector.open_stream()
        assert info.value.kind == "connectionPoolFull"
        stats = connector.statistics()
        assert (stats.pool_full, stats.refused_streams, len(stats.connections)) == (1, 0, 3)
        # The peer's SETTINGS arrived on every connection (the emulator advertises a limit).
        assert all(c.peer_max_streams is not None for c in stats.connections)

        await streams.pop(0).close()  # its connection has room again; a new open goes there
        await wait_until(connector, lambda s: sum(c.streams for c in s.connections) == 5)
        streams.append(await connector.open_stream())
        assert streams_per_connection(connector) == [2, 2, 2]
        for stream in streams:
            await stream.close()
        assert len(emu.sessions) == 7
        assert all(s.end_reason == "closed" for s in emu.sessions)


async def test_new_streams_go_to_the_connection_with_fewest_streams() -> None:
    pool = PoolSettings(size=0, streams_per_connection=3, max_connections=2)
    async with pool_env(pool) as (_, connector):
        streams = await open_many(connector, 4)  # 3 + 1
        assert streams_per_connection(connector) == [3, 1]
        await streams.pop(0).close()
        await streams.pop(0).close()  # both closed streams may sit on the first connection
        await wait_until(connector, lambda s: sum(c.streams for c in s.connections) == 2)
        before = streams_per_connection(connector)
        streams.append(await connector.open_stream())
        after = streams_per_connection(connector)
        chosen = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if a == b + 1]
        assert len(chosen) == 1
        assert before[chosen[0]] == min(before)
        for stream in streams:
            await stream.close()


async def test_connect_level_keeps_room_for_size_more_streams() -> None:
    pool = PoolSettings(size=2, level="connect", streams_per_connection=2, max_connections=3)
    async with pool_env(pool) as (emu, connector):
        await connector.wait_warm()
        assert streams_per_connection(connector) == [0]  # room for 2: one connection
        assert not emu.sessions  # warming opens no Bedrock stream
        first = await connector.open_stream()
        # Room dropped to 1 < size: a second connection is opened in the background.
        await wait_until(connector, lambda s: s.open_connections == 2)
        second = await connector.open_stream()
        assert sorted(streams_per_connection(connector)) == [1, 1]  # fewest streams first
        stats = connector.statistics()
        assert (stats.hits, stats.misses) == (2, 0)
        assert stats.nodelay_sockets == 2
        await first.close()
        await second.close()


async def test_pool_settings_reach_the_transport() -> None:
    pool = PoolSettings(size=0, streams_per_connection=7, max_connections=1)
    async with pool_env(pool) as (_, connector):
        stream = await connector.open_stream()
        (only,) = connector.statistics().connections
        assert only.bound == 7
        assert (only.streams, only.streams_opened, only.draining) == (1, 1, False)
        await stream.close()


async def test_the_peers_max_concurrent_streams_lowers_the_bound() -> None:
    pool = PoolSettings(size=0, streams_per_connection=50, max_connections=4)
    async with pool_env(pool, emulator={"max_concurrent_streams": 2}) as (emu, connector):
        streams = await open_many(connector, 5)  # at once, on connections just built
        stats = connector.statistics()
        assert sorted(c.streams for c in stats.connections) == [1, 2, 2]
        assert {(c.bound, c.peer_max_streams) for c in stats.connections} == {(2, 2)}
        for stream in streams:
            await stream.close()
        assert all(s.end_reason == "closed" for s in emu.sessions)


# ---------------------------------------------------------------- faults on one connection

FRAME = 640  # 20 ms at 16 kHz
TURN_MS = 1600  # 700 ms of speech, then quiet noise: the emulator answers within the quiet


def caller_turn(seed: int) -> bytes:
    return audiocodec.speech_like(16000, 700, seed) + quiet(TURN_MS - 700, seed)


def quiet(ms: int, seed: int) -> bytes:
    # Not digital silence: every slice of the caller's audio is unique.
    rng = np.random.default_rng(seed + 1000)
    return rng.integers(-20, 20, size=16 * ms, dtype=np.int16).tobytes()


class PooledCall:
    """One conversation, its caller audio in real time, and every event it received."""

    def __init__(self, connector: SonicConnector, name: str) -> None:
        self.connector = connector
        self.name = name
        self.events: list[SonicEvent] = []
        self.conv: Any = None

    async def run(self, audio: bytes, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with self.connector.conversation() as conv:
            self.conv = conv
            task_status.started()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._consume)
                for offset in range(0, len(audio), FRAME):
                    await conv.send_audio(audio[offset : offset + FRAME])
                    await anyio.sleep(0.02)
                await conv.aclose()

    async def _consume(self) -> None:
        async for event in self.conv.events:
            self.events.append(event)

    def handovers(self) -> list[HandedOver]:
        return [e for e in self.events if isinstance(e, HandedOver)]

    def answers(self) -> list[int]:
        """Indexes of the FINAL assistant texts in ``events``."""
        return [
            i
            for i, e in enumerate(self.events)
            if isinstance(e, AssistantText) and e.stage == "FINAL"
        ]


async def start_calls(
    tg: Any, connector: SonicConnector, audio: bytes, names: str
) -> dict[str, PooledCall]:
    calls: dict[str, PooledCall] = {}
    for name in names:  # one after the other: emulator session numbers follow the names
        calls[name] = PooledCall(connector, name)
        await tg.start(calls[name].run, audio)
    return calls


async def test_goaway_drains_one_connection_and_new_streams_avoid_it() -> None:
    pool = PoolSettings(size=0, streams_per_connection=2, max_connections=4)
    audio = caller_turn(1) + caller_turn(2)
    async with pool_env(pool) as (emu, connector), anyio.create_task_group() as tg:
        calls = await start_calls(tg, connector, audio, "ABC")
        a, b, c = emu.sessions
        assert a.connection == b.connection != c.connection  # A, B fill one; C opens the next
        await anyio.sleep(0.3)
        emu.inject_connection_fault("goaway", session=3)  # C's connection, with room for one
        await anyio.sleep(0.2)  # the GOAWAY reaches the client
        # D would go to C's connection (fewest streams); the CRT refuses it there, so it goes
        # to a new connection, and C's connection is draining with C still on it.
        calls |= await start_calls(tg, connector, audio, "D")
        d = emu.sessions[3]
        assert d.connection not in (a.connection, c.connection)
        stats = connector.statistics()
        assert stats.refused_streams == 1
        (draining,) = [x for x in stats.connections if x.draining]
        assert (draining.open, draining.streams) == (True, 1)
    # Every call went on undisturbed on its own stream, both turns answered.
    for call in calls.values():
        assert not call.handovers(), call.name
        assert len(call.answers()) == 2, call.name
    assert len(emu.sessions) == 4
    assert all(s.end_reason == "closed" for s in emu.sessions)
    assert emu.statistics()["goaways_sent"] == 1


async def test_dropped_connection_restarts_only_its_conversations() -> None:
    pool = PoolSettings(size=0, streams_per_connection=2, max_connections=4)
    # Turn 1 is answered before the drop; the drop comes in the middle of turn 2's speech.
    audio = caller_turn(1) + caller_turn(2) + quiet(600, 3)
    async with pool_env(pool) as (emu, connector), anyio.create_task_group() as tg:
        calls = await start_calls(tg, connector, audio, "ABC")
        a, b, c = emu.sessions
        assert a.connection == b.connection != c.connection
        await anyio.sleep((TURN_MS + 350) / 1000)
        emu.inject_connection_fault("drop", session=1)  # A's and B's connection
    a_call, b_call, c_call = calls["A"], calls["B"], calls["C"]
    assert not c_call.handovers()  # C's connection was not touched
    assert len(c_call.answers()) == 2
    for call in (a_call, b_call):
        (handover,) = call.handovers()
        assert handover.reason.startswith("error:"), handover
        # Turn 1 was answered before the drop; turn 2, spoken across it, is answered after it
        # by the new session (replayed from the ring, not lost, not answered twice).
        at = call.events.index(handover)
        answers = call.answers()
        assert len([i for i in answers if i < at]) == 1, call.name
        assert len([i for i in answers if i > at]) == 1, call.name
    new_sessions = emu.sessions[3:]
    assert len(new_sessions) == 2
    for session in new_sessions:
        assert session.connection != a.connection  # reopened on a healthy or new connection
        # System prompt + the history (turn 1: USER and ASSISTANT) before the audio.
        assert session.input_events.count("textInput") == 3
        assert session.end_reason == "closed"
    assert c.end_reason == "closed"
    assert {a.end_reason, b.end_reason} != {"closed"}


async def test_stream_count_follows_crt_completions_from_another_thread() -> None:
    class CrtStream:
        def __init__(self) -> None:
            self.completion_future: Future[int] = Future()

    connection = _Connection(("https", "h", 443), limit=3)
    streams = [CrtStream() for _ in range(3)]
    for stream in streams:
        connection.add_stream(stream)
    assert connection.open_streams() == 3
    # The CRT completes streams on its own thread (successfully or not).
    await anyio.to_thread.run_sync(streams[0].completion_future.set_result, 200)
    await anyio.to_thread.run_sync(streams[2].completion_future.set_exception, OSError("reset"))
    assert connection.open_streams() == 1
    assert connection.opened == 3
