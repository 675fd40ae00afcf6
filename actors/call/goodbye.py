"""The goodbye prompt a call hears when the gateway stops and cannot wait for it any longer.

Theory of operation: :func:`play_goodbye` runs after the call's actors have stopped, so nothing
else reads or writes the socket. ``clear`` drops whatever assistant audio Twilio still buffers,
the clip goes out as ``media`` chunks followed by one ``mark``, and Twilio echoes the mark once the
clip has played. We wait for that echo (or the caller's ``stop``), bounded by the clip's length
plus a second of slack, so a peer that never echoes does not hold the shutdown. A socket that
fails on the way means the caller is gone: nothing to say goodbye to, no error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio

from actors.errors import RemoteProtocolError, ResourceClosed
from actors.wire import (
    TwilioMark,
    TwilioStop,
    decode_twilio_inbound,
    encode_twilio_clear,
    encode_twilio_mark,
    encode_twilio_media,
)

if TYPE_CHECKING:
    from actors.call.ports import TwilioSocket

__all__ = ["GOODBYE_MARK", "play_goodbye"]

GOODBYE_MARK: Final = "goodbye"
_SLACK_S: Final = 1.0
_ULAW_BYTES_PER_MS: Final = 8


async def play_goodbye(
    socket: TwilioSocket,
    stream_sid: str,
    ulaw: bytes,
    *,
    chunk_ms: int,
    mark: str = GOODBYE_MARK,
    clear: bool = True,
    slack_s: float = _SLACK_S,
) -> bool:
    """Play ``ulaw`` (raw 8 kHz μ-law) to the caller; blocks until it has played.

    Args:
        mark: the closing mark's name.
        clear: drop the audio Twilio still buffers first; False lets it play out before the clip
            (``slack_s`` must then cover it).
        slack_s: added to the clip's length to bound the wait for the echo.

    Returns:
        True when Twilio echoed the closing mark (the caller heard the clip to its end); False
        when the clip is empty, the caller hung up, the socket failed, or the bound ran out.
    """
    if not ulaw:
        return False
    chunk = _ULAW_BYTES_PER_MS * chunk_ms
    with anyio.move_on_after(len(ulaw) / (_ULAW_BYTES_PER_MS * 1000) + slack_s):
        try:
            if clear:
                await socket.send(encode_twilio_clear(stream_sid))
            for offset in range(0, len(ulaw), chunk):
                await socket.send(encode_twilio_media(stream_sid, ulaw[offset : offset + chunk]))
            await socket.send(encode_twilio_mark(stream_sid, mark))
            while True:
                match decode_twilio_inbound(await socket.receive()):
                    case TwilioMark(mark=echo) if echo.name == mark:
                        return True
                    case TwilioStop():
                        return False
                    case _:
                        pass  # caller audio and older marks: nobody needs them any more
        except (ResourceClosed, RemoteProtocolError):
            return False
    return False
