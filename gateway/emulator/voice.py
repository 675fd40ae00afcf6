"""Reply audio rendered once per distinct reply, sent as pre-encoded ``audioOutput`` frames.

Theory of operation. Synthesising a 2 s reply (:func:`audiocodec.speech_like`, 24 kHz) costs
50-100 ms of CPU; done on the event loop it stalls every stream of the process. So reply audio is
rendered once per distinct (output rate, length, utterance, chunk size) in a worker thread
(:data:`UTTERANCES` utterances, chosen by the reply text)
(:meth:`VoiceCache.get`; concurrent askers share one render) and kept in a small LRU cache, and
what is cached is already most of the wire bytes:

An ``audioOutput`` response frame is an event-stream message whose payload is
``{"bytes":"<base64 of the Nova JSON>"}``, and the Nova JSON is ``{"event":{"audioOutput":{...ids...,
"content":"<base64 PCM>"}}}``. Base64 of a concatenation is the concatenation of the base64s when
every part but the last is a multiple of 3 bytes long, and JSON allows whitespace after ``{``. So
:class:`AudioFrameEncoder` pads the ids part (``{"event":...,"content":"``) with spaces to a multiple
of 3 and base64s it once per audio block, and :func:`render_reply` base64s each chunk's tail
(``<base64 PCM>"}}}``) once per rendering: a frame is then a join of precomputed bytes, the
event-stream prelude and two CRC32s: 3.5 us for 100 ms of 24 kHz audio, against 24 us through
msgspec, base64 twice and ``smithy_aws_event_stream`` (one core of the 2-core development VM).
The frames decode to exactly the event the library path builds (differential test in
``tests/emulator/test_emulator_voice.py``).
"""

from __future__ import annotations

import base64
import collections
import struct
import zlib
from typing import Final, final

import anyio
from smithy_aws_event_stream.events import EventMessage

from actors.wire import AudioOutput, encode_output_event
from audiocodec import speech_like

__all__ = [
    "UTTERANCES",
    "AudioFrameEncoder",
    "RenderedReply",
    "VoiceCache",
    "chunk_bytes_for",
    "render_reply",
    "reply_seed",
]

_EVENT_HEADERS: Final = {
    ":message-type": "event",
    ":event-type": "chunk",
    ":content-type": "application/json",
}


def _header_block() -> bytes:
    # The event frame's header bytes, exactly as the library encodes them.
    empty = EventMessage(headers=_EVENT_HEADERS, payload=b"").encode()
    (headers_length,) = struct.unpack_from(">I", empty, 4)
    return empty[12 : 12 + headers_length]


_HEADERS: Final = _header_block()
_PAYLOAD_HEAD: Final = b'{"bytes":"'
_PAYLOAD_TAIL: Final = b'"}'
_CONTENT_TAIL: Final = b'"}}}'
_FIXED: Final = 12 + len(_HEADERS) + len(_PAYLOAD_HEAD) + len(_PAYLOAD_TAIL) + 4


UTTERANCES: Final = 16
"""Distinct utterances per (rate, length): the default persona's texts differ per turn number,
and rendering a new utterance for every turn of a long call would cost a render per turn."""


