"""Fixtures for the gateway tests: a small real call behind the call seam, and Twilio frames.

:class:`EchoCall` is a test implementation of :class:`gateway.registry.LiveCall`: it reads the
socket like a TwilioIngress would (wire decoder + stream validator), echoes each caller media
payload back as outbound media, and ends on ``stop``. Malformed frames raise the wire error, so the
gateway's handling of a failing call is exercised for real.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest
import structlog

from actors.wire import (
    TwilioConnected,
    TwilioMedia,
    TwilioMessageError,
    TwilioStart,
    TwilioStop,
    decode_twilio_inbound,
    encode_twilio_media,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors.call.ports import CallIdentity, TwilioSocket


class EchoStatistics(msgspec.Struct, frozen=True, kw_only=True):
    call_sid: str
    frames_in: int
    frames_out: int


class EchoCall:
    def __init__(self, socket: TwilioSocket, identity: CallIdentity) -> None:
        self.socket = socket
        self.identity = identity
        self.frames_in = 0
        self.frames_out = 0
        self.running = anyio.Event()
        self.ended = anyio.Event()
        self._scope = anyio.CancelScope()

    async def run(self) -> None:
        self.running.set()
        try:
            with self._scope:
                await self._echo()
            if self._scope.cancel_called:  # say_goodbye: the gateway is stopping
                await self.socket.close(1001, "going away")
        finally:
            self.ended.set()

    def say_goodbye(self) -> None:
        self._scope.cancel()

    async def _echo(self) -> None:
        while True:
            msg = decode_twilio_inbound(await self.socket.receive())
            self.frames_in += 1
            match msg:
                case TwilioMedia():
                    await self.socket.send(
                        encode_twilio_media(self.identity.stream_sid, msg.media.payload)
                    )
                    self.frames_out += 1
                case TwilioStop():
                    return
                case TwilioConnected() | TwilioStart():
                    raise TwilioMessageError("out of order", field="event")
                case _:
                    pass

    def caller_audio_dropped_ms(self) -> float:
        return 0.0

    def statistics(self) -> EchoStatistics:
        return EchoStatistics(
            call_sid=self.identity.call_sid, frames_in=self.frames_in, frames_out=self.frames_out
        )

    def debug_view(self, *, reveal_pii: bool) -> EchoStatistics:
        del reveal_pii
        return self.statistics()


class CallLog:
    """A call factory that records every call it built."""

    def __init__(self) -> None:
        self.calls: list[EchoCall] = []
        self._changed: anyio.Event | None = None

    def __call__(self, socket: TwilioSocket, identity: CallIdentity) -> EchoCall:
        call = EchoCall(socket, identity)
        self.calls.append(call)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return call

    async def wait_for_calls(self, count: int) -> None:
        """Block until ``count`` calls were built (bounded by 10 s)."""
        with anyio.fail_after(10):
            while len(self.calls) < count:
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()


@pytest.fixture
def call_log() -> CallLog:
    return CallLog()


def _json(obj: object) -> str:
    return msgspec.json.encode(obj).decode()


def connected_frame() -> str:
    return _json({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_frame(call_sid: str, stream_sid: str, **custom: str) -> str:
    return _json(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": custom,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media_frame(stream_sid: str, seq: int, payload: bytes) -> str:
    return _json(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "media": {
                "track": "inbound",
                "chunk": str(seq - 1),
                "timestamp": str((seq - 2) * 20),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


def stop_frame(call_sid: str, stream_sid: str, seq: int) -> str:
    return _json(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid},
        }
    )


class Frames:
    """Twilio inbound frames as Twilio encodes them (numbers as strings)."""

    connected = staticmethod(connected_frame)
    start = staticmethod(start_frame)
    media = staticmethod(media_frame)
    stop = staticmethod(stop_frame)


@pytest.fixture
def frames() -> Frames:
    return Frames()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger and structlog back as they were after a test that configures them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
