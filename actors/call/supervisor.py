"""CallSupervisor: one call's mailboxes and child specs, as data.

Actor tree and message flow (docs/call.md has the full diagram)::

    CallSupervisor (one_for_one, 3 restarts / 30 s, auto_shutdown=any_significant)
    ├── playback_egress  transient, significant  socket writer: media/mark/clear, paced
    ├── turn_taker       permanent               floor, barge-in, per-turn latency
    ├── sonic_session    transient, significant  Nova Sonic conversation
    └── twilio_ingress   temporary, significant  socket reader: audio, DTMF, marks, stop

Mailboxes (created here; they outlive actor instances, so a restarted child reads the same one):

===================  ======================================  ====  ===========  ==================
mailbox              carries                                 cap   overflow     why
===================  ======================================  ====  ===========  ==================
sonic.audio          CallerAudio (20 ms, or up to            50,   DROP_OLDEST  the reader never
                     quiet_batch_ms; Sonic input rate)       2 s                waits; 2 s covers
                                                                                Sonic opening and
                                                                                caps the bytes;
                                                                                stale caller audio
                                                                                is worthless;
                                                                                drops counted (ms)
sonic.control        CallerDtmf, HeardReport, PromptPlayed,  16    BLOCK        rare, must not be
                     CallerSpeechStopped, LocalBargeIn                          lost; own task
playback.data        AssistantAudio, AssistantAudioEnded     32    BLOCK        drained at once
                                                                                into the paced
                                                                                queue; BLOCK only
                                                                                guards a stalled
                                                                                egress (dropping
                                                                                model audio is
                                                                                audible and breaks
                                                                                heard accounting)
playback.control     ClearPlayback, PlayPrompt, MarkEchoed   64    BLOCK        served before
                                                                                audio; 64 = 2.5 s
                                                                                of echoes
turn.control         VAD events, transcripts, turn           64    BLOCK        control plane only
                     lifecycle, barge-ins, playback events                      (no audio)
===================  ======================================  ====  ===========  ==================

Back-pressure rules: TwilioIngress only ever uses ``send_nowait`` (a blocked reader makes Twilio
drop caller audio and hides the hang-up); a full control mailbox there ends the call loudly
(``control_flood``, close 1008). PlaybackEgress drains ``playback.data`` at once, so
SonicSession -- whose one Sonic event stream also carries barge-in signals -- never waits on
playback. The only cycle
(TurnTaker <-> PlaybackEgress control) carries at most a few messages per turn against capacities
of 64, so it cannot fill.

Supervision: ONE_FOR_ONE because the children share no in-memory state (mailboxes outlive them;
SonicSession's history lives in :class:`SessionMemory`, owned here). Start order puts
PlaybackEgress first so the greeting goes out before anything else starts; TwilioIngress last so
every peer mailbox has a reader when frames flow; stop order is the reverse (ingress first: stop
reading; then Sonic closes in order; then the rest). Any significant child ending without a
restart ends the call: the ingress on ``stop``/protocol error/broken socket, SonicSession on a
fatal Sonic error, PlaybackEgress on a dead socket. A SonicSession that raises a retryable error
(the conversation's own recovery gave up) is restarted fresh with the call's history; TurnTaker
and PlaybackEgress crashes (bugs) restart fresh. More than 3 restarts in 30 s: the supervisor gives
up and the call ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

import attrs
import structlog

from actors.call.playback_egress import PlaybackEgress
from actors.call.protocol import (
    CallerAudio,
    PlaybackControl,
    PlaybackData,
    SonicControl,
    TurnControl,
    caller_audio_ms,
)
from actors.call.session_watch import barge_in_confirm_s
from actors.call.sonic_session import SessionMemory, SonicSession
from actors.call.turn_fsm import TurnSettings
from actors.call.turn_taker import TurnTaker
from actors.call.twilio_ingress import TwilioIngress
from actors.runtime import AutoShutdown, ChildSpec, Mailbox, Overflow, Restart, Strategy, Supervisor

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.call.deps import CallDeps
    from actors.call.ports import CallIdentity, TwilioSocket
    from actors.call.report import CallJournal
    from actors.tools import CallAction

__all__ = [
    "MAX_RESTARTS",
    "RESTART_PERIOD_S",
    "SONIC_SHUTDOWN_S",
    "CallMailboxes",
    "build_call_supervisor",
]

_log = structlog.get_logger("actors.call.supervisor")

MAX_RESTARTS: Final = 3
RESTART_PERIOD_S: Final = 30.0
SONIC_SHUTDOWN_S: Final = 1.0
"""SonicSession's graceful-stop bound; it closes its Sonic streams within it (docs/call.md)."""


