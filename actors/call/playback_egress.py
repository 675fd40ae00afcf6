"""PlaybackEgress: the ONLY writer to the Twilio socket; a thin shell around :class:`PlayoutQueue`.

Rules:

* One loop, no polling: wait for the next message (control first: ``ClearPlayback`` and mark
  echoes never queue behind model audio) until the queue's next send deadline, an ABSOLUTE time
  (``move_on_at``), so pacing does not drift with processing time. After each wake-up, everything
  due is sent (``poll``).
* Model audio (PCM at Sonic's output rate) is converted here, with ONE stateful resampler per call
  (:class:`AssistantAudioEncoder`), as it arrives: the data mailbox is always drained at once into
  the local paced queue, so SonicSession never waits on playback (Sonic's one event stream also
  carries the barge-in signals; back-pressuring it would delay them behind audio). Converting here
  rather than in TurnTaker keeps model audio to one mailbox hop (each hop costs microseconds per
  message).
* The greeting (turn 0, generation 0) is queued and its first chunks are sent before this actor
  reports ready: the greeting never waits for the Sonic session, which opens concurrently.
* An intent's prompt (``PlayPrompt``, already 8 kHz μ-law) is queued as a complete turn and goes
  out on the same wake-up: TurnTaker sent the ``ClearPlayback`` that makes room for it first, on
  the same control mailbox.
* Sends ``media`` + ``mark`` per chunk and ``clear`` with the wire encoders; tells TurnTaker when a
  turn starts and finishes playing (heard position); records clears, first media and playback
  results in the journal. A socket that is gone ends this actor normally (``socket_closed``): the
  call ends (significant child), nothing is retried on a dead socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never, final

import anyio
import structlog

from actors.call._snapshot import with_counters
from actors.call.playback import (
    AssistantAudioEncoder,
    PlayoutOutput,
    PlayoutQueue,
    SendClear,
    SendMark,
    SendMedia,
)
from actors.call.protocol import (
    GREETING_TURN_ID,
    AssistantAudio,
    AssistantAudioEnded,
    ClearPlayback,
    MarkEchoed,
    PlaybackControl,
    PlaybackData,
    PlaybackFinished,
    PlaybackStarted,
    PlayPrompt,
    TurnControl,
)
from actors.errors import MailboxClosed, ResourceClosed
from actors.runtime import Actor, ActorSnapshot, Mailbox
from actors.wire import encode_twilio_clear, encode_twilio_mark, encode_twilio_media

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from actors.call.ports import TwilioSocket
    from actors.call.report import CallJournal

__all__ = ["PlaybackEgress"]

_log = structlog.get_logger("actors.call.playback_egress")


class _SocketGone(Exception):
    """Internal: the socket refused a send; unwinds to run()."""


@final
class PlaybackEgress(Actor[PlaybackControl | PlaybackData]):
    """Paces assistant audio to Twilio; see the module docstring.

    Args:
        socket: the Twilio socket (this actor is its only writer).
        stream_sid: the stream's sid, stamped on every outbound frame.
        greeting_ulaw: raw 8 kHz μ-law played as turn 0 at start (empty: no greeting).
        lead_ms / chunk_ms: pacing (see :class:`PlayoutQueue`).
        output_rate: Sonic's output sample rate (the encoder adapts if a chunk says otherwise).
        control / data: this actor's mailboxes; turn_control: TurnTaker's.
        journal: the call's flight recorder.
    """

    def __init__(
        self,
        *,
        socket: TwilioSocket,
        stream_sid: str,
        greeting_ulaw: bytes,
        lead_ms: float,
        chunk_ms: int,
        output_rate: int,
        control: Mailbox[PlaybackControl],
        data: Mailbox[PlaybackData],
        turn_control: Mailbox[TurnControl],
        journal: CallJournal,
    ) -> None:
        super().__init__("playback_egress", inbox=data, control=control)
        self._socket = socket
        self._sid = stream_sid
        self._greeting = greeting_ulaw
        self._queue = PlayoutQueue(lead_ms=lead_ms, chunk_ms=chunk_ms)
        self._encoder = AssistantAudioEncoder(output_rate)
        self._turn_control = turn_control
        self._journal = journal
        self.frames_out = 0
        self.bytes_out = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Play until the call ends; blocks on mailboxes, deadlines and the socket."""
        try:
            now = anyio.current_time()
            # A restarted instance must not replay the greeting.
            if self._greeting and self.restarts == 0:
                self._queue.enqueue(GREETING_TURN_ID, self._greeting)
                await self._perform(self._queue.end_turn(GREETING_TURN_ID, now))
                await self._perform(self._queue.poll(now))
            self.state = "playing" if not self._queue.is_idle() else "idle"
            task_status.started()
            await self._loop()
        except _SocketGone:
            self._journal.end("socket_closed", anyio.current_time())
            self.state = "socket_closed"
            _log.info("playback.socket_closed")

    async def _loop(self) -> None:
        queue = self._queue
        while True:
            try:
                msg = await self.receive_until(queue.next_deadline(anyio.current_time()))
            except MailboxClosed:
                return
            now = anyio.current_time()
            if msg is not None:
                await self._perform(self._handle(msg, now))
            await self._perform(queue.poll(now))
            self.state = "idle" if queue.is_idle() else "playing"

    def _handle(self, msg: PlaybackControl | PlaybackData, now: float) -> list[PlayoutOutput]:
        queue = self._queue
        match msg:
            case AssistantAudio(turn_id=turn_id, pcm=pcm, rate=rate):
                if queue.is_stale(turn_id):  # late audio of a cleared turn: never convert it
                    queue.count_stale(len(pcm) * 500.0 / rate)
                    return []
                queue.enqueue(turn_id, self._encoder.encode(pcm, rate))
                return []
            case AssistantAudioEnded(turn_id=turn_id):
                if queue.is_stale(turn_id):
                    return []
                tail = self._encoder.end_turn()
                if tail:
                    queue.enqueue(turn_id, tail)
                return queue.end_turn(turn_id, now)
            case ClearPlayback(generation=generation, through_turn_id=through):
                self._encoder.discard()
                return queue.clear(generation, through, now)
            case PlayPrompt(turn_id=turn_id, ulaw=ulaw):
                queue.enqueue(turn_id, ulaw)
                return queue.end_turn(turn_id, now)
            case MarkEchoed(name=name):
                return queue.mark_echoed(name, now)
            case _:
                assert_never(msg)

    async def _perform(self, outputs: list[PlayoutOutput]) -> None:
        for out in outputs:
            match out:
                case SendMedia(payload=payload):
                    await self._send(encode_twilio_media(self._sid, payload))
                    if self._journal.first_media_at is None:
                        self._journal.first_media_at = anyio.current_time()
                case SendMark(name=name):
                    await self._send(encode_twilio_mark(self._sid, name))
                case SendClear(generation=generation):
                    await self._send(encode_twilio_clear(self._sid))
                    sent_at = anyio.current_time()
                    self._journal.clears_sent[generation] = sent_at
                    _log.info(
                        "playback.cleared",
                        generation=generation,
                        dropped_ms=self._queue.stats.ms_dropped_by_clear,
                    )
                case PlaybackStarted():
                    await self.send_to(self._turn_control, out)
                case PlaybackFinished():
                    self._journal.playbacks[out.turn_id] = out
                    await self.send_to(self._turn_control, out)
                case _:
                    assert_never(out)

    async def _send(self, frame: bytes) -> None:
        try:
            await self._socket.send(frame)
        except ResourceClosed as exc:
            raise _SocketGone from exc
        self.frames_out += 1
        self.bytes_out += len(frame)

    def statistics(self) -> ActorSnapshot:
        """The runtime snapshot plus pacing and heard-accounting counters."""
        q = self._queue
        s = q.stats
        return with_counters(
            super().statistics(),
            generation=q.generation,
            queued_ms=q.queued_ms,
            lead_ms=round(q.lead_ms(anyio.current_time()), 1),
            pending_marks=q.pending_marks,
            frames_out=self.frames_out,
            bytes_out=self.bytes_out,
            chunks_sent=s.chunks_sent,
            ms_sent=s.ms_sent,
            max_lead_ms=s.max_lead_ms,
            marks_echoed=s.marks_echoed,
            marks_stale=s.marks_stale,
            clears=s.clears,
            ms_dropped_by_clear=s.ms_dropped_by_clear,
            ms_stale_audio=s.ms_stale_audio,
            ms_dropped_overflow=s.ms_dropped_overflow,
            underruns=s.underruns,
        )
