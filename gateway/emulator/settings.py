"""Emulator settings: one frozen attrs object, validated once.

Defaults mirror the service where it is documented: the 8-minute session cap, and the pause before
answering that Nova 2 Sonic's user guide ("Turn-taking controllability") gives per
``endpointingSensitivity`` (:data:`ENDPOINTING_PAUSE_MS`: 1.5 s ``HIGH``, 1.75 s ``MEDIUM``, 2 s
``LOW``), followed per session. Elsewhere they are round figures, NOT measured from the real
service: 200 ms +/- 50 ms (uniform) from the end of a turn to the first reply audio, 2 s answers.
Tests, scenarios that need a fast model and the benchmarks set ``end_of_turn_silence_ms`` (one pause
for every session) and shrink the timings.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from gateway.emulator.auth import TEST_CREDENTIALS, EmulatorCredentials
from gateway.emulator.faults import Fault

if TYPE_CHECKING:
    from actors.wire import EndpointingSensitivity

__all__ = ["ENDPOINTING_PAUSE_MS", "MODEL_IDS", "EmulatorSettings", "ThinkTimes"]

ENDPOINTING_PAUSE_MS: Final[dict[str, float]] = {"HIGH": 1500.0, "MEDIUM": 1750.0, "LOW": 2000.0}
"""Caller silence before Nova 2 Sonic answers, per ``endpointingSensitivity`` (its user guide,
"Turn-taking controllability"). A session without ``turnDetectionConfiguration`` gets ``MEDIUM``."""


MODEL_IDS: Final = ("amazon.nova-2-sonic-v1:0", "amazon.nova-sonic-v1:0")
"""The Nova Sonic model ids Bedrock serves the bidirectional stream for."""


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _positive_or_none(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None:
        _positive(instance, attribute, value)


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
        end_of_turn_silence_ms: caller silence (audio time) that ends a turn, for every session;
            None (the default) follows each session's ``endpointingSensitivity``
            (:data:`ENDPOINTING_PAUSE_MS`).
        vad_onset_ms: voiced audio needed before speech counts as started (barge-in too).
        vad_threshold_dbfs: RMS level above which an analysis frame is voiced.
        vad_block_ms: caller audio is analysed in blocks of this much audio (cheaper per event);
            turn ends and barge-ins are decided up to this much later in wall time, never in
            audio time. 0 analyses every audioInput as it arrives.
        think_ms: mean wall time from the end of a caller turn to the assistant's reply (its
            first audio, give or take the render); a script turn's own ``think_ms`` is exact.
        think_jitter_ms: each reply's think time is drawn uniformly from ``think_ms`` +/- this
            (never below 0), from a random generator seeded by ``seed`` and the session number,
            so a run is reproducible. 0 thinks exactly ``think_ms``.
        seed: seeds the per-session think-time draws.
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
        region: the region requests must be signed for (SigV4 credential scope).
        credentials: the keys a request may be signed with (the gateway's test keys by default).
        verify_signatures: False accepts any ``Authorization`` and event signatures (load
            drivers that send pre-signed frames); the frames must still carry a signature header.
        model_ids: the model ids a stream may name (in the path, or as a ``foundation-model`` ARN
            of ``region``); another gets Bedrock's ValidationException.
        finished_sessions_kept: records of ended sessions kept for inspection (oldest dropped).
        input_event_runs_kept: per session, the input event log keeps this many runs of one
            event name (consecutive ``audioInput`` events are one run); events after that are
            only counted.
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=_not_negative)
    end_of_turn_silence_ms: float | None = attrs.field(default=None, validator=_positive_or_none)
    vad_onset_ms: float = attrs.field(default=60.0, validator=_positive)
    vad_threshold_dbfs: float = -40.0
    vad_block_ms: float = attrs.field(default=0.0, validator=_not_negative)
    think_ms: int = attrs.field(default=200, validator=_not_negative)
    think_jitter_ms: int = attrs.field(default=50, validator=_not_negative)
    seed: int = 0
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
    region: str = attrs.field(default="us-east-1", validator=attrs.validators.min_len(1))
    credentials: tuple[EmulatorCredentials, ...] = (TEST_CREDENTIALS,)
    verify_signatures: bool = True
    model_ids: tuple[str, ...] = MODEL_IDS
    finished_sessions_kept: int = attrs.field(default=256, validator=_not_negative)
    input_event_runs_kept: int = attrs.field(default=4096, validator=_positive)

    def end_of_turn_pause_ms(self, sensitivity: EndpointingSensitivity | None) -> float:
        """The silence that ends a caller turn in a session asking for ``sensitivity``."""
        if self.end_of_turn_silence_ms is not None:
            return self.end_of_turn_silence_ms
        return ENDPOINTING_PAUSE_MS[sensitivity or "MEDIUM"]


@final
class ThinkTimes:
    """One session's think times: ``think_ms`` +/- ``think_jitter_ms`` (uniform, whole ms, >= 0).

    Seeded by the settings' ``seed`` and the session number: a run is reproducible, sessions differ.
    """

    def __init__(self, settings: EmulatorSettings, session: int) -> None:
        self._mean = settings.think_ms
        self._jitter = settings.think_jitter_ms
        self._rng = random.Random(f"{settings.seed}:{session}")

    def draw(self) -> int:
        """The next reply's think time in ms."""
        if self._jitter == 0:
            return self._mean
        return max(0, self._mean + self._rng.randint(-self._jitter, self._jitter))
