"""The simulated Twilio peer: drives a gateway over a real WebSocket exactly as Twilio does.

Theory of operation. One :meth:`TwilioPeer.run` is one phone call. Given the voice webhook's URL,
it first POSTs the webhook as Twilio does (signed over the public webhook URL when it has an auth
token) and takes the ``<Stream><Parameter>`` values of the TwiML answer into
``start.customParameters`` (the per-call stream token among them). It then opens the media
WebSocket (``X-Twilio-Signature`` over the public ``wss://`` URL when it has an auth token), sends
``connected`` and ``start``, then runs five tasks in one task group:

* **frames**: caller audio as 20 ms ``media`` frames on an ABSOLUTE schedule (``deadline += 20 ms``),
  silence whenever the caller is not speaking, because Twilio always streams. ``sequenceNumber``,
  ``chunk`` and ``timestamp`` go out as strings (via :func:`actors.wire.encode_twilio_inbound`).
* **script**: the scenario's caller steps, in order (say, pause, wait for an answer, barge in, DTMF,
  hang up); after the last step the caller hangs up.
* **receiver**: our outbound frames: ``media`` and ``mark`` go into the sans-I/O
  :class:`~gateway.replay.playback.PlaybackBuffer`, ``clear`` empties it and echoes every pending
  mark at once. Anything Twilio would reject (bad JSON, extra fields, wrong ``streamSid``) ends the
  call with an error, as Twilio does (31951).
* **playout**: while audio is queued, advances the buffer on a 20 ms absolute tick and echoes marks
  whose audio has played; while idle it sleeps on an event set by the receiver (no spinning).
* **stream end**: waits for :meth:`TwilioPeer.end_stream` (Twilio's REST API ran new TwiML on the
  call or hung it up), then sends ``stop`` and closes, as Twilio ends the stream then.

Every outbound frame goes through one lock, so sequence numbers leave in order. Everything notable
lands on a :class:`Timeline` with offsets from the moment the peer began to connect; the
measurements (per-turn latency, barge-in stop time, heard audio) are derived in
:mod:`gateway.replay.measure`. Time is ``anyio.current_time()`` only.
"""

from __future__ import annotations

import functools
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from typing import TYPE_CHECKING, Final, assert_never, final

import anyio
import httpx
import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from actors.wire import (
    DtmfPayload,
    MarkPayload,
    MediaFormat,
    MediaPayload,
    StartMetadata,
    StopMetadata,
    TwilioConnected,
    TwilioDtmf,
    TwilioInbound,
    TwilioMark,
    TwilioMedia,
    TwilioMessageError,
    TwilioOutboundClear,
    TwilioOutboundMark,
    TwilioOutboundMedia,
    TwilioStart,
    TwilioStop,
    decode_twilio_outbound,
    encode_twilio_inbound,
)
from gateway.replay.audio import FRAME_BYTES
from gateway.replay.playback import (
    AnswerEnded,
    AnswerPlayback,
    AnswerStarted,
    MarkDone,
    PlaybackBuffer,
    PlaybackEvent,
)
from gateway.replay.scenario import (
    BargeIn,
    Dtmf,
    Hangup,
    Pause,
    PeerSettings,
    Say,
    WaitForAnswer,
)
from gateway.signature import compute_signature

if TYPE_CHECKING:
    from collections.abc import Callable

    from websockets.asyncio.client import ClientConnection

    from gateway.replay.scenario import CallerStep

__all__ = ["PeerBargeIn", "PeerResult", "TimelineEvent", "TurnRecord", "TwilioPeer"]

FRAME_S: Final = 0.020
ULAW_SILENCE_FRAME: Final = b"\xff" * FRAME_BYTES
MAX_MESSAGE_BYTES: Final = 1 << 20


class TimelineEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One thing that happened during the call, ``at_ms`` after the peer began to connect."""

    at_ms: float
    kind: str
    detail: str = ""


class TurnRecord(msgspec.Struct, kw_only=True, gc=False):
    """One caller utterance and the assistant's reaction (times in s, ``anyio.current_time()``)."""

    step: int
    speech_start: float
    speech_end: float
    barge_in: bool = False
    first_media: float | None = None
    first_heard: float | None = None


