"""Actor base: the default receive loop, control-before-data, counters, snapshot, test helpers,
and the package's public surface."""

from __future__ import annotations

from typing import assert_never

import anyio
import msgspec
import pytest

import actors.runtime
from actors.runtime import Actor, ActorSnapshot, Mailbox, Overflow
from actors.runtime.testing import receive_n, running

pytestmark = pytest.mark.anyio


class Audio(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    pcm: bytes


class Clear(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    pass


type EgressInbox = Audio | Clear


class Egress(Actor[EgressInbox]):
    """Forwards audio; Clear is recorded. The exhaustive-match pattern from docs/runtime.md."""

    def __init__(self, audio: Mailbox[Audio], control: Mailbox[Clear], out: Mailbox[str]) -> None:
        super().__init__("egress", inbox=audio, control=control)
        self._out = out

    async def handle(self, msg: EgressInbox) -> None:
        match msg:
            case Audio(pcm=pcm):
                await self.send_to(self._out, f"audio:{pcm.decode()}")
            case Clear():
                self.state = "cleared"
                await self.send_to(self._out, "clear")
            case _:
                assert_never(msg)


def make() -> tuple[Mailbox[Audio], Mailbox[Clear], Mailbox[str], Egress]:
    audio = Mailbox[Audio]("egress.audio", 8, Overflow.DROP_OLDEST)
    control = Mailbox[Clear]("egress.control", 2)
    out = Mailbox[str]("egress.out", 16)
    return audio, control, out, Egress(audio, control, out)


async def test_control_overtakes_queued_audio() -> None:
    audio, control, out, egress = make()
    for i in range(5):
        audio.send_nowait(Audio(pcm=str(i).encode()))
    control.send_nowait(Clear())
    async with running(egress):
        with anyio.fail_after(5):
            got = await receive_n(out, 6)
    assert got == ["clear", "audio:0", "audio:1", "audio:2", "audio:3", "audio:4"]
    assert (egress.messages_in, egress.messages_out) == (6, 6)


async def test_default_run_returns_when_its_mailboxes_close() -> None:
    audio, control, _out, egress = make()
    audio.send_nowait(Audio(pcm=b"x"))
    audio.close()
    control.close()
    with anyio.fail_after(5):
        await egress.run()
    assert egress.messages_in == 1


async def test_snapshot_shows_state_mailboxes_counters_and_age() -> None:
    _audio, control, out, egress = make()
    async with running(egress):
        control.send_nowait(Clear())
        with anyio.fail_after(5):
            await receive_n(out, 1)
        snap = egress.statistics()
    assert isinstance(snap, ActorSnapshot)
    assert (snap.name, snap.kind, snap.state) == ("egress", "Egress", "cleared")
    assert [m.name for m in snap.mailboxes] == ["egress.control", "egress.audio"]
    assert (snap.messages_in, snap.messages_out, snap.restarts) == (1, 1, 0)
    assert snap.age_s >= 0.0
    assert msgspec.json.decode(msgspec.json.encode(snap), type=ActorSnapshot) == snap


async def test_handle_must_be_overridden() -> None:
    inbox = Mailbox[int]("m", 1)
    inbox.send_nowait(1)
    with pytest.raises(NotImplementedError, match="handle"):
        await Actor[int]("bare", inbox=inbox).run()


async def test_receive_without_mailboxes_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="no mailbox"):
        await Actor[int]("bare").receive()


async def test_running_propagates_the_actors_error() -> None:
    inbox = Mailbox[int]("m", 1)

    class Failing(Actor[int]):
        async def handle(self, msg: int) -> None:
            raise ValueError(f"bad {msg}")

    with pytest.raises(ExceptionGroup) as info:  # noqa: PT012
        async with running(Failing("f", inbox=inbox)):
            inbox.send_nowait(3)
            await anyio.sleep_forever()
    assert info.group_contains(ValueError, match="bad 3")


def test_public_surface_is_exactly_all() -> None:
    exported = set(actors.runtime.__all__)
    assert len(exported) == len(actors.runtime.__all__)
    for name in exported:
        assert getattr(actors.runtime, name) is not None
    assert {"Mailbox", "Actor", "Supervisor", "ChildSpec", "receive_either"} <= exported


async def test_receive_until_returns_a_message_or_none_at_the_deadline() -> None:
    audio, control, _out, egress = make()
    audio.send_nowait(Audio(pcm=b"a"))
    with anyio.fail_after(5):
        assert await egress.receive_until(None) == Audio(pcm=b"a")
        control.send_nowait(Clear())
        assert await egress.receive_until(anyio.current_time() + 60) == Clear()
        # Nothing waits: the deadline (already passed) gives None, and nothing is consumed.
        assert await egress.receive_until(anyio.current_time() - 1) is None
        audio.send_nowait(Audio(pcm=b"b"))
        # A deadline already due comes first even with a message queued, which stays queued.
        assert await egress.receive_until(anyio.current_time() - 1) is None
        assert await egress.receive_until(anyio.current_time() + 60) == Audio(pcm=b"b")
    assert egress.messages_in == 3
