"""A peer's GOAWAY at the HTTP/2 level: graceful lets open streams finish, an error closes at once.

The server is :class:`H2ServerConnection` with an echo application (each request's body comes
back on its response; the response ends when the request does); the client is ``h2`` over TLS,
driven frame by frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING, Any

import anyio
import h2.config
import h2.connection
import h2.events
import pytest
import trustme
from h2.errors import ErrorCodes

from gateway.emulator.h2server import H2ServerConnection, H2ServerSettings, Request, ServerStream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import ByteStream

pytestmark = pytest.mark.anyio


class _Echo:
    """Sends each request body chunk back; ends the response when the request ends."""

    def __init__(self, stream: ServerStream) -> None:
        self.stream = stream
        self.aborted = False

    def feed(self, data: bytes) -> None:
        self.stream.send_nowait(data)

    def end_input(self) -> None:
        self.stream.end()

    def abort(self) -> None:
        self.aborted = True


class EchoServer:
    def __init__(self) -> None:
        self.connections: list[H2ServerConnection] = []
        self.sinks: list[_Echo] = []
        self.closed = anyio.Event()

    def on_request(self, stream: ServerStream, request: Request) -> None:
        sink = _Echo(stream)
        stream.sink = sink
        self.sinks.append(sink)
        stream.respond(200, [(b"content-type", b"application/octet-stream")])

    def on_closed(self, conn: H2ServerConnection) -> None:
        self.closed.set()


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[tuple[EchoServer, int, ssl.SSLContext]]:
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    server_context.set_alpn_protocols(["h2"])
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.set_alpn_protocols(["h2"])
    app = EchoServer()

    def factory() -> H2ServerConnection:
        conn = H2ServerConnection(
            number=len(app.connections) + 1,
            settings=H2ServerSettings(),
            tls=server_context,
            on_request=app.on_request,
            on_closed=app.on_closed,
        )
        app.connections.append(conn)
        return conn

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        yield app, server.sockets[0].getsockname()[1], client_context
    finally:
        server.close()
        for conn in app.connections:
            conn.drop()


class Client:
    """An ``h2`` client connection; :meth:`next_event` reads until one event arrives."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.events: list[Any] = []

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send(data)

    async def next_event(self) -> Any:
        while not self.events:
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            self.events.extend(self.conn.receive_data(data))
            await self.flush()
        return self.events.pop(0)

    async def wait_for(self, kind: type[Any], stream_id: int | None = None) -> Any:
        with anyio.fail_after(5):
            while True:
                event = await self.next_event()
                if event is None:
                    raise AssertionError(f"connection closed before {kind.__name__}")
                if isinstance(event, kind) and (
                    stream_id is None or getattr(event, "stream_id", None) == stream_id
                ):
                    return event

    async def request(self, stream_id: int) -> None:
        self.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":path", "/echo"),
                (":scheme", "https"),
                (":authority", "127.0.0.1"),
            ],
        )
        await self.flush()

    async def send(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        self.conn.send_data(stream_id, data, end_stream=end)
        await self.flush()

    async def goaway(self, error_code: ErrorCodes) -> None:
        # As Node's session.close() does: GOAWAY, then the client's open streams go on.
        self.conn.close_connection(error_code=error_code)
        await self.flush()
        # h2 refuses to send after its own GOAWAY; a fresh state machine lets the test go on.
        self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN


@contextlib.asynccontextmanager
async def connected(port: int, context: ssl.SSLContext) -> AsyncIterator[Client]:
    stream = await anyio.connect_tcp(
        "127.0.0.1", port, tls=True, ssl_context=context, tls_standard_compatible=False
    )
    async with stream:
        client = Client(stream)
        client.conn.initiate_connection()
        await client.flush()
        yield client


async def test_open_streams_survive_a_graceful_goaway_then_the_connection_closes() -> None:
    async with echo_server() as (app, port, context), connected(port, context) as client:
        await client.request(1)
        await client.wait_for(h2.events.ResponseReceived, 1)
        await client.goaway(ErrorCodes.NO_ERROR)
        # The open stream carries data both ways after the GOAWAY.
        for n in range(3):
            await client.send(1, b"chunk %d" % n)
            echoed = await client.wait_for(h2.events.DataReceived, 1)
            assert echoed.data == b"chunk %d" % n
        # A new stream is refused; the open one is untouched.
        await client.request(3)
        reset = await client.wait_for(h2.events.StreamReset, 3)
        assert reset.error_code == ErrorCodes.REFUSED_STREAM
        assert len(app.sinks) == 1
        await client.send(1, b"last", end=True)
        assert (await client.wait_for(h2.events.DataReceived, 1)).data == b"last"
        await client.wait_for(h2.events.StreamEnded, 1)
        # With its last stream done the server closes the connection (GOAWAY, then EOF).
        with anyio.fail_after(5):
            await app.closed.wait()
        (conn,) = app.connections
        assert conn.goaway_received
        assert not conn.is_open
        assert not app.sinks[0].aborted


async def test_a_goaway_with_no_stream_open_closes_the_connection() -> None:
    async with echo_server() as (app, port, context), connected(port, context) as client:
        await client.request(1)
        await client.send(1, b"x", end=True)
        await client.wait_for(h2.events.StreamEnded, 1)
        await client.goaway(ErrorCodes.NO_ERROR)
        with anyio.fail_after(5):
            await app.closed.wait()


async def test_a_goaway_with_an_error_aborts_the_open_streams() -> None:
    async with echo_server() as (app, port, context), connected(port, context) as client:
        await client.request(1)
        await client.wait_for(h2.events.ResponseReceived, 1)
        await client.goaway(ErrorCodes.PROTOCOL_ERROR)
        with anyio.fail_after(5):
            await app.closed.wait()
        assert app.sinks[0].aborted
        assert not app.connections[0].goaway_received
