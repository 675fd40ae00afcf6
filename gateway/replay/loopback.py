"""Serve an ASGI app on a free 127.0.0.1 port for a block: the replay's fakes of Twilio's REST API
and of a tool receiver run as real HTTP servers, so the gateway's clients use their real transports.

uvicorn does not capture signals here (:class:`_QuietServer`): these servers live inside a replay
or a test, and a Ctrl-C must reach the program as usual, not be swallowed until the server stops.
"""

from __future__ import annotations

import contextlib
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import uvicorn

from gateway.server import bind_socket

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from starlette.types import ASGIApp, Receive, Send

__all__ = ["read_body", "reply_json", "serve_asgi"]


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handling (see the module docstring)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp, *, before_exit: Callable[[], None] | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` for the block; yields its base URL (``http://127.0.0.1:PORT``).

    The socket is bound before the block starts, so the URL is usable at once. ``before_exit``
    runs as the block ends, before the server is told to stop (a fake releases requests it holds,
    so the server's shutdown does not wait for them).

    Raises:
        OSError: no loopback port could be bound.
    """
    sock = bind_socket("127.0.0.1", 0)
    server = _QuietServer(
        uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False)
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            finally:
                if before_exit is not None:
                    before_exit()
                server.should_exit = True
    finally:
        sock.close()


async def read_body(receive: Receive) -> bytes:
    """The whole body of an ASGI HTTP request."""
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body", False):
            return body


async def reply_json(send: Send, status: int, body: bytes) -> None:
    """Answer an ASGI HTTP request with ``body`` as ``application/json``."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