class PeerBargeIn(msgspec.Struct, kw_only=True, gc=False):
    """The caller started talking over an answer: when, and how the gateway stopped playback."""

    step: int
    answer: int
    signal: float
    heard_bytes_at_signal: int
    clear: float | None = None


class PeerResult(msgspec.Struct, kw_only=True):
    """Everything the peer observed during one call (times in s, ``anyio.current_time()``)."""

    origin: float
    call_sid: str
    stream_sid: str
    timeline: list[TimelineEvent] = msgspec.field(default_factory=list)
    rejected_status: int | None = None
    connected: bool = False
    start_sent: float | None = None
    first_media: float | None = None
    closed_by: str = ""  # "peer" (we hung up) or "gateway"
    close_code: int | None = None
    close_reason: str = ""
    error: str | None = None
    frames_sent: int = 0
    media_received: int = 0
    marks_received: int = 0
    marks_echoed: int = 0
    marks_cleared: int = 0
    clears: list[float] = msgspec.field(default_factory=list)
    turns: list[TurnRecord] = msgspec.field(default_factory=list)
    barge_ins: list[PeerBargeIn] = msgspec.field(default_factory=list)
    answers: list[AnswerPlayback] = msgspec.field(default_factory=list)
    heard_bytes: int = 0
    received_bytes: int = 0
    cleared_bytes: int = 0


class _StepFailed(Exception):
    """A caller step could not complete (e.g. no answer within its timeout)."""


