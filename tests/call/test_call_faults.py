"""Sonic faults as the caller lives them: the whole call tree over the in-memory Twilio socket, the
real Sonic client and the emulator (see test_call_tree.py for the harness).

* a lost session that is slow to come back plays the hold prompt, then the call goes on;
* a fatal error plays the sorry prompt, then transfers to the fallback target (or ends the call)
  through a fake of Twilio's REST API;
* an ordinary hang-up mid-answer fits SonicSession's shutdown bound (no ``child_killed``).
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from structlog.testing import capture_logs

from actors.call import ACTION_MARK, PromptCache
from actors.call.supervisor import SONIC_SHUTDOWN_S
from actors.errors import SonicRetryableError
from actors.tools import TransferCall
from actors.wire import TwilioOutboundClear, TwilioOutboundMark, TwilioOutboundMedia
from gateway.emulator import Fault
from gateway.emulator.session import SessionRunner
from gateway.replay.fake_twilio import FakeTwilioRest
from gateway.twilio_rest import TwilioRestSettings, open_twilio_rest
from gateway.twiml import dial_sip_twiml
from tests.call.test_call_tree import call_env, caller_speech, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors.call.ports import CallControl
    from tests.call.test_call_tree import ScriptedTwilio

pytestmark = pytest.mark.anyio

# Distinctive clips (constant μ-law bytes) so the test can tell what the caller heard.
ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "1" * 32
KEY_SID = "SK" + "2" * 32
KEY_SECRET = "api-key-s3cret-value"
HOLD = b"\x10" * 4000  # 0.5 s
SORRY = b"\x20" * 4800  # 0.6 s
TRANSFERRING = b"\x30" * 2400  # 0.3 s


def prompts(**clips: bytes) -> PromptCache:
    bundled = PromptCache.bundled()
    return PromptCache({**bundled.clips, **clips})  # type: ignore[dict-item]


def media_of(peer: ScriptedTwilio, clip: bytes) -> list[tuple[float, int]]:
    """(when, bytes) of every media frame made only of ``clip``'s byte."""
    byte = clip[:1]
    return [
        (t, len(f.media.payload))
        for t, f in peer.media_frames()
        if f.media.payload and f.media.payload == byte * len(f.media.payload)
    ]


def media_times(peer: ScriptedTwilio, clip: bytes) -> list[float]:
    return [t for t, _ in media_of(peer, clip)]


def heard_bytes(peer: ScriptedTwilio, clip: bytes) -> int:
    return sum(n for _, n in media_of(peer, clip))


async def test_a_lost_session_slow_to_come_back_plays_hold_then_the_call_goes_on() -> None:
    async with call_env(prompts=prompts(hold=HOLD)) as (emu, call, peer, reports):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.playout)
            tg.start_soon(call.run)
            await wait_for(lambda: emu.sessions and peer.media_frames(), 5)
            await anyio.sleep(0.3)  # the greeting has played; the line is idle
            # The session is reset, and the new one takes 1.8 s to open: without the hold prompt
            # the caller would hear nothing for that long.
            emu.inject_fault(Fault(kind="slow_first_byte", after_ms=1800))
            lost_at = anyio.current_time()
            emu.inject_fault(Fault(kind="reset"), target="current")
            await wait_for(lambda: media_times(peer, HOLD), 5)
            hold_at = media_times(peer, HOLD)[0]
            await wait_for(lambda: call.report().handovers >= 1, 10)
            recovered_at = anyio.current_time()
            # The call goes on: the new session answers the next caller turn.
            answered = anyio.Event()
            await peer.speak(caller_speech(900, 6))
            async with anyio.create_task_group() as inner:
                inner.start_soon(peer.silence_until, answered, 15)
                await wait_for(lambda: call.report().transcript, 15)
                answered.set()
            peer.stop()
            await wait_for(lambda: reports, 5)
            tg.cancel_scope.cancel()
        counters = {c.name: c for c in call.statistics().children}["sonic_session"]
    report = reports[0]
    assert report.end_reason == "caller_hangup"
    assert report.sonic_errors == ["streamEnded"]
    assert report.handovers == 1
    assert report.sonic_restarts == 0  # recovered inside the conversation
    # About a second of silence, then the hold prompt, before the new session took over.
    assert hold_at - lost_at >= 0.9
    assert hold_at < recovered_at
    assert heard_bytes(peer, HOLD) >= len(HOLD)  # played to its end
    assert counters.counters["holds_played"] == 1  # type: ignore[union-attr]
    assert [line.role for line in report.transcript][:1] == ["USER"]
    assert [s.end_reason for s in emu.sessions[:1]] == ["reset"]


