"""TwilioIngress: the ONLY reader of the Twilio socket.

Rules:

* One loop: ``receive`` a frame, decode it (one typed msgspec decoder), check its order
  (:class:`TwilioStreamValidator`, primed with the ``connected``/``start`` the gateway already
  read), translate it into internal messages. Nothing here awaits a peer: every send is
  ``send_nowait``, because a reader that blocks makes Twilio drop caller audio (warning 31930) and
  hides the hang-up. Caller audio goes to a drop-oldest mailbox; a full CONTROL mailbox means a
  peer has been stuck for seconds, and the call ends loudly (:class:`ControlOverflow`) rather
  than silently losing a mark echo or a digit.
* Caller audio: each μ-law frame goes μ-law 8 kHz -> PCM16 (``ulaw_decode``) -> the local VAD
  (at 8 kHz: cheapest, and telephone speech has nothing above 4 kHz) -> ONE stateful
  ``Resampler(8000, input_rate)`` per call -> ``CallerAudio`` for SonicSession, which writes each
  one to the stream as one unit. A write costs far more than the event it carries, and callers
  are quiet for much of a call, so quiet audio may wait and go ``quiet_batch_ms`` at a time, but
  only when the wait cannot delay what the model listens for:

  - never while there is sound (:attr:`EnergyVad.active`: speech, or a window loud enough to
    begin it): the first loud frame releases everything held, and sound over an answer being
    played goes frame by frame, so Sonic hears onsets and barge-in as soon as they arrive;
  - quiet audio is held only while the assistant's audio is being played (a ``mark`` echoed in
    the last :data:`_PLAYING_WINDOW_S`: the caller's turn is over), while the caller has made no
    sound since the last mark echo (the assistant spoke last: no turn of the caller's is waiting
    to end), or once the caller has been quiet for longer than the model's longest end-of-turn
    pause (:data:`_ENDPOINTING_GUARD_S`), so the silence that ends a caller's turn is never held
    back;
  - sound in the caller's own turn (no answer playing) goes ``speech_batch_ms`` at a time: no
    barge-in can be delayed then, and the turn's end is decided on the silence that follows,
    which is not held. The first loud frame after quiet still goes at once, with what was held.

  VAD events become ``CallerSpeechStarted/Stopped`` for TurnTaker with times on the anyio clock
  (each frame anchors the VAD at its arrival minus its duration), so their times stay those of
  the samples.
* Ends: ``stop`` -> return normally (reason ``caller_hangup``); a broken socket ->
  ``socket_closed``, return. A peer's fault (:class:`~actors.errors.RemoteProtocolError`: a binary
  or oversized frame, bytes that do not decode, an invalid or out-of-order Twilio message, a
  control flood) is recorded (``kind:field``, see :mod:`actors.call.outcome`), the socket is
  closed AT ONCE with the matching code, and the actor returns: the close frame goes out before
  the supervisor stops SonicSession, and the fault travels as the journal's end reason, not as a
  traceback. TwilioIngress is a significant TEMPORARY child: any exit ends the call.
* No per-frame logging: frames, bytes, gaps are counted and shown in :meth:`statistics`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final, assert_never, final

import anyio
import structlog

from actors.call._snapshot import with_counters
from actors.call.outcome import outcome_for_end_reason, peer_fault_end_reason
from actors.call.protocol import (
    CallerAudio,
    CallerDtmf,
    CallerSpeechStarted,
    CallerSpeechStopped,
    MarkEchoed,
    SonicControl,
    TurnControl,
)
from actors.errors import PeerFlood, RemoteProtocolError, ResourceClosed
from actors.runtime import Actor, ActorSnapshot, Mailbox
from actors.wire import (
    MediaFormat,
    StartMetadata,
    TwilioConnected,
    TwilioDtmf,
    TwilioMark,
    TwilioMedia,
    TwilioStart,
    TwilioStop,
    TwilioStreamValidator,
    decode_twilio_inbound,
)
from audiocodec import EnergyVad, Resampler, SpeechEnd, SpeechStart, ulaw_decode

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from actors.call.ports import CallIdentity, TwilioSocket
    from actors.call.protocol import PlaybackControl
    from actors.call.report import CallJournal

__all__ = ["ControlOverflow", "TwilioIngress"]

_log = structlog.get_logger("actors.call.twilio_ingress")
_INBOUND_RATE: Final = 8000
# Marks echo every playback chunk (100 ms by default) while the assistant's audio plays.
_PLAYING_WINDOW_S: Final = 0.5
# Nova 2 Sonic waits 1.5 s (HIGH), 1.75 s (MEDIUM) or 2 s (LOW) of silence before it answers
# (user guide, "Turn-taking controllability"); holding silence back before then could delay it.
_ENDPOINTING_GUARD_S: Final = 2.5


class ControlOverflow(PeerFlood):
    """A control mailbox the ingress feeds was full: the peer sent more DTMF digits or mark echoes
    than the call can take in (or the mailbox's reader has been stuck for seconds)."""


@final
class TwilioIngress(Actor[None]):
    """Reads the socket; see the module docstring.

    Args:
        socket: the Twilio socket (this actor is its only reader).
        identity: the call's identity (primes the order validator).
        input_rate: Sonic's input sample rate.
        quiet_batch_ms: quiet caller audio is held back until this much (ms) is waiting.
        speech_batch_ms: sound in the caller's own turn is held back until this much is waiting.
        sonic_audio / sonic_control / turn_control / playback_control: peers' mailboxes.
        journal: the call's flight recorder (end reason).
    """

    def __init__(
        self,
        *,
        socket: TwilioSocket,
        identity: CallIdentity,
        input_rate: int,
        quiet_batch_ms: int = 20,
        speech_batch_ms: int = 20,
        sonic_audio: Mailbox[CallerAudio],
        sonic_control: Mailbox[SonicControl],
        turn_control: Mailbox[TurnControl],
        playback_control: Mailbox[PlaybackControl],
        journal: CallJournal,
    ) -> None:
        super().__init__("twilio_ingress")
        self._socket = socket
        self._identity = identity
        self._input_rate = input_rate
        self._sonic_audio = sonic_audio
        self._sonic_control = sonic_control
        self._turn_control = turn_control
        self._playback_control = playback_control
        self._journal = journal
        self._validator = _primed_validator(identity)
        self._resampler = Resampler(_INBOUND_RATE, input_rate)
        self._vad = EnergyVad(_INBOUND_RATE)
        # PCM16 at 8 kHz: two bytes per sample.
        self._quiet_bytes = max(1, quiet_batch_ms * _INBOUND_RATE * 2 // 1000)
        self._speech_bytes = max(1, speech_batch_ms * _INBOUND_RATE * 2 // 1000)
        self._was_active = False
        self._pending = bytearray()
        self._last_mark_at = -math.inf
        self._last_sound_at = -math.inf
        self.bytes_in = 0
        self._speech_began: float | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Read until ``stop``, a broken socket or a peer's fault. Blocks on the socket."""
        self.state = "reading"
        task_status.started()
        try:
            await self._read()
        except RemoteProtocolError as exc:
            await self._peer_fault(exc)

    async def _peer_fault(self, exc: RemoteProtocolError) -> None:
        """Record the fault, then close the socket with its code before anything else stops."""
        self._journal.end(peer_fault_end_reason(exc), anyio.current_time(), str(exc))
        self.state = exc.kind
        ending = outcome_for_end_reason(self._journal.end_reason or "")
        # Bounded by the socket's own close timeout; the peer is at fault, so no traceback.
        await self._socket.close(ending.close_code, ending.close_reason)

    async def _read(self) -> None:
        while True:
            try:
                data = await self._socket.receive()
            except ResourceClosed as exc:
                self._journal.end("socket_closed", anyio.current_time())
                _log.info("ingress.socket_closed", cause=type(exc).__name__)
                self.state = "socket_closed"
                return
            now = anyio.current_time()
            self.bytes_in += len(data)
            msg = decode_twilio_inbound(data)
            self._validator.feed(msg)
            self.messages_in += 1
            match msg:
                case TwilioMedia(media=media):
                    self._on_media(media.payload, now)
                case TwilioMark(mark=mark):
                    self._last_mark_at = now
                    self._send_control(self._playback_control, MarkEchoed(name=mark.name, at=now))
                case TwilioDtmf(dtmf=dtmf):
                    self._send_control(self._sonic_control, CallerDtmf(digit=dtmf.digit, at=now))
                case TwilioStop():
                    self._journal.end("caller_hangup", now)
                    _log.info("ingress.stopped", frames=self._validator.frames)
                    self.state = "stopped"
                    return
                case TwilioConnected() | TwilioStart():  # the validator rejects these here
                    raise AssertionError("validator let a second connected/start through")
                case _:
                    assert_never(msg)

    def _on_media(self, ulaw: bytes, now: float) -> None:
        pcm8 = ulaw_decode(ulaw)
        vad = self._vad
        # Anchor the VAD on our clock: the frame's first sample played len/8 ms before arrival.
        for event in vad.process(pcm8, now_ms=now * 1000.0 - len(ulaw) / 8.0):
            match event:
                case SpeechStart(began_ms=began):
                    self._speech_began = began
                    msg: TurnControl = CallerSpeechStarted(started_at=began / 1000.0, at=now)
                case SpeechEnd(ended_ms=ended):
                    began = ended if self._speech_began is None else self._speech_began
                    msg = CallerSpeechStopped(
                        ended_at=ended / 1000.0, speech_ms=ended - began, at=now
                    )
                case _:
                    assert_never(event)
            self._send_control(self._turn_control, msg)
        pending = self._pending
        playing = now - self._last_mark_at <= _PLAYING_WINDOW_S
        # How much may wait before this frame goes (0: now, with anything held).
        if vad.active:
            onset = not self._was_active
            self._was_active = True
            self._last_sound_at = now
            hold_bytes = 0 if onset or playing else self._speech_bytes
        else:
            self._was_active = False
            quiet_hold = (
                playing
                or self._last_sound_at < self._last_mark_at
                or now - self._last_sound_at >= _ENDPOINTING_GUARD_S
            )
            hold_bytes = self._quiet_bytes if quiet_hold else 0
        if not pending and len(pcm8) >= hold_bytes:
            release = pcm8  # nothing held: no copy
        else:
            pending += pcm8
            if len(pending) < hold_bytes:
                return
            release = bytes(pending)
            pending.clear()
        pcm = self._resampler.process(release)
        if pcm:
            self.send_to_nowait(
                self._sonic_audio, CallerAudio(pcm=pcm, rate=self._input_rate, at=now)
            )

    def _send_control[T](self, mailbox: Mailbox[T], msg: T) -> None:
        if not self.send_to_nowait(mailbox, msg):
            raise ControlOverflow(f"control mailbox {mailbox.name} is full", field=mailbox.name)

    def statistics(self) -> ActorSnapshot:
        """The runtime snapshot plus frames, bytes, gaps and the VAD's state."""
        stats = self._validator.statistics()
        return with_counters(
            super().statistics(),
            frames=stats.frames,
            media_frames=stats.media_frames,
            dtmf_frames=stats.dtmf_frames,
            mark_frames=stats.mark_frames,
            sequence_gaps=stats.sequence_gaps,
            missing_chunks=stats.missing_chunks,
            bytes_in=self.bytes_in,
            caller_speaking=self._vad.speaking,
        )


def _primed_validator(identity: CallIdentity) -> TwilioStreamValidator:
    """A validator that has seen the ``connected`` and ``start`` the gateway consumed."""
    validator = TwilioStreamValidator()
    validator.feed(TwilioConnected(protocol="Call", version="1.0.0"))
    validator.feed(
        TwilioStart(
            sequence_number=identity.start_sequence_number,
            stream_sid=identity.stream_sid,
            start=StartMetadata(
                account_sid=identity.account_sid,
                stream_sid=identity.stream_sid,
                call_sid=identity.call_sid,
                tracks=["inbound"],
                custom_parameters=dict(identity.custom_parameters),
                media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
            ),
        )
    )
    return validator
