"""``GET /debug``: the live page operators watch, served from the package.

The page (``gateway/assets/debug.html``) is one static file: HTML, CSS and a script that fetches
``/debug/actors`` once a second and draws every live call's actor tree (state, mailbox depth,
capacity and drops, messages, restarts, counters), its last supervisor events, the recently
finished calls and the Sonic connector's pool and connections. No build step, no CDN, no
third-party script: it works on a host with no internet access.

The page carries no data, only code, so it is guarded like the JSON routes only for existence
(404 while ``debug.enabled`` is off). The data it fetches needs the bearer token when one is
configured; the page takes it from the URL fragment (``/debug#token=...``), which browsers never
send to the server or put in ``Referer`` headers.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Final, final

from starlette.responses import Response

from gateway.debug import debug_refusal

if TYPE_CHECKING:
    from starlette.requests import Request

    from gateway.config import DebugConfig

__all__ = ["DebugPageEndpoint", "debug_page_html"]

_ASSET: Final = "debug.html"
# The page's script is inline, so the policy names it by hash-free 'unsafe-inline'; everything
# else (fetch, images, frames, forms) is limited to this origin.
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def debug_page_html() -> bytes:
    """The page's bytes, read from the package once."""
    return (resources.files("gateway") / "assets" / _ASSET).read_bytes()


@final
class DebugPageEndpoint:
    """The ``/debug`` handler.

    Args:
        config: the ``[debug]`` section.
    """

    __slots__ = ("_config",)

    def __init__(self, config: DebugConfig) -> None:
        self._config = config

    async def handle(self, request: Request) -> Response:
        """Answer one request with the page (404 when the debug routes are off)."""
        if not self._config.enabled:
            return debug_refusal(self._config, request) or Response(b"", status_code=404)
        return Response(debug_page_html(), media_type="text/html", headers=_HEADERS)
