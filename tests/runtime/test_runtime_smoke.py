"""Smoke test: a two-actor supervisor exchanging messages, stopped in order."""

from __future__ import annotations

from typing import assert_never

import anyio
import msgspec
import pytest

from actors.runtime import (
    Actor,
    ChildSpec,
    Mailbox,
    Overflow,
    Supervisor,
)
from actors.runtime.testing import receive_n, running


class Ping(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    n: int


class Stop(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    pass


type EchoInbox = Ping | Stop


class Echo(Actor[EchoInbox]):
    def __init__(self, inbox: Mailbox[Ping], control: Mailbox[Stop], out: Mailbox[Ping]) -> None:
        super().__init__("echo", inbox=inbox, control=control)
        self.out = out

    async def handle(self, msg: EchoInbox) -> None:
        match msg:
            case Ping(n=n):
                await self.send_to(self.out, Ping(n=n + 1))
            case Stop():
                raise anyio.get_cancelled_exc_class()()
            case _:
                assert_never(msg)


@pytest.mark.anyio
async def test_two_actor_supervisor_round_trip() -> None:
    inbox = Mailbox[Ping]("echo.in", 4)
    control = Mailbox[Stop]("echo.control", 1)
    out = Mailbox[Ping]("echo.out", 4, Overflow.DROP_OLDEST)
    sup = Supervisor("root", [ChildSpec("echo", lambda: Echo(inbox, control, out))])
    async with running(sup):
        await inbox.send(Ping(n=1))
        with anyio.fail_after(5):
            got = await receive_n(out, 1)
        assert got == [Ping(n=2)]
        snap = sup.statistics()
        assert snap.children[0].name == "echo"
        msgspec.json.encode(snap)
    assert sup.state == "stopped"