async def test_a_quick_recovery_plays_no_hold_prompt() -> None:
    async with (
        call_env(prompts=prompts(hold=HOLD)) as (emu, call, peer, reports),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(peer.playout)
        tg.start_soon(call.run)
        await wait_for(lambda: emu.sessions and peer.media_frames(), 5)
        emu.inject_fault(Fault(kind="reset"), target="current")
        await wait_for(lambda: call.report().handovers >= 1, 5)
        await anyio.sleep(1.5)  # past the hold delay: the loss is long over
        peer.stop()
        await wait_for(lambda: reports, 5)
        tg.cancel_scope.cancel()
    assert reports[0].sonic_errors == ["streamEnded"]
    assert media_times(peer, HOLD) == []


async def test_a_sonic_that_stays_unreachable_holds_then_apologises_and_ends_the_call() -> None:
    # Every reopen fails: the conversation gives up, the supervisor restarts SonicSession (whose
    # opens fail too) until it gives up. The caller hears the hold prompt, then the sorry prompt.
    async with (
        call_env(
            sonic={"reopen_backoff_s": 0.05, "max_reopen_attempts": 2},
            prompts=prompts(hold=HOLD, sorry=SORRY),
            hold_after_ms=300.0,
        ) as (emu, call, peer, reports),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(peer.playout)
        tg.start_soon(call.run)
        await wait_for(lambda: emu.sessions and peer.media_frames(), 5)
        await anyio.sleep(0.3)
        connector = call._deps.connector  # test-only: make every later open fail

        async def unreachable(**_: Any) -> Any:
            raise SonicRetryableError("connectionReset", "unreachable (test)")

        connector.open_stream = unreachable  # type: ignore[method-assign]
        emu.inject_fault(Fault(kind="reset"), target="current")
        await wait_for(lambda: reports, 15)
        tg.cancel_scope.cancel()
    report = reports[0]
    assert report.end_reason == "supervisor_gave_up"
    assert report.sonic_restarts == 3
    hold, sorry = media_times(peer, HOLD), media_times(peer, SORRY)
    assert hold
    assert sorry
    assert hold[0] < sorry[0]
    assert heard_bytes(peer, SORRY) >= len(SORRY)
    assert peer.socket.closed_with is not None
    assert peer.socket.closed_with[0] == 1011


@contextlib.asynccontextmanager
async def rest_control(fake: FakeTwilioRest) -> AsyncIterator[CallControl]:
    async with fake.serving() as url:
        settings = TwilioRestSettings(
            account_sid=ACCOUNT, username=KEY_SID, secret=KEY_SECRET, base_url=url
        )
        async with open_twilio_rest(settings) as client:
            yield client


SUPPORT = TransferCall(target="support", twiml=dial_sip_twiml("sip:support@pbx.example.com"))


@pytest.mark.parametrize("fallback", [SUPPORT, None], ids=["transfer", "end"])
async def test_a_fatal_error_plays_sorry_then_transfers_or_ends_the_call(
    fallback: TransferCall | None,
) -> None:
    fake = FakeTwilioRest(
        account_sid=ACCOUNT, username=KEY_SID, password=KEY_SECRET, live_calls={CALL}
    )
    clips = prompts(sorry=SORRY, transferring=TRANSFERRING)
    async with (
        rest_control(fake) as control,
        call_env(call_sid=CALL, prompts=clips, call_control=control, fallback=fallback) as (
            emu,
            call,
            peer,
            reports,
        ),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(peer.playout)
        tg.start_soon(call.run)
        await wait_for(lambda: emu.sessions and peer.media_frames(), 5)
        await anyio.sleep(0.3)
        # Our own request refused: no retry can help (a fatal error).
        emu.inject_fault(
            Fault(kind="validationException", message="Invalid input request"),
            target="current",
        )
        await wait_for(lambda: reports, 10)
        tg.cancel_scope.cancel()
    report = reports[0]
    assert report.end_reason == "sonic_fatal:validationException"
    # The caller heard the sorry prompt (and, transferred, the transferring prompt) to its mark.
    assert heard_bytes(peer, SORRY) >= len(SORRY)
    echoes = [e for e in peer.echoed if e.name == ACTION_MARK and not e.cleared]
    assert len(echoes) == 1
    kinds = [type(f) for _, f in peer.frames]
    assert TwilioOutboundClear in kinds  # the broken answer's buffer is dropped first
    assert kinds[-1] is TwilioOutboundMark
    (request,) = fake.requests
    assert request.at >= echoes[0].at  # only once the caller heard it
    if fallback is None:
        assert media_times(peer, TRANSFERRING) == []
        assert request.form == {"Status": ["completed"]}
    else:
        assert heard_bytes(peer, TRANSFERRING) >= len(TRANSFERRING)
        sip = ET.fromstring(request.form["Twiml"][0]).find("Dial/Sip")
        assert sip is not None
        assert sip.text == "sip:support@pbx.example.com"
    # Still a failed call, said so: 1011 after the prompt, never a bare 1011 into silence.
    assert peer.socket.closed_with is not None
    assert peer.socket.closed_with[0] == 1011


@pytest.mark.parametrize("service", ["prompt", "slow"])
async def test_an_ordinary_hang_up_mid_answer_fits_the_sonic_shutdown_bound(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Sonic close could take up to two seconds (a wait for completionEnd, then for the end of
    # the response), past the supervisor's 1 s bound for SonicSession: child_killed on ordinary
    # hang-ups. "slow": the service ends its response 3 s after our side ended (the close must
    # still fit the bound, and the read left waiting must end without being cancelled).
    if service == "slow":
        original = SessionRunner.run

        async def slow_run(self: SessionRunner, faults: list[Fault]) -> None:
            await original(self, faults)
            await anyio.sleep(3.0)

        monkeypatch.setattr(SessionRunner, "run", slow_run)
    logs: list[dict[str, Any]] = []
    async with call_env({"answer_ms": 4000}) as (emu, call, peer, reports):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.playout)
            tg.start_soon(call.run)
            await peer.speak(caller_speech(900, 5))
            playing = anyio.Event()
            async with anyio.create_task_group() as inner:
                inner.start_soon(peer.silence_until, playing, 15)
                await wait_for(lambda: any(t.turn_id >= 1 for t in call.report().turns), 15)
                playing.set()
            await anyio.sleep(0.3)  # mid-answer: the model is still speaking
            with capture_logs() as logs:
                stopped_at = anyio.current_time()
                peer.stop()
                await wait_for(lambda: reports, 2)
                stop_s = anyio.current_time() - stopped_at
            tg.cancel_scope.cancel()
        record = emu.sessions[0]
    events = [entry["event"] for entry in logs]
    assert "supervisor.child_killed" not in events
    assert reports[0].end_reason == "caller_hangup"
    assert stop_s < SONIC_SHUTDOWN_S + 0.5  # generous: the bound plus the other children
    # The close said goodbye in order all the same.
    assert record.input_events[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert isinstance(peer.media_frames()[0][1], TwilioOutboundMedia)
    print(f"hang-up mid-answer, {service} service: call ended {stop_s * 1000:.0f} ms after stop")
