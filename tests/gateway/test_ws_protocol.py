"""MediaWebSocketProtocol under the installed uvicorn: no pause per message, backpressure kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
import uvicorn
import websockets

from gateway.server import bind_socket
from gateway.ws_protocol import PAUSE_AT, MediaWebSocketProtocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.anyio

type Receive = Callable[[], Awaitable[dict[str, Any]]]
type Send = Callable[[dict[str, Any]], Awaitable[None]]


class CountingApp:
    """Accepts one socket, optionally waits for ``release`` before reading, records messages."""

    def __init__(self, *, hold: bool) -> None:
        self.release = anyio.Event()
        if not hold:
            self.release.set()
        self.received: list[str] = []
        self.done = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await self.release.wait()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            self.received.append(message["text"])
        self.done.set()


async def _serve(app: CountingApp) -> AsyncIterator[str]:
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(app, ws=MediaWebSocketProtocol, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/"
        server.should_exit = True
    sock.close()


async def test_a_reading_app_never_pauses_the_reader() -> None:
    app = CountingApp(hold=False)
    before = MediaWebSocketProtocol.pauses
    async for url in _serve(app):
        async with websockets.connect(url) as ws:
            for i in range(300):
                await ws.send(f"m{i}")
                if i % 8 == 0:
                    await anyio.sleep(0.005)  # like Twilio: a steady stream, not a flood
        with anyio.fail_after(10):
            await app.done.wait()
    assert app.received == [f"m{i}" for i in range(300)]
    assert MediaWebSocketProtocol.pauses == before


async def test_a_stuck_app_pauses_reading_and_loses_nothing() -> None:
    app = CountingApp(hold=True)
    before = MediaWebSocketProtocol.pauses
    count = PAUSE_AT * 4
    async for url in _serve(app):
        async with websockets.connect(url) as ws:
            for i in range(count):
                await ws.send(f"m{i}")
            await anyio.sleep(0.2)  # the server reads until its queue is full, then pauses
            assert MediaWebSocketProtocol.pauses > before
            app.release.set()
        with anyio.fail_after(10):
            await app.done.wait()
    assert app.received == [f"m{i}" for i in range(count)]