CALLER_AUDIO_QUEUED_MS: Final = 2000.0
"""Most caller audio ``sonic.audio`` holds (ms): it covers a Sonic session opening (about 1 s),
and bounds the bytes a call can pin (at 16 kHz, 64 KB) whatever the messages' sizes."""


@final
@attrs.frozen
class CallMailboxes:
    """The five mailboxes of one call (see the table in the module docstring)."""

    sonic_audio: Mailbox[CallerAudio]
    sonic_control: Mailbox[SonicControl]
    playback_data: Mailbox[PlaybackData]
    playback_control: Mailbox[PlaybackControl]
    turn_control: Mailbox[TurnControl]

    @classmethod
    def create(cls) -> CallMailboxes:
        """Fresh mailboxes with the documented capacities and policies."""
        return cls(
            sonic_audio=Mailbox("sonic.audio", 50, Overflow.DROP_OLDEST, weigh=caller_audio_ms),
            sonic_control=Mailbox("sonic.control", 16, Overflow.BLOCK),
            playback_data=Mailbox("playback.data", 32, Overflow.BLOCK),
            playback_control=Mailbox("playback.control", 64, Overflow.BLOCK),
            turn_control=Mailbox("turn.control", 64, Overflow.BLOCK),
        )


def build_call_supervisor(
    *,
    socket: TwilioSocket,
    identity: CallIdentity,
    deps: CallDeps,
    journal: CallJournal,
    mailboxes: CallMailboxes,
    memory: SessionMemory,
    on_call_action: Callable[[CallAction], None] | None = None,
) -> Supervisor:
    """The CallSupervisor: four child specs over shared mailboxes (factories build fresh actors)."""
    mb = mailboxes
    settings = deps.sonic_settings
    turn_settings = TurnSettings(
        local_vad_barge_in=deps.local_vad_barge_in,
        min_barge_in_speech_ms=deps.min_barge_in_speech_ms,
        greeting=bool(deps.greeting_ulaw),
    )

    def playback() -> PlaybackEgress:
        return PlaybackEgress(
            socket=socket,
            stream_sid=identity.stream_sid,
            greeting_ulaw=deps.greeting_ulaw,
            lead_ms=deps.playback_lead_ms,
            chunk_ms=deps.playback_chunk_ms,
            output_rate=settings.output_rate,
            control=mb.playback_control,
            data=mb.playback_data,
            turn_control=mb.turn_control,
            journal=journal,
        )

    def turn_taker() -> TurnTaker:
        return TurnTaker(
            control=mb.turn_control,
            playback_control=mb.playback_control,
            sonic_control=mb.sonic_control,
            settings=turn_settings,
            journal=journal,
        )

    def sonic() -> SonicSession:
        return SonicSession(
            connector=deps.connector,
            audio=mb.sonic_audio,
            control=mb.sonic_control,
            playback_data=mb.playback_data,
            turn_control=mb.turn_control,
            memory=memory,
            journal=journal,
            dtmf=deps.dtmf,
            tools=deps.tools,
            on_action=on_call_action,
            intents=deps.intents,
            intent_tools=deps.intent_tools,
            prompts=deps.prompts,
            settings=settings,
            hold_ulaw=deps.prompts.get("hold"),
            hold_after_s=deps.hold_after_ms / 1000.0,
            barge_in_confirm_s=barge_in_confirm_s(settings.endpointing_sensitivity),
            stop_timeout_s=SONIC_SHUTDOWN_S,
        )

    def ingress() -> TwilioIngress:
        return TwilioIngress(
            socket=socket,
            identity=identity,
            input_rate=settings.input_rate,
            quiet_batch_ms=settings.quiet_batch_ms,
            speech_batch_ms=settings.speech_batch_ms,
            sonic_audio=mb.sonic_audio,
            sonic_control=mb.sonic_control,
            turn_control=mb.turn_control,
            playback_control=mb.playback_control,
            journal=journal,
        )

    specs = [
        ChildSpec(
            "playback_egress", playback, restart=Restart.TRANSIENT, shutdown=0, significant=True
        ),
        ChildSpec("turn_taker", turn_taker, restart=Restart.PERMANENT, shutdown=0),
        # Graceful: leaving the conversation sends contentEnd/promptEnd/sessionEnd, and the close
        # is bounded to fit inside this timeout (SonicSession gets it as stop_timeout_s).
        ChildSpec(
            "sonic_session",
            sonic,
            restart=Restart.TRANSIENT,
            shutdown=SONIC_SHUTDOWN_S,
            significant=True,
        ),
        ChildSpec(
            "twilio_ingress", ingress, restart=Restart.TEMPORARY, shutdown=0, significant=True
        ),
    ]
    return Supervisor(
        "call",
        specs,
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=MAX_RESTARTS,
        period=RESTART_PERIOD_S,
        auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
    )
