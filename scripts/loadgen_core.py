"""The load generator's sans-I/O core: client WebSocket frames, Twilio messages, one caller.

Nothing here does I/O or reads a clock: time is an argument (``now``, seconds on any monotonic
origin). The asyncio shell is ``scripts/loadgen.py``; ``scripts/bench_load.py`` reads the results.

Theory of operation:

* **Frames out.** A client must mask (RFC 6455 §5.3); each call uses one fixed masking key, so a
  frame is ``header + key + payload XOR keystream`` and the keystream for a given length is built
  once (:func:`mask`). The per-frame path never touches the ``websockets`` library (only the
  handshake does, in the shell). Twilio's ``media`` frames cannot all be rendered ahead of time:
  ``sequenceNumber`` is shared with the caller's ``mark`` echoes and the speech/silence choice
  follows the conversation. So each call renders its JSON templates once, every audio payload is
  base64-encoded once for the whole process, and a send formats three integers into the template
  and masks it: about 2 µs for a 20 ms ``media`` frame on a 2-core development VM, where framing
  and masking alone take 1.3 µs against 2.7 µs for ``websockets``' ``Frame.serialize`` (tests
  check the bytes are the same); one ``transport.write`` per frame.
* **Frames in.** :class:`FrameReader` cuts the gateway's unmasked frames out of the byte stream;
  :func:`parse_gateway_message` keeps only what the caller model needs from a Twilio outbound
  message (``media`` payload length, ``mark`` name, ``clear``) and never decodes base64.
* **Listening.** :class:`Listener` is Twilio's playback queue as the caller hears it: audio plays in
  real time from when it arrives on an idle line; a mark completes once everything queued before
  it has played (at once on an idle line); ``clear`` drops queued audio and completes every pending
  mark. An *answer* runs from its first media until the caller speaks again; within an answer,
  audio arriving more than ``underrun_gap_s`` after the line ran dry is a playback underrun (the
  caller heard a gap).
* **Talking.** :class:`Caller` is one caller's conversation, advanced every 20 ms by
  :meth:`Caller.next_frame`: wait for the greeting to finish playing, say the utterance, wait for
  the answer to finish playing (or a timeout), pause, speak again, until hung up. It records the
  peer-side figures: greeting time (``start`` sent -> first media), response time (last speech
  frame sent -> first media of the answer), underruns.
"""

from __future__ import annotations

import base64
import enum
import functools
import struct
from collections import deque
from typing import Final, final

import msgspec

__all__ = [
    "FRAME_BYTES",
    "FRAME_S",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "CallMessages",
    "CallResult",
    "Caller",
    "FrameReader",
    "GatewayMessage",
    "Listener",
    "Phase",
    "TurnResult",
    "Underrun",
    "WireError",
    "client_frame",
    "encode_b64_frames",
    "mask",
    "parse_gateway_message",
]

FRAME_S: Final = 0.020
FRAME_BYTES: Final = 160  # 20 ms of 8 kHz μ-law
ULAW_BYTES_PER_S: Final = 8000

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

MAX_MESSAGE_BYTES: Final = 1 << 20


class WireError(Exception):
    """The gateway sent something a Twilio peer would reject (bad framing, oversized message)."""


# ------------------------------------------------------------------------------ WebSocket framing


