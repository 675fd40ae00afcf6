"""Serve a test's ASGI app on a free 127.0.0.1 port: the fakes of Twilio's REST API and of tool
receivers run as real HTTP servers, so the clients under test use their real transports."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import uvicorn

from gateway.server import bind_socket

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from starlette.types import ASGIApp, Send

__all__ = ["reply_json", "serve_asgi"]


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp, *, before_exit: Callable[[], None] | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` for the block; yields its base URL (``http://127.0.0.1:PORT``).

    ``before_exit`` runs as the block ends, before the server is told to stop (a fake releases
    requests it holds, so the server's shutdown does not wait for them).
    """
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            if before_exit is not None:
                before_exit()
            server.should_exit = True
    finally:
        sock.close()


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