@final
class TwilioPeer:
    """One simulated Twilio call against a gateway's media WebSocket.

    Args:
        url: where to connect (``ws://127.0.0.1:port/twilio/media``).
        public_url: the public ``wss://`` URL Twilio would have dialled (what gets signed).
        auth_token: the Twilio auth token to sign with; None sends no signature.
        steps: the caller's script.
        audio_for: returns the μ-law audio of a ``say`` / ``barge_in`` step.
        settings: identities, custom parameters, whether to sign.
        answer_gap_s: idle time after which an answer counts as finished.
        connect_timeout_s: bound on the webhook and on the upgrade.
        webhook_url: where to POST the voice webhook before the upgrade (``http://.../twilio/voice``);
            None skips it (the socket then carries no stream token).
        public_webhook_url: the public URL Twilio would have POSTed (what gets signed).
        on_hangup: called when the caller hangs up (``stop`` sent), for whoever models the call.
    """

    def __init__(
        self,
        *,
        url: str,
        public_url: str,
        auth_token: str | None,
        steps: list[CallerStep],
        audio_for: Callable[[Say | BargeIn], bytes],
        settings: PeerSettings | None = None,
        answer_gap_s: float = 0.3,
        connect_timeout_s: float = 5.0,
        webhook_url: str | None = None,
        public_webhook_url: str | None = None,
        on_hangup: Callable[[], None] | None = None,
    ) -> None:
        self._url = url
        self._on_hangup = on_hangup
        self._stream_end = anyio.Event()
        self._stream_end_reason = ""
        self._webhook_url = webhook_url
        self._public_webhook_url = public_webhook_url or webhook_url
        self._stream_parameters: dict[str, str] = {}
        self._public_url = public_url
        self._token = auth_token
        self._steps = steps
        self._audio_for = audio_for
        self._settings = settings if settings is not None else PeerSettings()
        self._connect_timeout = connect_timeout_s
        self._buffer = PlaybackBuffer(answer_gap_s=answer_gap_s)
        self._origin = 0.0
        self._ws: ClientConnection | None = None
        self._send_lock = anyio.Lock()
        self._sequence = 0
        self._chunk = 0
        self._speech: deque[bytes] = deque()
        self._speech_done = anyio.Event()
        self._speech_end = 0.0
        self._audio_arrived = anyio.Event()
        self._answers_changed = anyio.Event()
        self._started = 0
        self._ended = 0
        self._hung_up = False
        call_sid = self._settings.call_sid or f"CA{uuid.uuid4().hex}"
        stream_sid = self._settings.stream_sid or f"MZ{uuid.uuid4().hex}"
        self.result = PeerResult(origin=0.0, call_sid=call_sid, stream_sid=stream_sid)

    # ------------------------------------------------------------------ entry point

    async def run(self) -> PeerResult:
        """Place the call, run the caller's script to the end, and return what was observed.

        Blocks for the length of the call. Never raises for call failures (refused upgrade,
        protocol errors, timeouts): they are recorded in the result's ``error`` /
        ``rejected_status``. Cancellation propagates.
        """
        self._origin = anyio.current_time()
        self.result.origin = self._origin
        webhook = self._webhook_url if self._settings.answer_webhook else None
        if webhook is not None and not await self._answer_webhook(webhook):
            return self.result
        self._record("connect", self._url)
        headers: dict[str, str] = {}
        if self._token is not None and self._settings.sign_requests:
            headers["X-Twilio-Signature"] = compute_signature(self._token, self._public_url)
        try:
            with anyio.fail_after(self._connect_timeout):
                ws = await connect(
                    self._url,
                    additional_headers=headers,
                    max_size=MAX_MESSAGE_BYTES,
                    close_timeout=2.0,
                    open_timeout=None,
                    compression=None,
                )
        except InvalidStatus as refused:
            self.result.rejected_status = refused.response.status_code
            self._record("rejected", f"HTTP {refused.response.status_code}")
            return self.result
        except (OSError, WebSocketException, TimeoutError) as failed:
            self.result.error = f"connect failed: {failed!r}"
            self._record("error", self.result.error)
            return self.result
        self._ws = ws
        self.result.connected = True
        self._record("upgraded")
        try:
            await self._converse(ws)
        finally:
            with anyio.move_on_after(2.0, shield=True):
                await ws.close()
            self._finish(ws)
        return self.result

    async def _answer_webhook(self, url: str) -> bool:
        """POST the voice webhook; keep the TwiML's ``<Parameter>`` values. False when refused."""
        form = {
            "CallSid": self.result.call_sid,
            "AccountSid": self._settings.account_sid,
            "From": self._settings.from_,
            "To": self._settings.to,
            "CallStatus": "ringing",
        }
        headers: dict[str, str] = {}
        if self._token is not None and self._settings.sign_requests:
            assert self._public_webhook_url is not None
            headers["X-Twilio-Signature"] = compute_signature(
                self._token, self._public_webhook_url, form
            )
        self._record("webhook", url)
        try:
            async with httpx.AsyncClient(timeout=self._connect_timeout) as client:
                response = await client.post(url, data=form, headers=headers)
        except httpx.HTTPError as failed:
            self.result.error = f"webhook failed: {failed!r}"
            self._record("error", self.result.error)
            return False
        if response.status_code != 200:
            self.result.rejected_status = response.status_code
            self._record("rejected", f"webhook HTTP {response.status_code}")
            return False
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError as bad:
            self.result.error = f"webhook answered malformed TwiML: {bad}"
            self._record("error", self.result.error)
            return False
        stream = root.find("./Connect/Stream")
        if stream is None:
            self.result.error = "webhook answered without <Connect><Stream>"
            self._record("error", self.result.error)
            return False
        self._stream_parameters = {
            p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")
        }
        return True

    async def _converse(self, ws: ClientConnection) -> None:
        # ``connected`` carries no sequence number; ``start`` is "1" (reference §2.1-2.2).
        await ws.send(
            encode_twilio_inbound(TwilioConnected(protocol="Call", version="1.0.0")), text=True
        )
        await self._send(self._start_message)
        self.result.start_sent = anyio.current_time()
        self._record("start sent", f"call {self.result.call_sid}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._receiver, ws, tg.cancel_scope)
            tg.start_soon(self._playout)
            tg.start_soon(self._frames)
            tg.start_soon(self._script, tg.cancel_scope)
            tg.start_soon(self._end_stream_when_asked)

    def end_stream(self, reason: str) -> None:
        """Twilio ends the media stream (the call runs new TwiML, or was hung up through the REST
        API): ``stop`` and a normal close follow; returns at once. No-op once the call is over."""
        self._stream_end_reason = reason
        self._stream_end.set()

    async def _end_stream_when_asked(self) -> None:
        await self._stream_end.wait()
        await self._hangup(self._stream_end_reason, by_caller=False)

    def _finish(self, ws: ClientConnection) -> None:
        now = anyio.current_time()
        self._handle_sync(self._buffer.close(now))
        result = self.result
        result.close_code = ws.close_code
        result.close_reason = ws.close_reason or ""
        self._record("closed", f"code {result.close_code} by {result.closed_by or 'gateway'}")
        result.answers = self._buffer.answers()
        result.heard_bytes = self._buffer.heard_bytes
        result.received_bytes = self._buffer.received_bytes
        result.cleared_bytes = self._buffer.cleared_bytes

    # ------------------------------------------------------------------ sending

    def _start_message(self, seq: int) -> TwilioInbound:
        settings = self._settings
        return TwilioStart(
            sequence_number=seq,
            stream_sid=self.result.stream_sid,
            start=StartMetadata(
                account_sid=settings.account_sid,
                stream_sid=self.result.stream_sid,
                call_sid=self.result.call_sid,
                tracks=["inbound"],
                custom_parameters={**self._stream_parameters, **settings.custom_parameters},
                media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
            ),
        )

    async def _send(self, build: Callable[[int], TwilioInbound], *, last: bool = False) -> None:
        """Send one inbound frame; the lock keeps sequence numbers in send order.

        After the caller hung up (``stop`` is the ``last`` frame) nothing else is sent: a frame
        that was waiting for the lock behind ``stop`` is dropped, as Twilio sends nothing after it.
        """
        assert self._ws is not None
        async with self._send_lock:
            if self._hung_up and not last:
                return
            self._sequence += 1
            await self._ws.send(encode_twilio_inbound(build(self._sequence)), text=True)

    def _media_message(self, chunk: int, frame: bytes, seq: int) -> TwilioInbound:
        return TwilioMedia(
            sequence_number=seq,
            stream_sid=self.result.stream_sid,
            media=MediaPayload(
                track="inbound", chunk=chunk, timestamp=(chunk - 1) * 20, payload=frame
            ),
        )

    def _mark_message(self, name: str, seq: int) -> TwilioInbound:
        return TwilioMark(
            sequence_number=seq, stream_sid=self.result.stream_sid, mark=MarkPayload(name=name)
        )

    async def _frames(self) -> None:
        """Stream 20 ms frames in real time on an absolute schedule; speech when queued."""
        deadline = anyio.current_time()
        while not self._hung_up:
            speaking = bool(self._speech)
            frame = self._speech.popleft() if speaking else ULAW_SILENCE_FRAME
            self._chunk += 1
            chunk = self._chunk
            await self._send(functools.partial(self._media_message, chunk, frame))
            self.result.frames_sent += 1
            if speaking and not self._speech:
                self._speech_end = anyio.current_time()
                self._speech_done.set()
            deadline += FRAME_S
            await anyio.sleep(max(0.0, deadline - anyio.current_time()))

    async def _speak(self, audio: bytes) -> tuple[float, float]:
        """Queue an utterance for the frame task; return when its last frame went out.

        Returns:
            (time the utterance was queued, time its last frame was sent).
        """
        start = anyio.current_time()
        frames = [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
        if frames and len(frames[-1]) < FRAME_BYTES:
            frames[-1] = frames[-1] + ULAW_SILENCE_FRAME[len(frames[-1]) :]
        if not frames:
            return start, start
        self._speech_done = anyio.Event()
        self._speech.extend(frames)
        await self._speech_done.wait()
        return start, self._speech_end

    # ------------------------------------------------------------------ the caller's script

    async def _script(self, scope: anyio.CancelScope) -> None:
        try:
            for index, step in enumerate(self._steps):
                if await self._step(index, step):
                    break
            else:
                await self._hangup("script done")
        except _StepFailed as failed:
            self.result.error = str(failed)
            self._record("error", str(failed))
            await self._hangup("step failed")
        with anyio.move_on_after(3.0):
            await self._wait_closed()
        scope.cancel()

    async def _step(self, index: int, step: CallerStep) -> bool:
        """Run one step; return True when the call is over (hang-up)."""
        match step:
            case Say():
                audio = self._audio_for(step)
                self._record("say", f"step {index}: {len(audio) // 8} ms")
                start, end = await self._speak(audio)
                self.result.turns.append(TurnRecord(step=index, speech_start=start, speech_end=end))
                self._record("speech end", f"step {index}")
            case Pause():
                await anyio.sleep(step.ms / 1000)
            case WaitForAnswer():
                with anyio.move_on_after(step.timeout_ms / 1000) as scope:
                    if step.until == "start":
                        await self._wait_answer_start()
                    else:
                        await self._wait_answer_end(await self._wait_answer_start())
                if scope.cancelled_caught:
                    raise _StepFailed(
                        f"step {index}: no answer {step.until} within {step.timeout_ms} ms"
                    )
            case BargeIn():
                answer = await self._wait_into_answer(index, step.at_ms, step.timeout_ms)
                audio = self._audio_for(step)
                now = anyio.current_time()
                current = self._buffer.current_answer()
                self.result.barge_ins.append(
                    PeerBargeIn(
                        step=index,
                        answer=answer,
                        signal=now,
                        heard_bytes_at_signal=current.heard_bytes if current is not None else 0,
                    )
                )
                self._record("barge-in", f"step {index}: {step.at_ms} ms into answer {answer}")
                start, end = await self._speak(audio)
                self.result.turns.append(
                    TurnRecord(step=index, speech_start=start, speech_end=end, barge_in=True)
                )
                self._record("speech end", f"step {index}")
            case Dtmf():
                await self._send(
                    lambda seq: TwilioDtmf(
                        sequence_number=seq,
                        stream_sid=self.result.stream_sid,
                        dtmf=DtmfPayload(track="inbound_track", digit=step.digit),
                    )
                )
                self._record("dtmf", f"step {index}")
            case Hangup():
                if step.at_ms is not None:
                    await self._wait_into_answer(index, step.at_ms, step.timeout_ms)
                await self._hangup(f"step {index}")
                return True
            case _:
                assert_never(step)
        return False

    async def _hangup(self, why: str, *, by_caller: bool = True) -> None:
        """Send ``stop`` and close normally, as Twilio does when the caller hangs up (or when the
        REST API ended the stream: ``by_caller`` False)."""
        if self._hung_up or self._ws is None:
            return
        self._hung_up = True
        if by_caller and self._on_hangup is not None:
            self._on_hangup()
        try:
            await self._send(
                lambda seq: TwilioStop(
                    sequence_number=seq,
                    stream_sid=self.result.stream_sid,
                    stop=StopMetadata(
                        account_sid=self._settings.account_sid, call_sid=self.result.call_sid
                    ),
                ),
                last=True,
            )
            self._record("stop sent", why)
            self.result.closed_by = self.result.closed_by or "peer"
            await self._ws.close(1000, "caller hung up")
        except ConnectionClosed:
            pass  # the gateway closed first; the receiver records it

    async def _wait_closed(self) -> None:
        assert self._ws is not None
        await self._ws.wait_closed()

    # ------------------------------------------------------------------ answers, as heard

    async def _wait_answers_changed(self) -> None:
        await self._answers_changed.wait()

    async def _wait_answer_start(self) -> int:
        """Return the index of the answer playing now, or wait for the next one to start."""
        while True:
            current = self._buffer.current_answer()
            if current is not None:
                return current.index
            await self._wait_answers_changed()

    async def _wait_answer_end(self, answer: int) -> None:
        while self._ended <= answer:
            await self._wait_answers_changed()

    async def _wait_into_answer(self, index: int, at_ms: int, timeout_ms: int) -> int:
        """Wait until ``at_ms`` into the current or next answer as heard; return its index.

        If the answer ends earlier, return at its end (the caller talks after it instead).
        """
        with anyio.move_on_after(timeout_ms / 1000) as scope:
            answer = await self._wait_answer_start()
        if scope.cancelled_caught:
            raise _StepFailed(f"step {index}: no answer started within {timeout_ms} ms")
        started = self._buffer.answers()[answer].started_at
        with anyio.move_on_after(max(0.0, started + at_ms / 1000 - anyio.current_time())):
            await self._wait_answer_end(answer)
        return answer

    # ------------------------------------------------------------------ receiving and playout

    async def _receiver(self, ws: ClientConnection, scope: anyio.CancelScope) -> None:
        try:
            async for data in ws:
                await self._on_frame(data)
        except ConnectionClosed:
            pass
        except TwilioMessageError as bad:
            self.result.error = f"gateway sent an invalid frame: {bad}"
            self._record("error", self.result.error)
            await ws.close(1008, "invalid message")  # Twilio answers with 31951 and ends
        if not self.result.closed_by:
            self.result.closed_by = "gateway"
        scope.cancel()

    async def _on_frame(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            raise TwilioMessageError("binary frame; Twilio expects JSON text", field="frame")
        msg = decode_twilio_outbound(data)
        if msg.stream_sid != self.result.stream_sid:
            raise TwilioMessageError(f"wrong streamSid {msg.stream_sid!r}", field="streamSid")
        now = anyio.current_time()
        match msg:
            case TwilioOutboundMedia():
                self.result.media_received += 1
                if self.result.first_media is None:
                    self.result.first_media = now
                    self._record("first media received")
                for turn in self.result.turns:
                    if turn.first_media is None and now >= turn.speech_end:
                        turn.first_media = now
                        self._record("first media after speech", f"step {turn.step}")
                events = self._buffer.enqueue_audio(len(msg.media.payload), now)
                self._audio_arrived.set()
            case TwilioOutboundMark():
                self.result.marks_received += 1
                events = self._buffer.enqueue_mark(msg.mark.name, now)
            case TwilioOutboundClear():
                self.result.clears.append(now)
                for barge in self.result.barge_ins:
                    if barge.clear is None:
                        barge.clear = now
                pending = len(self._buffer.pending_marks)
                self._record("clear received", f"{pending} pending marks echoed")
                events = self._buffer.clear(now)
            case _:
                assert_never(msg)
        await self._handle(events)

    async def _playout(self) -> None:
        """Advance the buffer on a 20 ms absolute tick while audio plays; sleep while idle."""
        tick: float | None = None
        while True:
            if self._audio_arrived.is_set():
                self._audio_arrived = anyio.Event()
            wake = self._buffer.next_wakeup()
            now = anyio.current_time()
            if self._buffer.busy:
                tick = (now if tick is None else tick) + FRAME_S
                await anyio.sleep(max(0.0, tick - now))
            else:
                tick = None
                arrived = self._audio_arrived
                if wake is None:
                    await arrived.wait()
                else:
                    with anyio.move_on_after(max(0.0, wake - now)):
                        await arrived.wait()
            await self._handle(self._buffer.advance(anyio.current_time()))

    async def _handle(self, events: list[PlaybackEvent]) -> None:
        for event in self._handle_sync(events):
            try:
                await self._send(functools.partial(self._mark_message, event.name))
            except ConnectionClosed:
                return
            self.result.marks_echoed += 1

    def _handle_sync(self, events: list[PlaybackEvent]) -> list[MarkDone]:
        """Record playback events; return the marks to echo."""
        echoes: list[MarkDone] = []
        for event in events:
            match event:
                case MarkDone():
                    echoes.append(event)
                    if event.cleared:
                        self.result.marks_cleared += 1
                    self._record_at(
                        event.at,
                        "mark echoed",
                        f"{event.name}{' (cleared)' if event.cleared else ''}",
                    )
                case AnswerStarted():
                    self._started += 1
                    for turn in self.result.turns:
                        if turn.first_heard is None and event.at >= turn.speech_end:
                            turn.first_heard = event.at
                    self._record_at(event.at, "answer start", f"answer {event.index}")
                    self._notify_answers()
                case AnswerEnded():
                    self._ended += 1
                    how = "interrupted" if event.interrupted else "played"
                    heard = event.heard_bytes // 8
                    self._record_at(
                        event.at, "answer end", f"answer {event.index}: {how}, heard {heard} ms"
                    )
                    self._notify_answers()
                case _:
                    assert_never(event)
        return echoes

    def _notify_answers(self) -> None:
        self._answers_changed.set()
        self._answers_changed = anyio.Event()

    # ------------------------------------------------------------------ timeline

    def _record(self, kind: str, detail: str = "") -> None:
        self._record_at(anyio.current_time(), kind, detail)

    def _record_at(self, at: float, kind: str, detail: str = "") -> None:
        self.result.timeline.append(
            TimelineEvent(at_ms=round((at - self._origin) * 1000, 1), kind=kind, detail=detail)
        )
