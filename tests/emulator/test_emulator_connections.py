"""HTTP/2 connection behaviour: stream limit, no recycling, GOAWAY and drop faults (real SDK)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest

from actors.wire import AudioOutput, CompletionEnd, UsageEvent
from gateway.emulator import Emulator, EmulatorSettings, run_emulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

FAST = EmulatorSettings(
    answer_ms=400, think_ms=20, end_of_turn_silence_ms=300, close_grace_s=2.0, output_chunk_ms=100
)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with run_emulator(FAST) as emu:
        yield emu


@pytest.fixture
def new_client(emulator: Emulator, sonic_client_class: Any) -> Any:
    def make(**kwargs: Any) -> Any:
        return sonic_client_class(emulator.endpoint_uri, str(emulator.ca_path), **kwargs)

    return make


@pytest.fixture
async def shared_transport(emulator: Emulator, transport_class: Any) -> AsyncIterator[Any]:
    """One SDK transport: the clients made with it share its HTTP/2 connection."""
    transport = transport_class(str(emulator.ca_path))
    try:
        yield transport
    finally:
        with anyio.move_on_after(5, shield=True):
            await transport.close()


async def caller_turn(client: Any, pcm: Any) -> None:
    await client.audio(pcm.speech(client.in_rate, 300) + pcm.silence(client.in_rate, 400))


async def server_settings(emulator: Emulator) -> dict[int, int]:
    """Open a raw HTTP/2 connection and read the SETTINGS the emulator advertises."""
    context = ssl.create_default_context(cafile=str(emulator.ca_path))
    context.set_alpn_protocols(["h2"])
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    stream = await anyio.connect_tcp(
        "127.0.0.1", emulator.port, tls=True, ssl_context=context, tls_standard_compatible=False
    )
    async with stream:
        await stream.send(conn.data_to_send())
        with anyio.fail_after(5):
            while True:
                for event in conn.receive_data(await stream.receive()):
                    if isinstance(event, h2.events.RemoteSettingsChanged):
                        return {int(k): v.new_value for k, v in event.changed_settings.items()}


async def test_max_concurrent_streams_is_advertised() -> None:
    async with run_emulator(EmulatorSettings(max_concurrent_streams=7)) as emu:
        settings = await server_settings(emu)
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 7


async def test_default_stream_limit_is_100(emulator: Emulator) -> None:
    settings = await server_settings(emulator)
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 100


async def test_more_than_1000_sequential_streams_share_one_connection(emulator: Emulator) -> None:
    # Cheap streams (rejected requests) still count as streams: a server that recycles its
    # connection after N requests (hypercorn's keep_alive_max_requests=1000) fails this.
    context = ssl.create_default_context(cafile=str(emulator.ca_path))
    async with httpx.AsyncClient(
        verify=context, base_url=emulator.endpoint_uri, http2=True
    ) as http:
        for _ in range(1100):
            response = await http.post("/model/x/invoke", content=b"")
            assert response.status_code == 404
    stats = emulator.statistics()
    assert stats["rejected_requests"] == 1100
    assert stats["connections_opened"] == 1


async def test_sessions_record_their_connection(
    emulator: Emulator, new_client: Any, shared_transport: Any
) -> None:
    shared = [new_client(transport=shared_transport) for _ in range(2)]
    alone = new_client()
    try:
        for client in [*shared, alone]:
            await client.start()
        numbers = [s.connection for s in emulator.sessions]
        assert numbers[0] == numbers[1]
        assert numbers[2] != numbers[0]
        assert emulator.statistics()["connections_opened"] == 2
    finally:
        for client in [*shared, alone]:
            await client.close()


async def test_goaway_lets_the_open_stream_finish(
    emulator: Emulator, new_client: Any, shared_transport: Any, pcm_helpers: Any
) -> None:
    first = new_client(transport=shared_transport)
    later = new_client(transport=shared_transport)
    try:
        await first.start()
        emulator.inject_connection_fault("goaway", session=1)
        assert emulator.statistics()["goaways_sent"] == 1
        # The open stream works to its normal end after the GOAWAY.
        await caller_turn(first, pcm_helpers)
        await first.receive_until(lambda e: isinstance(e, UsageEvent))
        await first.finish()
        await first.drain()
        assert any(isinstance(e, AudioOutput) for e in first.events)
        assert isinstance(first.events[-1], CompletionEnd)
        # With its last stream done the connection closed, so a new stream needs a new one.
        await later.start()
        await caller_turn(later, pcm_helpers)
        await later.receive_until(lambda e: isinstance(e, UsageEvent))
    finally:
        await first.close()
        await later.close()
    one, two = emulator.sessions
    assert one.end_reason == "closed"
    assert two.connection != one.connection
    stats = emulator.statistics()
    assert stats["connections_opened"] == 2
    assert stats["goaways_sent"] == 1


async def test_after_goaway_the_sdk_refuses_new_streams_on_that_connection(
    emulator: Emulator, new_client: Any, shared_transport: Any
) -> None:
    # What a pool must handle: the SDK's transport keeps handing out a connection that received
    # GOAWAY while its streams run, and the CRT refuses to open a stream on it.
    first = new_client(transport=shared_transport)
    second = new_client(transport=shared_transport)
    fresh = new_client()
    try:
        await first.start()
        emulator.inject_connection_fault("goaway", session=1)
        await anyio.sleep(0.2)  # the GOAWAY reaches the client
        with pytest.raises(Exception, match="GOAWAY"):
            await second.start()
        second.stream = None  # never started: closing its input would wait for nothing
        # Another connection is unaffected.
        await fresh.start()
    finally:
        for client in (first, second, fresh):
            await client.close()
    assert emulator.sessions[-1].connection != emulator.sessions[0].connection
    assert len(emulator.sessions) == 2


async def test_drop_fails_only_the_streams_on_that_connection(
    emulator: Emulator, new_client: Any, shared_transport: Any, pcm_helpers: Any
) -> None:
    victims = [new_client(transport=shared_transport) for _ in range(2)]
    survivor = new_client()
    try:
        for client in [*victims, survivor]:
            await client.start()
        emulator.inject_connection_fault("drop", session=2)
        for client in victims:
            # The CRT reports the lost connection as an error or as a bare end of stream.
            with anyio.fail_after(5):
                try:
                    while await client.receive() is not None:
                        pass
                except Exception:  # any failure is what we expect
                    pass
            assert not any(isinstance(e, CompletionEnd) for e in client.events)
        await caller_turn(survivor, pcm_helpers)
        await survivor.receive_until(lambda e: isinstance(e, UsageEvent))
        await survivor.finish()
        await survivor.drain()
    finally:
        for client in [*victims, survivor]:
            await client.close()
    reasons = [s.end_reason for s in emulator.sessions]
    assert reasons == ["disconnected", "disconnected", "closed"]
    stats = emulator.statistics()
    assert stats["drops"] == 1
    assert stats["goaways_sent"] == 0


async def test_connection_fault_for_an_unknown_session(emulator: Emulator) -> None:
    with pytest.raises(LookupError):
        emulator.inject_connection_fault("drop", session=1)
