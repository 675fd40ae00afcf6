"""Settings of the Nova Sonic client: one frozen, validated object per deployment.

Rules: every value is checked when the object is built, and a bad one raises
:class:`actors.errors.ConfigError` naming the field (``sonic.input_rate``) and the expected form, so
a typo fails at start, not on the first call. Nothing here reads the environment: the gateway's
config layer builds these objects from TOML and ``SONIC_GATEWAY_*`` variables and passes them down.

Theory of operation: :class:`SonicSettings` describes one conversation (model, voice, prompt,
inference, audio formats, tools, endpoint, timing of handovers); :class:`PoolSettings` describes the
warm pool of :class:`~actors.sonic.connector.SonicConnector`. Both are plain data; the only logic is
validation and a few derived values (``batch_bytes``) used on the hot path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
import msgspec

from actors.errors import ConfigError
from actors.wire import EndpointingSensitivity

__all__ = [
    "EndpointingSensitivity",
    "PoolLevel",
    "PoolSettings",
    "SonicSettings",
    "SonicTool",
]

PoolLevel = Literal["connect", "stream"]

_RATES = (8000, 16000, 24000)
_FRAME_MS = 20  # the telephony frame: Twilio sends 20 ms, so batches are multiples of it


def _fail(field: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"sonic.{field}", expected, got)


@attrs.frozen
class SonicTool:
    """A tool the model may call.

    Attributes:
        name: the tool's name as the model sees it (letters, digits, ``_`` and ``-``).
        description: what the tool does, for the model.
        input_schema_json: the JSON Schema of the arguments, as a JSON *string* (Sonic's
            ``inputSchema.json`` is a string).
    """

    name: str
    description: str
    input_schema_json: str

    def __attrs_post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise _fail("tools.name", "a non-empty name of letters, digits, '_' or '-'", self.name)
        if not self.description:
            raise _fail("tools.description", "a non-empty description", self.description)
        try:
            schema = msgspec.json.decode(self.input_schema_json)
        except msgspec.DecodeError:
            raise _fail(
                "tools.input_schema_json", "a JSON Schema as a JSON string", self.input_schema_json
            ) from None
        if not isinstance(schema, dict):
            raise _fail("tools.input_schema_json", "a JSON object", self.input_schema_json)


@attrs.frozen
class PoolSettings:
    """The warm pool and the HTTP/2 connection pool of a :class:`~actors.sonic.connector.SonicConnector`.

    Attributes:
        size: how many warm entries to keep (0 disables the warm pool: every open is cold). At
            level ``"connect"`` an entry is room for one more stream on an open connection.
        level: ``"connect"`` pre-resolves config and credentials and keeps TLS + HTTP/2
            connections open with room for ``size`` more streams (no Bedrock stream, nothing
            billed); ``"stream"`` also pre-opens ``size`` Bedrock streams (invoke +
            ``await_output()``), which saves ~one round trip per call but keeps idle streams open
            (whether the service bills or keeps them is undocumented).
        max_idle_s: a pre-opened stream older than this is closed and replaced.
        refill: open a replacement in the background after each take.
        streams_per_connection: the most streams multiplexed over one HTTP/2 connection. The
            peer's SETTINGS_MAX_CONCURRENT_STREAMS lowers it per connection once received.
        max_connections: the most HTTP/2 connections accepting new streams (connections draining
            after a GOAWAY are not counted). ``max_connections * streams_per_connection`` streams
            at once; beyond that an open fails with the retryable ``connectionPoolFull``.
    """

    size: int = 2
    level: PoolLevel = "connect"
    max_idle_s: float = 60.0
    refill: bool = True
    streams_per_connection: int = 50
    max_connections: int = 8

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.size <= 64:
            raise _fail("pool.size", "an integer from 0 to 64", self.size)
        if self.level not in ("connect", "stream"):
            raise _fail("pool.level", "'connect' or 'stream'", self.level)
        if not 1.0 <= self.max_idle_s <= 420.0:
            raise _fail(
                "pool.max_idle_s", "seconds from 1 to 420 (below the 8-minute cap)", self.max_idle_s
            )
        if not 1 <= self.streams_per_connection <= 1000:
            raise _fail(
                "pool.streams_per_connection",
                "an integer from 1 to 1000",
                self.streams_per_connection,
            )
        if not 1 <= self.max_connections <= 64:
            raise _fail("pool.max_connections", "an integer from 1 to 64", self.max_connections)


@attrs.frozen
class SonicSettings:
    """Everything one Sonic conversation needs, validated at construction.

    Attributes:
        region: the AWS Region of the Bedrock runtime endpoint.
        model_id: the Bedrock model id (Nova 2 Sonic by default).
        voice_id: the output voice.
        system_prompt: the SYSTEM text block sent first in every session.
        max_tokens, top_p, temperature: inference configuration.
        endpointing_sensitivity: Nova 2 turn detection: HIGH answers soonest, LOW waits longest.
        input_rate: caller audio sample rate sent to Sonic (8000, 16000 or 24000 Hz).
        output_rate: assistant audio sample rate asked of Sonic (8000, 16000 or 24000 Hz).
            8000 both ways is the zero-resampling telephony mode; unverified for Nova 2.
        tools: the tools offered to the model (none by default).
        endpoint_uri: an endpoint override (``https://127.0.0.1:port`` for the emulator).
        ca_bundle: a PEM file trusted *for this client only* (the emulator's CA, a corporate
            proxy); the process trust store is left alone.
        tcp_nodelay: set TCP_NODELAY on the client's sockets (awscrt cannot; see transport.py):
            removes 20-25 ms p90 spikes of small events at 20 ms batching.
        audio_batch_ms: milliseconds of caller audio per ``audioInput`` event (multiple of 20);
            audio released several of these at once goes in events of up to 1024 samples
            (:data:`actors.sonic.protocol.MERGED_EVENT_SAMPLES`).
        quiet_batch_ms: while the caller is quiet (the local VAD hears no sound), caller audio
            is written to the stream this much at a time, as several ``audioInput`` events in one
            write; sound is written as it arrives. A multiple of 20; at most ``audio_batch_ms``
            turns the holding off.
        speech_batch_ms: while the caller speaks in their own turn (no answer playing), caller
            audio is written this much at a time; the first loud frame after quiet, and all
            sound while an answer plays (barge-in), are written at once. A multiple of 20; 20
            turns it off.
        handover_after_s: age of a stream at which the next one is prepared (6 of the 8 minutes).
        handover_grace_s: how long to wait for a turn boundary after that before switching anyway.
        handover_quiet_s: assistant silence after END_TURN that counts as a turn boundary.
        credential_refresh_margin_s: hand over this long before the stream's credentials expire.
        history_max_turns, history_max_bytes_per_turn, history_max_total_bytes: bounds of the
            text history replayed into a new session.
        replay_audio_ms: caller audio replayed into a new session (ring buffer length).
        close_timeout_s: bound on an orderly close (including the wait for ``completionEnd``).
        open_timeout_s: bound on opening a stream (invoke + ``await_output()``).
        stall_timeout_s: no output event for this long after an answer became due (a caller
            turn ended, a USER text was sent) is a stall (retryable ``stall``: the stream is
            replaced, with the history). 10 s is well past Sonic's end-of-turn pause (at most 2 s)
            plus the start of an answer; the service may stay quiet for as long as the caller
            does, so only a due answer arms the check. None disables it.
        max_reopen_attempts: consecutive failed reopens of a failed stream before the error goes
            to the supervisor (a next stream prepared for a handover is retried apart, for as long
            as the current stream lives).
        reopen_backoff_s: first backoff between reopen attempts (doubles each attempt).
    """

    region: str = "us-east-1"
    model_id: str = "amazon.nova-2-sonic-v1:0"
    voice_id: str = "matthew"
    system_prompt: str = "You are a helpful, concise voice assistant on a phone call."
    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7
    endpointing_sensitivity: EndpointingSensitivity = "MEDIUM"
    input_rate: int = 16000
    output_rate: int = 24000
    tools: tuple[SonicTool, ...] = ()
    endpoint_uri: str | None = None
    ca_bundle: Path | None = None
    tcp_nodelay: bool = True
    audio_batch_ms: int = 20
    quiet_batch_ms: int = 200
    speech_batch_ms: int = 100
    handover_after_s: float = 360.0
    handover_grace_s: float = 60.0
    handover_quiet_s: float = 1.0
    credential_refresh_margin_s: float = 180.0
    history_max_turns: int = 40
    history_max_bytes_per_turn: int = 1024
    history_max_total_bytes: int = 40 * 1024
    replay_audio_ms: int = 3000
    close_timeout_s: float = 2.0
    open_timeout_s: float = 10.0
    stall_timeout_s: float | None = 10.0
    max_reopen_attempts: int = 3
    reopen_backoff_s: float = 0.2

    def __attrs_post_init__(self) -> None:
        if not self.region or not all(c.isalnum() or c == "-" for c in self.region):
            raise _fail("region", "an AWS Region name like 'us-east-1'", self.region)
        if not self.model_id:
            raise _fail("model_id", "a Bedrock model id", self.model_id)
        if not self.voice_id or not self.voice_id.isalnum():
            raise _fail("voice_id", "a voice id like 'matthew'", self.voice_id)
        if not self.system_prompt:
            raise _fail("system_prompt", "a non-empty system prompt", self.system_prompt)
        if not 1 <= self.max_tokens <= 10_000:
            raise _fail("max_tokens", "an integer from 1 to 10000", self.max_tokens)
        if not 0.0 < self.top_p <= 1.0:
            raise _fail("top_p", "a number in (0, 1]", self.top_p)
        if not 0.0 <= self.temperature <= 1.0:
            raise _fail("temperature", "a number in [0, 1]", self.temperature)
        if self.endpointing_sensitivity not in ("HIGH", "MEDIUM", "LOW"):
            raise _fail(
                "endpointing_sensitivity", "HIGH, MEDIUM or LOW", self.endpointing_sensitivity
            )
        for name in ("input_rate", "output_rate"):
            if getattr(self, name) not in _RATES:
                raise _fail(name, "8000, 16000 or 24000", getattr(self, name))
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise _fail("tools", "tools with distinct names", names)
        if self.endpoint_uri is not None and not self.endpoint_uri.startswith("https://"):
            raise _fail(
                "endpoint_uri", "an https:// URI (HTTP/2 needs TLS with ALPN h2)", self.endpoint_uri
            )
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise _fail("ca_bundle", "the path of an existing PEM file", str(self.ca_bundle))
        if not (_FRAME_MS <= self.audio_batch_ms <= 200 and self.audio_batch_ms % _FRAME_MS == 0):
            raise _fail("audio_batch_ms", "a multiple of 20 from 20 to 200", self.audio_batch_ms)
        if not (_FRAME_MS <= self.quiet_batch_ms <= 400 and self.quiet_batch_ms % _FRAME_MS == 0):
            raise _fail("quiet_batch_ms", "a multiple of 20 from 20 to 400", self.quiet_batch_ms)
        if not (_FRAME_MS <= self.speech_batch_ms <= 100 and self.speech_batch_ms % _FRAME_MS == 0):
            raise _fail("speech_batch_ms", "a multiple of 20 from 20 to 100", self.speech_batch_ms)
        if not 1.0 <= self.handover_after_s <= 470.0:
            raise _fail(
                "handover_after_s",
                "seconds from 1 to 470 (below the 8-minute cap)",
                self.handover_after_s,
            )
        if not 0.0 <= self.handover_grace_s <= 300.0:
            raise _fail("handover_grace_s", "seconds from 0 to 300", self.handover_grace_s)
        if not 0.0 <= self.handover_quiet_s <= 10.0:
            raise _fail("handover_quiet_s", "seconds from 0 to 10", self.handover_quiet_s)
        if not 0.0 <= self.credential_refresh_margin_s <= 3600.0:
            raise _fail(
                "credential_refresh_margin_s",
                "seconds from 0 to 3600",
                self.credential_refresh_margin_s,
            )
        if not 0 <= self.history_max_turns <= 1000:
            raise _fail("history_max_turns", "an integer from 0 to 1000", self.history_max_turns)
        if not 16 <= self.history_max_bytes_per_turn <= 50 * 1024:
            raise _fail(
                "history_max_bytes_per_turn",
                "bytes from 16 to 51200",
                self.history_max_bytes_per_turn,
            )
        if not self.history_max_bytes_per_turn <= self.history_max_total_bytes <= 200 * 1024:
            raise _fail(
                "history_max_total_bytes",
                "bytes from history_max_bytes_per_turn to 204800",
                self.history_max_total_bytes,
            )
        if not (0 <= self.replay_audio_ms <= 10_000 and self.replay_audio_ms % _FRAME_MS == 0):
            raise _fail("replay_audio_ms", "a multiple of 20 from 0 to 10000", self.replay_audio_ms)
        if not 0.1 <= self.close_timeout_s <= 30.0:
            raise _fail("close_timeout_s", "seconds from 0.1 to 30", self.close_timeout_s)
        if not 0.1 <= self.open_timeout_s <= 60.0:
            raise _fail("open_timeout_s", "seconds from 0.1 to 60", self.open_timeout_s)
        if self.stall_timeout_s is not None and not 0.1 <= self.stall_timeout_s <= 600.0:
            raise _fail("stall_timeout_s", "None or seconds from 0.1 to 600", self.stall_timeout_s)
        if not 1 <= self.max_reopen_attempts <= 10:
            raise _fail("max_reopen_attempts", "an integer from 1 to 10", self.max_reopen_attempts)
        if not 0.0 <= self.reopen_backoff_s <= 10.0:
            raise _fail("reopen_backoff_s", "seconds from 0 to 10", self.reopen_backoff_s)

    @property
    def input_bytes_per_ms(self) -> int:
        """Bytes of 16-bit mono caller PCM per millisecond at ``input_rate``."""
        return self.input_rate * 2 // 1000

    @property
    def batch_bytes(self) -> int:
        """Bytes of caller PCM per ``audioInput`` event."""
        return self.audio_batch_ms * self.input_bytes_per_ms

    @property
    def replay_bytes(self) -> int:
        """Bytes of caller PCM kept for replay into a new session."""
        return self.replay_audio_ms * self.input_bytes_per_ms
