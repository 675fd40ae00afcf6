"""Sans-I/O order checker for one Twilio Media Streams socket.

Theory of operation: a socket carries ``connected`` → ``start`` →
(``media`` | ``dtmf`` | ``mark``)* → ``stop``. :class:`TwilioStreamValidator` is fed every decoded
inbound frame in arrival order and raises :class:`TwilioMessageError` at the first frame that breaks
the protocol; it does no I/O and keeps no clock.

What is an error and what is only counted:

* Error: a frame in the wrong phase (a second ``connected`` or ``start``, media before ``start``,
  anything after ``stop``), a ``streamSid`` that differs from the one ``start`` announced (field
  ``streamSid``, or ``start.streamSid`` when ``start`` contradicts itself), a ``sequenceNumber``
  that does not increase (duplicate or reordered frame), a ``media.chunk`` that does not increase
  within its track.
* Counted, not an error: a jump forward in ``sequenceNumber`` (``sequence_gaps``) or in
  ``media.chunk`` (``chunk_gaps`` jumps, ``missing_chunks`` chunks). Twilio drops caller audio under
  upstream congestion (warning 31930); the call goes on, and the counters say it happened.
"""

from __future__ import annotations

from typing import Literal, assert_never, final

import msgspec

from actors.wire.twilio_media import (
    TwilioConnected,
    TwilioDtmf,
    TwilioInbound,
    TwilioMark,
    TwilioMedia,
    TwilioMessageError,
    TwilioStart,
    TwilioStop,
)

__all__ = ["TwilioStreamPhase", "TwilioStreamStatistics", "TwilioStreamValidator"]

TwilioStreamPhase = Literal["awaiting_connected", "awaiting_start", "streaming", "stopped"]


class TwilioStreamStatistics(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Immutable snapshot of a :class:`TwilioStreamValidator`."""

    phase: TwilioStreamPhase
    stream_sid: str | None
    last_sequence_number: int | None
    frames: int
    media_frames: int
    dtmf_frames: int
    mark_frames: int
    sequence_gaps: int
    chunk_gaps: int
    missing_chunks: int


@final
class TwilioStreamValidator:
    """Checks the order and consistency of inbound frames on one socket.

    Attributes:
        phase: where the stream is in ``connected → start → ... → stop``.
        stream_sid: the ``streamSid`` announced by ``start`` (None before it).
        sequence_gaps: jumps forward in ``sequenceNumber`` (frames Twilio numbered but never sent).
        chunk_gaps: jumps forward in ``media.chunk`` within a track.
        missing_chunks: media chunks skipped by those jumps, in total.
    """

    __slots__ = (
        "_last_chunk",
        "chunk_gaps",
        "dtmf_frames",
        "frames",
        "last_sequence_number",
        "mark_frames",
        "media_frames",
        "missing_chunks",
        "phase",
        "sequence_gaps",
        "stream_sid",
    )

    def __init__(self) -> None:
        self.phase: TwilioStreamPhase = "awaiting_connected"
        self.stream_sid: str | None = None
        self.last_sequence_number: int | None = None
        self.frames = 0
        self.media_frames = 0
        self.dtmf_frames = 0
        self.mark_frames = 0
        self.sequence_gaps = 0
        self.chunk_gaps = 0
        self.missing_chunks = 0
        self._last_chunk: dict[str, int] = {}  # per media track

    def feed(self, msg: TwilioInbound) -> None:
        """Check one frame, in arrival order, and update the counters.

        Raises:
            TwilioMessageError: the frame breaks the order or the stream's identity; ``field``
                names the event or field. The validator's state is left as it was before the frame.
        """
        match msg:
            case TwilioConnected():
                self._expect_phase("awaiting_connected", "connected")
                self.phase = "awaiting_start"
            case TwilioStart():
                self._expect_phase("awaiting_start", "start")
                if msg.start.stream_sid != msg.stream_sid:
                    raise TwilioMessageError(
                        "start names two different streams", field="start.streamSid"
                    )
                self._advance_sequence(msg.sequence_number)
                self.stream_sid = msg.stream_sid
                self.phase = "streaming"
            case TwilioMedia():
                self._check_streaming("media", msg.stream_sid, msg.sequence_number)
                self._advance_chunk(msg.media.track, msg.media.chunk)
                self._advance_sequence(msg.sequence_number)
                self.media_frames += 1
            case TwilioDtmf():
                self._check_streaming("dtmf", msg.stream_sid, msg.sequence_number)
                self._advance_sequence(msg.sequence_number)
                self.dtmf_frames += 1
            case TwilioMark():
                self._check_streaming("mark", msg.stream_sid, msg.sequence_number)
                self._advance_sequence(msg.sequence_number)
                self.mark_frames += 1
            case TwilioStop():
                self._check_streaming("stop", msg.stream_sid, msg.sequence_number)
                self._advance_sequence(msg.sequence_number)
                self.phase = "stopped"
            case _:
                assert_never(msg)
        self.frames += 1

    def statistics(self) -> TwilioStreamStatistics:
        """Return an immutable snapshot of the phase and counters."""
        return TwilioStreamStatistics(
            phase=self.phase,
            stream_sid=self.stream_sid,
            last_sequence_number=self.last_sequence_number,
            frames=self.frames,
            media_frames=self.media_frames,
            dtmf_frames=self.dtmf_frames,
            mark_frames=self.mark_frames,
            sequence_gaps=self.sequence_gaps,
            chunk_gaps=self.chunk_gaps,
            missing_chunks=self.missing_chunks,
        )

    def _expect_phase(self, phase: TwilioStreamPhase, event: str) -> None:
        if self.phase != phase:
            raise TwilioMessageError(
                f"unexpected {event} frame in phase {self.phase}", field="event"
            )

    def _check_streaming(self, event: str, stream_sid: str, sequence_number: int) -> None:
        # All checks run before any state changes, so a rejected frame leaves no trace.
        self._expect_phase("streaming", event)
        if stream_sid != self.stream_sid:
            raise TwilioMessageError(
                f"{event} frame for another stream than start announced", field="streamSid"
            )
        last = self.last_sequence_number
        if last is not None and sequence_number <= last:
            raise TwilioMessageError(
                f"{event} frame sequenceNumber {sequence_number} after {last}",
                field="sequenceNumber",
            )

    def _advance_sequence(self, sequence_number: int) -> None:
        last = self.last_sequence_number
        if last is not None and sequence_number > last + 1:
            self.sequence_gaps += 1
        self.last_sequence_number = sequence_number

    def _advance_chunk(self, track: str, chunk: int) -> None:
        last = self._last_chunk.get(track)
        if last is not None:
            if chunk <= last:
                raise TwilioMessageError(
                    f"media chunk {chunk} after {last} on track {track}", field="media.chunk"
                )
            if chunk > last + 1:
                self.chunk_gaps += 1
                self.missing_chunks += chunk - last - 1
        self._last_chunk[track] = chunk