def chunk_bytes_for(rate: int, chunk_ms: int) -> int:
    """PCM bytes per ``audioOutput`` chunk of ``chunk_ms`` at ``rate`` (16-bit mono)."""
    return max(2, rate * chunk_ms // 1000 * 2)


def reply_seed(text: str) -> int:
    """The utterance a reply text is spoken with: equal texts sound the same."""
    return zlib.crc32(text.encode()) % UTTERANCES


@final
class RenderedReply:
    """One reply's audio, cut in output chunks, each pre-encoded as its frame payload's tail.

    Attributes:
        pcm_sizes: PCM bytes per chunk.
        tails: per chunk, ``base64(base64(pcm) + '"}}}')``.
        total_bytes: PCM bytes in all.
    """

    __slots__ = ("pcm_sizes", "tails", "total_bytes")

    def __init__(self, pcm_sizes: tuple[int, ...], tails: tuple[bytes, ...]) -> None:
        self.pcm_sizes = pcm_sizes
        self.tails = tails
        self.total_bytes = sum(pcm_sizes)


def render_reply(rate: int, ms: int, seed: int, chunk_bytes: int) -> RenderedReply:
    """Synthesise and pre-encode one reply (CPU-bound: call it from a worker thread)."""
    pcm = speech_like(rate, ms, seed)
    sizes: list[int] = []
    tails: list[bytes] = []
    for offset in range(0, len(pcm), chunk_bytes):
        chunk = pcm[offset : offset + chunk_bytes]
        sizes.append(len(chunk))
        tails.append(base64.b64encode(base64.b64encode(chunk) + _CONTENT_TAIL))
    return RenderedReply(tuple(sizes), tuple(tails))


type VoiceKey = tuple[int, int, int, int]


@final
class VoiceCache:
    """Rendered replies by (rate, ms, seed, chunk bytes), least recently used evicted first."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._cache: collections.OrderedDict[VoiceKey, RenderedReply] = collections.OrderedDict()
        self._rendering: dict[VoiceKey, anyio.Event] = {}
        # One render at a time: each holds the GIL for most of its 50-100 ms, and a burst of
        # concurrent renders (many sessions reaching their first turn together) would starve the
        # event loop for seconds.
        self._limiter = anyio.CapacityLimiter(1)
        self.renders = 0
        """Replies rendered so far (cache misses)."""

    async def get(self, rate: int, ms: int, seed: int, chunk_bytes: int) -> RenderedReply:
        """The rendered reply, rendering it in a worker thread on first use."""
        key = (rate, ms, seed, chunk_bytes)
        while True:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            pending = self._rendering.get(key)
            if pending is None:
                break
            await pending.wait()
        done = anyio.Event()
        self._rendering[key] = done
        try:
            # Shielded: a barge-in cancelling the asker must not waste the render.
            with anyio.CancelScope(shield=True):
                rendered = await anyio.to_thread.run_sync(render_reply, *key, limiter=self._limiter)
            self.renders += 1
            self._cache[key] = rendered
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        finally:
            del self._rendering[key]
            done.set()
        return rendered


@final
class AudioFrameEncoder:
    """Builds the ``audioOutput`` frames of one audio block from :class:`RenderedReply` tails."""

    __slots__ = ("_head", "_head_len")

    def __init__(
        self, *, session_id: str, prompt_name: str, completion_id: str, content_id: str
    ) -> None:
        event = AudioOutput(
            session_id=session_id,
            prompt_name=prompt_name,
            completion_id=completion_id,
            content_id=content_id,
            content=b"",
        )
        # The library's own field layout, up to and including the opening quote of "content".
        json = encode_output_event(event)
        if not json.endswith(b'""' + _CONTENT_TAIL[1:]):
            raise ValueError(f"unexpected audioOutput layout: {json[-16:]!r}")
        prefix = json[: -len(_CONTENT_TAIL)]
        pad = -len(prefix) % 3
        prefix = b"{" + b" " * pad + prefix[1:]
        self._head = _PAYLOAD_HEAD + base64.b64encode(prefix)
        self._head_len = len(self._head) - len(_PAYLOAD_HEAD)

    def frame(self, tail: bytes) -> bytes:
        """The whole event-stream frame for one pre-encoded chunk tail."""
        total = _FIXED + self._head_len + len(tail)
        prelude = struct.pack(">II", total, len(_HEADERS))
        start = prelude + zlib.crc32(prelude).to_bytes(4, "big") + _HEADERS + self._head
        crc = zlib.crc32(_PAYLOAD_TAIL, zlib.crc32(tail, zlib.crc32(start)))
        return b"".join((start, tail, _PAYLOAD_TAIL, crc.to_bytes(4, "big")))
