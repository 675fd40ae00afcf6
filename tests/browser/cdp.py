"""A headless Chromium driven over the Chrome DevTools Protocol, for tests of the debug page.

Chromium is Debian's package (``/usr/bin/chromium``). :func:`find_chromium` returns it, installing
it with apt-get first when the test runs as root on a Debian-like host and it is missing (the
package registry is reachable from CI); otherwise None, and the tests skip with the reason.

:class:`Browser` starts ``chromium --headless --remote-debugging-port=0`` on 127.0.0.1 with a
throw-away profile, reads the DevTools address it prints, and talks to its default page over a
WebSocket (the ``websockets`` client): navigate, evaluate an expression (promises awaited), take a
screenshot. The browser is killed when the block exits.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from websockets.asyncio.client import connect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from websockets.asyncio.client import ClientConnection

__all__ = ["Browser", "find_chromium", "open_browser"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_DEVTOOLS = re.compile(rb"DevTools listening on (ws://[^\s]+)")


def find_chromium() -> tuple[str | None, str]:
    """(path, "") when a Chromium is available, else (None, why not)."""
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found, ""
    if os.environ.get("SONIC_GATEWAY_NO_BROWSER_INSTALL"):
        return None, "no Chromium, and SONIC_GATEWAY_NO_BROWSER_INSTALL is set"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None, "no Chromium on PATH and no way to install Debian's package (apt-get as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, timeout=900, check=False)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-300:]
            return None, f"installing Debian's chromium failed: {tail}"
    found = shutil.which("chromium")
    return (found, "") if found else (None, "apt-get installed chromium but it is not on PATH")


class Browser:
    """One page of a running headless Chromium (see the module docstring)."""

    def __init__(self, page: ClientConnection) -> None:
        self._page = page
        self._ids = itertools.count(1)
        self._events: list[str] = []  # methods of the events seen while waiting for replies

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        ident = next(self._ids)
        await self._page.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            reply = json.loads(await self._page.recv())
            if reply.get("id") != ident:
                if "method" in reply:
                    self._events.append(reply["method"])
                continue
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            result: dict[str, Any] = reply["result"]
            return result

    async def navigate(self, url: str) -> None:
        """Load ``url`` in the page; returns once its load event fired."""
        await self.call("Page.enable")
        self._events.clear()
        await self.call("Page.navigate", url=url)
        while "Page.loadEventFired" not in self._events:
            message = json.loads(await self._page.recv())
            if "method" in message:
                self._events.append(message["method"])

    async def evaluate(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page; a promise is awaited. Returns its JSON value."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self) -> bytes:
        """A PNG of the page as it is drawn now."""
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(result["data"])


@contextlib.asynccontextmanager
async def open_browser(
    chromium: str, *, width: int = 1280, height: int = 900
) -> AsyncIterator[Browser]:
    """Start headless Chromium and yield its first page; kill the browser on exit."""
    # Chromium's helper processes may still be writing the profile as the group dies.
    with tempfile.TemporaryDirectory(prefix="sg-chromium-", ignore_cleanup_errors=True) as profile:
        process = await anyio.open_process(
            [
                chromium,
                "--headless",
                "--no-sandbox",  # root in CI containers; the page is our own, on loopback
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killed whole, helpers included
        )
        try:
            async with anyio.create_task_group() as tg:
                address = await tg.start(_read_devtools_address, process.stderr)
                port = address.split("/")[2].split(":")[1]
                page_url = await anyio.to_thread.run_sync(_first_page, port)
                async with connect(page_url, max_size=None) as page:
                    yield Browser(page)
                tg.cancel_scope.cancel()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with anyio.move_on_after(10, shield=True):
                await process.wait()
            await process.aclose()


async def _read_devtools_address(
    stderr: Any, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Report the DevTools address Chromium prints, then keep draining its stderr."""
    seen = b""
    reported = False
    with anyio.fail_after(30) as scope:
        async for chunk in stderr:
            if reported:
                continue
            seen += chunk
            found = _DEVTOOLS.search(seen)
            if found:
                task_status.started(found.group(1).decode())
                reported = True
                scope.deadline = float("inf")
    if not reported:
        raise RuntimeError(f"chromium printed no DevTools address: {seen[-500:]!r}")


def _first_page(port: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
        targets = json.load(response)
    for target in targets:
        if target.get("type") == "page":
            return str(target["webSocketDebuggerUrl"])
    raise RuntimeError(f"no page target in {targets}")
