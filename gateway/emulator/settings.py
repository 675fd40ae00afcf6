"""Emulator settings: one frozen attrs object, validated once.

Defaults mirror the service where it is known (8-minute session cap) and issue #3 elsewhere (600 ms
end-of-turn silence, 200 ms think time, 2 s answers). Tests shrink the timings.
"""

from __future__ import annotations

from typing import Any, final

import attrs

from gateway.emulator.faults import Fault

__all__ = ["EmulatorSettings"]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


@final
@attrs.frozen
class EmulatorSettings:
    """How the emulator listens, hears, answers and fails.

    Attributes:
        host: address to bind (loopback by default: the emulator is a local backend).
        port: TCP port; 0 picks a free one (read ``Emulator.endpoint_uri``).
        end_of_turn_silence_ms: caller silence (audio time) that ends a turn.
        vad_onset_ms: voiced audio needed before speech counts as started (barge-in too).
        vad_threshold_dbfs: RMS level above which an analysis frame is voiced.
        vad_block_ms: caller audio is analysed in blocks of this much audio (cheaper per event);
            turn ends and barge-ins are decided up to this much later in wall time, never in
            audio time. 0 analyses every audioInput as it arrives.
        think_ms: wall time from the end of a caller turn to the assistant's reply.
        answer_ms: length of the default persona's spoken reply.
        output_chunk_ms: audio per ``audioOutput`` event.
        realtime_factor: how much faster than real time reply audio is sent (4.0 = a 100 ms chunk
            every 25 ms); 0 sends as fast as the stream takes it, yielding between chunks.
        session_cap_s: the stream's hard limit; at the cap it ends with modelTimeoutException.
        first_byte_delay_s: delay before the response headers of every session.
        tool_result_timeout_s: how long a scripted tool call waits for the client's toolResult
            before the reply goes on without it.
        close_grace_s: after an error frame, how long to wait for the client to end its side
            before ending the response anyway.
        outbound_frames: response frames a session may queue (waiting for HTTP/2 flow control)
            before its persona waits.
        max_concurrent_streams: SETTINGS_MAX_CONCURRENT_STREAMS advertised on every HTTP/2
            connection (100, the RFC 9113 recommended floor; Bedrock's figure is not documented).
        faults: faults injected into every session (``after_ms`` from the response start).
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=_not_negative)
    end_of_turn_silence_ms: float = attrs.field(default=600.0, validator=_positive)
    vad_onset_ms: float = attrs.field(default=60.0, validator=_positive)
    vad_threshold_dbfs: float = -40.0
    vad_block_ms: float = attrs.field(default=0.0, validator=_not_negative)
    think_ms: int = attrs.field(default=200, validator=_not_negative)
    answer_ms: int = attrs.field(default=2000, validator=_not_negative)
    output_chunk_ms: int = attrs.field(default=100, validator=_positive)
    realtime_factor: float = attrs.field(default=4.0, validator=_not_negative)
    session_cap_s: float = attrs.field(default=480.0, validator=_positive)
    first_byte_delay_s: float = attrs.field(default=0.0, validator=_not_negative)
    tool_result_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    close_grace_s: float = attrs.field(default=5.0, validator=_positive)
    outbound_frames: int = attrs.field(default=32, validator=_positive)
    max_concurrent_streams: int = attrs.field(default=100, validator=_positive)
    faults: tuple[Fault, ...] = ()