@functools.lru_cache(maxsize=4096)
def _keystream(key: bytes, length: int) -> int:
    return int.from_bytes((key * (length // 4 + 1))[:length], "big")


def mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` repeated (RFC 6455 §5.3); also unmasks."""
    n = len(data)
    if n == 0:
        return b""
    return (int.from_bytes(data, "big") ^ _keystream(key, n)).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final, masked client frame (what ``websockets`` sends for ``payload`` with ``key``)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + mask(payload, key)


@final
class FrameReader:
    """Cuts server frames out of a byte stream; reassembles fragmented messages.

    :meth:`feed` returns complete messages as ``(opcode, payload)``: text and binary messages
    (fragments joined) and control frames (close, ping, pong) as they come.
    """

    __slots__ = ("_buf", "_frag_op", "_frags")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._frags: list[bytes] = []
        self._frag_op = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add received bytes; return the messages they completed.

        Raises:
            WireError: reserved bits or opcodes, a masked server frame, an oversized message.
        """
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b1 = buf[pos]
            b2 = buf[pos + 1]
            length = b2 & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if b2 & 0x80:
                raise WireError("masked frame from the server")
            if b1 & 0x70:
                raise WireError("reserved bits set (no extension was negotiated)")
            if length > MAX_MESSAGE_BYTES:
                raise WireError(f"frame of {length} bytes")
            if end - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            out.extend(self._message(b1 & 0x80 != 0, b1 & 0x0F, payload))
        if pos:
            del buf[:pos]
        return out

    def _message(self, fin: bool, opcode: int, payload: bytes) -> list[tuple[int, bytes]]:
        if opcode >= OP_CLOSE:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG) or not fin:
                raise WireError(f"bad control frame (opcode {opcode}, fin {fin})")
            return [(opcode, payload)]
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
            raise WireError(f"reserved opcode {opcode}")
        if opcode == OP_CONT:
            if not self._frags:
                raise WireError("continuation frame without a first fragment")
        elif self._frags:
            raise WireError("new message before the last one ended")
        else:
            self._frag_op = opcode
        if fin and not self._frags:
            return [(opcode, payload)]
        self._frags.append(payload)
        if sum(len(f) for f in self._frags) > MAX_MESSAGE_BYTES:
            raise WireError("oversized fragmented message")
        if not fin:
            return []
        joined = b"".join(self._frags)
        self._frags = []
        return [(self._frag_op, joined)]


# ------------------------------------------------------------------------------ Twilio messages


def encode_b64_frames(ulaw: bytes) -> list[bytes]:
    """Split μ-law audio into 20 ms frames (last one padded with silence), each base64-encoded."""
    frames = [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        frames[-1] += b"\xff" * (FRAME_BYTES - len(frames[-1]))
    return [base64.b64encode(frame) for frame in frames]


class _StartMetadata(msgspec.Struct, rename="camel", kw_only=True):
    account_sid: str
    stream_sid: str
    call_sid: str
    tracks: list[str]
    custom_parameters: dict[str, str]
    media_format: dict[str, object]


class _Start(msgspec.Struct, tag_field="event", tag="start", rename="camel", kw_only=True):
    sequence_number: str
    stream_sid: str
    start: _StartMetadata


_ENCODER: Final = msgspec.json.Encoder()


@final
class CallMessages:
    """One call's outbound Twilio messages as masked client frames, numbered in send order.

    Twilio numbers every message after ``connected`` with one ``sequenceNumber`` (as a JSON string,
    ``start`` is ``"1"``) and numbers ``media`` chunks from 1 with ``timestamp`` in ms of audio.

    Args:
        call_sid, stream_sid, account_sid: the call's identity.
        custom_parameters: ``start.customParameters`` (what the webhook's TwiML put in).
        key: this call's 4-byte masking key.
    """

    __slots__ = (
        "_chunk",
        "_key",
        "_mark_tpl",
        "_media_tpl",
        "_seq",
        "_start",
        "_stop",
        "call_sid",
    )

    def __init__(
        self,
        *,
        call_sid: str,
        stream_sid: str,
        account_sid: str,
        custom_parameters: dict[str, str],
        key: bytes,
    ) -> None:
        if len(key) != 4:
            raise ValueError("a masking key is 4 bytes")
        self.call_sid = call_sid
        self._key = key
        self._seq = 0
        self._chunk = 0
        start = _Start(
            sequence_number="1",
            stream_sid=stream_sid,
            start=_StartMetadata(
                account_sid=account_sid,
                stream_sid=stream_sid,
                call_sid=call_sid,
                tracks=["inbound"],
                custom_parameters=custom_parameters,
                media_format={"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            ),
        )
        self._start = _ENCODER.encode(start)
        sid = stream_sid.encode()
        self._media_tpl = (
            b'{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
            b'"timestamp":"%d","payload":"%s"},"streamSid":"' + sid + b'"}'
        )
        self._mark_tpl = (
            b'{"event":"mark","sequenceNumber":"%d","streamSid":"'
            + sid
            + b'","mark":{"name":"%s"}}'
        )
        self._stop = (
            b'{"event":"stop","sequenceNumber":"%d","streamSid":"'
            + sid
            + b'","stop":{"accountSid":"'
            + account_sid.encode()
            + b'","callSid":"'
            + call_sid.encode()
            + b'"}}'
        )

    def connected(self) -> bytes:
        """The ``connected`` frame (no sequence number)."""
        return client_frame(
            OP_TEXT, b'{"event":"connected","protocol":"Call","version":"1.0.0"}', self._key
        )

    def start(self) -> bytes:
        """The ``start`` frame (sequence number 1)."""
        self._seq = 1
        return client_frame(OP_TEXT, self._start, self._key)

    def media(self, payload_b64: bytes) -> bytes:
        """The next ``media`` frame carrying ``payload_b64`` (one 20 ms frame, base64)."""
        self._seq += 1
        self._chunk += 1
        chunk = self._chunk
        body = self._media_tpl % (self._seq, chunk, (chunk - 1) * 20, payload_b64)
        return client_frame(OP_TEXT, body, self._key)

    def mark(self, name: bytes) -> bytes:
        """A ``mark`` echo (``name`` as the gateway sent it, JSON-escaped)."""
        self._seq += 1
        return client_frame(OP_TEXT, self._mark_tpl % (self._seq, name), self._key)

    def stop(self) -> bytes:
        """The ``stop`` frame; nothing follows it."""
        self._seq += 1
        return client_frame(OP_TEXT, self._stop % self._seq, self._key)

    def close(self, code: int = 1000) -> bytes:
        """A close frame with ``code`` and no reason."""
        return client_frame(OP_CLOSE, struct.pack("!H", code), self._key)

    def pong(self, payload: bytes) -> bytes:
        """The answer to a ping."""
        return client_frame(OP_PONG, payload, self._key)

    @property
    def frames_sent(self) -> int:
        """``media`` frames built so far."""
        return self._chunk


class GatewayMessage(enum.IntEnum):
    """What a gateway -> Twilio message is, as far as the caller cares."""

    MEDIA = 1
    MARK = 2
    CLEAR = 3
    OTHER = 4


class _Media(msgspec.Struct):
    payload: msgspec.Raw  # raw JSON string: its length is enough, no base64 decode


class _Mark(msgspec.Struct):
    name: msgspec.Raw  # kept JSON-escaped: it goes back out verbatim


class _PeerOutbound(msgspec.Struct):
    event: str
    media: _Media | None = None
    mark: _Mark | None = None


_OUTBOUND: Final = msgspec.json.Decoder(_PeerOutbound)


def parse_gateway_message(data: bytes) -> tuple[GatewayMessage, int, bytes]:
    """Classify one gateway text message.

    Returns:
        ``(MEDIA, audio bytes, b"")``, ``(MARK, 0, name as JSON-escaped bytes)``,
        ``(CLEAR, 0, b"")`` or ``(OTHER, 0, b"")`` (unknown events: the shell counts them).

    Raises:
        WireError: not JSON, or a ``media``/``mark`` without its object.
    """
    try:
        msg = _OUTBOUND.decode(data)
    except msgspec.DecodeError as exc:
        raise WireError(f"bad gateway message: {exc}") from exc
    if msg.event == "media":
        if msg.media is None:
            raise WireError("media without media.payload")
        raw = bytes(msg.media.payload)
        if len(raw) < 2 or raw[0] != 0x22 or raw[-1] != 0x22:
            raise WireError("media.payload is not a string")
        b64 = len(raw) - 2
        pad = (raw[-2] == 0x3D) + (raw[-3] == 0x3D) if b64 >= 2 else 0
        return GatewayMessage.MEDIA, b64 // 4 * 3 - pad, b""
    if msg.event == "mark":
        if msg.mark is None:
            raise WireError("mark without mark.name")
        name = bytes(msg.mark.name)
        if len(name) < 2 or name[0] != 0x22:
            raise WireError("mark.name is not a string")
        return GatewayMessage.MARK, 0, name[1:-1]
    if msg.event == "clear":
        return GatewayMessage.CLEAR, 0, b""
    return GatewayMessage.OTHER, 0, b""


# ------------------------------------------------------------------------------ listening


@final
class Listener:
    """Twilio's playback of the gateway's audio, as the caller hears it (see module docstring).

    Args:
        underrun_gap_s: a dry line longer than this within an answer is an underrun.
    """

    __slots__ = (
        "_gap",
        "_marks",
        "answer_open",
        "cleared_marks",
        "clears",
        "media_bytes",
        "media_messages",
        "play_end",
    )

    def __init__(self, *, underrun_gap_s: float = 0.040) -> None:
        self._gap = underrun_gap_s
        self._marks: deque[tuple[float, bytes]] = deque()
        self.play_end = float("-inf")  # when everything queued has played
        self.answer_open = False
        self.media_messages = 0
        self.media_bytes = 0
        self.clears = 0
        self.cleared_marks = 0

    def media(self, nbytes: int, now: float) -> tuple[bool, float]:
        """Queue ``nbytes`` of μ-law arriving at ``now``.

        Returns:
            ``(started, gap)``: ``started`` when this opened a new answer; ``gap`` is how long the
            line had been dry within the open answer when it exceeded the underrun threshold
            (0.0 otherwise).
        """
        self.media_messages += 1
        self.media_bytes += nbytes
        started = not self.answer_open
        gap = 0.0
        if started:
            self.answer_open = True
        elif now - self.play_end > self._gap:
            gap = now - self.play_end
        self.play_end = max(self.play_end, now) + nbytes / ULAW_BYTES_PER_S
        return started, gap

    def mark(self, name: bytes, now: float) -> list[bytes]:
        """Queue a mark behind the audio; return the marks due now (this one if the line is idle)."""
        self._marks.append((self.play_end, name))
        return self.due(now)

    def clear(self, now: float) -> list[bytes]:
        """Drop queued audio; return every pending mark (all complete at once)."""
        self.clears += 1
        self.play_end = min(self.play_end, now)
        names = [name for _, name in self._marks]
        self.cleared_marks += len(names)
        self._marks.clear()
        return names

    def due(self, now: float) -> list[bytes]:
        """Marks whose audio has finished playing by ``now``, in order."""
        marks = self._marks
        if not marks or marks[0][0] > now:
            return []
        out: list[bytes] = []
        while marks and marks[0][0] <= now:
            out.append(marks.popleft()[1])
        return out

    def idle_for(self, now: float) -> float:
        """How long the line has been dry (0.0 while audio plays)."""
        return max(0.0, now - self.play_end)

    def end_answer(self) -> None:
        """The caller speaks again: the next audio is a new answer."""
        self.answer_open = False


# ------------------------------------------------------------------------------ talking


class Phase(enum.Enum):
    """Where the caller is in the conversation."""

    GREETING = "greeting"
    SPEAKING = "speaking"
    WAITING = "waiting"
    LISTENING = "listening"
    PAUSE = "pause"


class TurnResult(msgspec.Struct, array_like=True, gc=False):
    """One utterance: last speech frame sent; first answer media (None: no answer); answer end."""

    speech_end: float
    first_media: float | None = None
    answer_end: float | None = None


class Underrun(msgspec.Struct, array_like=True, gc=False):
    """A gap in an answer: when audio resumed, the gap (s), the generator's own lateness then (s)."""

    at: float
    gap: float
    generator_late: float


class CallResult(msgspec.Struct, kw_only=True):
    """What one call observed (times on the shared monotonic clock, seconds)."""

    call_sid: str
    connect_at: float
    open_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    greeting_first_media: float | None = None
    greeting_end: float | None = None
    turns: list[TurnResult] = msgspec.field(default_factory=list)
    underruns: list[Underrun] = msgspec.field(default_factory=list)
    unexpected_answers: int = 0
    frames_sent: int = 0
    media_received: int = 0
    media_bytes: int = 0
    marks_echoed: int = 0
    clears: int = 0
    close_code: int | None = None


@final
class Caller:
    """One caller's conversation (see module docstring); the shell calls :meth:`next_frame` every
    20 ms and forwards the gateway's messages.

    Args:
        speech_frames: frames in the utterance.
        answer_end_idle_s: a dry line for this long means the answer (or greeting) has finished.
        pause_s: silence between the end of an answer and the next utterance.
        answer_timeout_s: give up waiting for (or listening to) an answer after this long.
        greeting_timeout_s: speak anyway if the greeting has not finished by then.
        underrun_gap_s: see :class:`Listener`.
    """

    __slots__ = (
        "_answer_end_idle",
        "_answer_timeout",
        "_deadline",
        "_greeting_timeout",
        "_pause",
        "_speech_frames",
        "_spoken",
        "listener",
        "phase",
        "result",
    )

    def __init__(
        self,
        result: CallResult,
        *,
        speech_frames: int,
        answer_end_idle_s: float = 0.4,
        pause_s: float = 1.0,
        answer_timeout_s: float = 10.0,
        greeting_timeout_s: float = 10.0,
        underrun_gap_s: float = 0.040,
    ) -> None:
        self.result = result
        self.listener = Listener(underrun_gap_s=underrun_gap_s)
        self.phase = Phase.GREETING
        self._speech_frames = speech_frames
        self._answer_end_idle = answer_end_idle_s
        self._pause = pause_s
        self._answer_timeout = answer_timeout_s
        self._greeting_timeout = greeting_timeout_s
        self._deadline = 0.0
        self._spoken = 0

    def started(self, now: float) -> None:
        """``start`` was sent at ``now``: the greeting is expected."""
        self.result.open_at = now
        self.phase = Phase.GREETING
        self._deadline = now + self._greeting_timeout

    def next_frame(self, now: float) -> int:
        """Advance the conversation to ``now``; return the speech frame index to send, -1 for
        silence. The shell sends the frame right away, so a last speech frame ends the utterance.
        """
        phase = self.phase
        listener = self.listener
        if phase is Phase.GREETING:
            played = self.result.greeting_first_media is not None
            if played and listener.idle_for(now) >= self._answer_end_idle:
                self.result.greeting_end = listener.play_end
                return self._speak(now)
            if now >= self._deadline:
                return self._speak(now)
            return -1
        if phase is Phase.SPEAKING:
            index = self._spoken
            self._spoken += 1
            if self._spoken >= self._speech_frames:
                self.result.turns.append(TurnResult(speech_end=now))
                self.phase = Phase.WAITING
                self._deadline = now + self._answer_timeout
            return index
        if phase is Phase.WAITING:
            if now >= self._deadline:
                self._rest(now)
            return -1
        if phase is Phase.LISTENING:
            if listener.idle_for(now) >= self._answer_end_idle:
                self.result.turns[-1].answer_end = listener.play_end
                self._rest(now)
            elif now >= self._deadline:
                self._rest(now)
            return -1
        if now >= self._deadline:  # Phase.PAUSE
            return self._speak(now)
        return -1

    def _speak(self, now: float) -> int:
        self.listener.end_answer()
        self.phase = Phase.SPEAKING
        self._spoken = 0
        return self.next_frame(now)

    def _rest(self, now: float) -> None:
        self.phase = Phase.PAUSE
        self._deadline = now + self._pause

    def on_media(self, nbytes: int, now: float, generator_late: float = 0.0) -> None:
        """The gateway sent ``nbytes`` of audio, received at ``now``."""
        started, gap = self.listener.media(nbytes, now)
        result = self.result
        if gap:
            result.underruns.append(Underrun(at=now, gap=gap, generator_late=generator_late))
        phase = self.phase
        if phase is Phase.WAITING:
            result.turns[-1].first_media = now
            self.phase = Phase.LISTENING
        elif phase is Phase.GREETING:
            if result.greeting_first_media is None:
                result.greeting_first_media = now
        elif started:
            result.unexpected_answers += 1

    def on_mark(self, name: bytes, now: float) -> list[bytes]:
        """The gateway sent a mark; return the marks to echo now."""
        return self.listener.mark(name, now)

    def on_clear(self, now: float) -> list[bytes]:
        """The gateway cleared playback; return every pending mark (echo them all now)."""
        return self.listener.clear(now)

    def due_marks(self, now: float) -> list[bytes]:
        """Marks whose audio has played by ``now``."""
        return self.listener.due(now)
