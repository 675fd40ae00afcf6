"""The Nova Sonic event protocol of ONE stream, sans I/O: what to send, and what was received.

Theory of operation (the event sequence of AWS's Nova Sonic user guide). The input side is a small
state machine whose methods return the encoded events to send, in order, as ONE unit (a list of
bytes), so a shell that sends each unit without interleaving is the single writer the service
needs::

    NEW --prelude()--> PROMPT --history()*--> PROMPT --mark_ready(); open_audio()--> AUDIO
    AUDIO --audio()/user_text()/tool_result()--> AUDIO --close()--> CLOSED

* ``prelude()``: sessionStart, promptStart (voice, audio output format; tool configuration only
  when tools exist), then the system prompt as a TEXT block (three events).
* ``history()``: TEXT blocks for USER/ASSISTANT turns; only before the audio block; first is USER.
* ``open_audio()``: the ONE interactive AUDIO block; refused until ``mark_ready()`` (the shell
  calls it when ``await_output()`` resolved), so audio never precedes the stream being up.
* ``audio(pcm)``: caller PCM is batched into events of exactly ``audio_batch_ms``; a text unit
  (``user_text``, ``tool_result``) is three events with no audio between them, which rules out the
  "Chat history should be sent completely before streaming audio" race by construction.
* ``close()``: the partial audio batch, audio contentEnd, promptEnd, sessionEnd.

The output side, ``receive(data)``, decodes one output event and returns internal events
(:mod:`actors.sonic.events`): empty USER transcripts are dropped; the barge-in marker and
``contentEnd INTERRUPTED`` count as ONE barge-in per assistant turn, after which late audio of that
turn is dropped; assistant turns get ids from a counter shared across the conversation's streams.

Violations of the order by the caller raise :class:`~actors.errors.LocalProtocolError` (a bug on
our side, never the service's). No I/O, no clock.
"""

from __future__ import annotations

import itertools
import uuid
from enum import Enum, auto
from typing import TYPE_CHECKING, Final, final

import attrs

from actors.errors import LocalProtocolError
from actors.sonic.events import (
    AssistantText,
    BargeInSource,
    CompletionEnded,
    SonicAudio,
    SonicAudioEnded,
    SonicAudioStarted,
    SonicBargeIn,
    SonicEvent,
    ToolUseRequested,
    Usage,
    UserTranscript,
)
from actors.wire import (
    TOOL_CHOICE_AUTO,
    AudioInputConfiguration,
    AudioOutput,
    AudioOutputConfiguration,
    CompletionEnd,
    CompletionStart,
    InferenceConfiguration,
    InputContentEnd,
    InputContentStart,
    OutputContentEnd,
    OutputContentStart,
    PromptEnd,
    PromptStart,
    PromptTool,
    SessionEnd,
    SessionStart,
    TextConfiguration,
    TextInput,
    TextOutput,
    ToolConfiguration,
    ToolInputSchema,
    ToolResultInput,
    ToolResultInputConfiguration,
    ToolSpec,
    ToolUse,
    ToolUseOutputConfiguration,
    TurnDetectionConfiguration,
    UnknownOutputEvent,
    UsageEvent,
    decode_output_event,
    encode_audio_input,
    encode_input_event,
    generation_stage,
    is_barge_in_marker,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors.sonic.history import HistoryTurn
    from actors.sonic.settings import SonicSettings

__all__ = ["InputState", "SonicProtocol"]

MERGED_EVENT_SAMPLES: Final = 1024
"""Most samples in one ``audioInput`` event made from several frames at once (64 ms at 16 kHz, so
an event stays as short as a real-time client's). Audio released several frames at a time (quiet
held back, speech in the caller's own turn) goes in events of whole frames up to this, so fewer
events are encoded, signed and decoded; a single frame (sound over an answer) is still one
event."""


class InputState(Enum):
    """Where the input side of one stream is."""

    NEW = auto()
    PROMPT = auto()
    AUDIO = auto()
    CLOSED = auto()


@attrs.define
class _Block:
    type: str
    role: str
    stage: str | None
    rate: int


@final
class SonicProtocol:
    """One stream's event protocol (see the module docstring).

    Args:
        settings: the conversation's settings.
        turn_ids: the conversation's assistant-turn counter (shared across its streams).
        prompt_name: the promptName of this stream (a fresh UUID by default).
    """

    def __init__(
        self,
        settings: SonicSettings,
        *,
        turn_ids: Iterator[int] | None = None,
        prompt_name: str | None = None,
    ) -> None:
        self._settings = settings
        self._prompt = prompt_name or str(uuid.uuid4())
        self._state = InputState.NEW
        self._ready = False
        self._audio_name = ""
        self._pending = bytearray()
        self._batch = settings.batch_bytes
        self._merged = max(1, MERGED_EVENT_SAMPLES * 2 // self._batch) * self._batch
        self._history_sent = False
        self._audio_bytes_sent = 0
        # Output side.
        self._turn_ids = turn_ids if turn_ids is not None else itertools.count(1)
        self._blocks: dict[str, _Block] = {}
        self._turn_id = 0
        self._turn_open = False
        self._turn_audio_started = False
        self._turn_audio_ended = False
        self._turn_barged = False
        self._completion_ended = False
        self._events_received = 0
        self._audio_dropped = 0

    # ---------------------------------------------------------------- input side

    @property
    def state(self) -> InputState:
        """The input side's state."""
        return self._state

    @property
    def prompt_name(self) -> str:
        """This stream's promptName."""
        return self._prompt

    @property
    def audio_bytes_sent(self) -> int:
        """Caller PCM bytes handed out in ``audioInput`` events so far."""
        return self._audio_bytes_sent

    def mark_ready(self) -> None:
        """Record that ``await_output()`` resolved: the stream is up and audio may start."""
        self._ready = True

    def prelude(self) -> list[bytes]:
        """sessionStart, promptStart and the system prompt TEXT block."""
        self._expect(InputState.NEW, "prelude")
        s = self._settings
        tool_config: ToolConfiguration | None = None
        tool_output: ToolUseOutputConfiguration | None = None
        if s.tools:
            tool_config = ToolConfiguration(
                tools=[
                    PromptTool(
                        tool_spec=ToolSpec(
                            name=t.name,
                            description=t.description,
                            input_schema=ToolInputSchema(json=t.input_schema_json),
                        )
                    )
                    for t in s.tools
                ],
                tool_choice=TOOL_CHOICE_AUTO,
            )
            tool_output = ToolUseOutputConfiguration()
        events = [
            encode_input_event(
                SessionStart(
                    inference_configuration=InferenceConfiguration(
                        max_tokens=s.max_tokens, top_p=s.top_p, temperature=s.temperature
                    ),
                    turn_detection_configuration=TurnDetectionConfiguration(
                        endpointing_sensitivity=s.endpointing_sensitivity
                    ),
                )
            ),
            encode_input_event(
                PromptStart(
                    prompt_name=self._prompt,
                    text_output_configuration=TextConfiguration(),
                    audio_output_configuration=AudioOutputConfiguration(
                        voice_id=s.voice_id, sample_rate_hertz=s.output_rate
                    ),
                    tool_use_output_configuration=tool_output,
                    tool_configuration=tool_config,
                )
            ),
        ]
        events += self._text_block("SYSTEM", s.system_prompt, interactive=False)
        self._state = InputState.PROMPT
        return events

    def history(self, turns: list[HistoryTurn]) -> list[bytes]:
        """TEXT blocks replaying ``turns`` (already shaped: first USER); once, before the audio."""
        self._expect(InputState.PROMPT, "history")
        if self._history_sent:
            raise LocalProtocolError("history is sent once per session")
        if turns and turns[0].role != "USER":
            raise LocalProtocolError("history must start with a USER turn")
        self._history_sent = True
        events: list[bytes] = []
        for turn in turns:
            events += self._text_block(turn.role, turn.text, interactive=False)
        return events

    def open_audio(self) -> list[bytes]:
        """The interactive AUDIO contentStart; only after ``mark_ready()``."""
        self._expect(InputState.PROMPT, "open_audio")
        if not self._ready:
            raise LocalProtocolError("audio must not start before await_output() resolved")
        self._audio_name = str(uuid.uuid4())
        self._state = InputState.AUDIO
        return [
            encode_input_event(
                InputContentStart(
                    prompt_name=self._prompt,
                    content_name=self._audio_name,
                    type="AUDIO",
                    interactive=True,
                    role="USER",
                    audio_input_configuration=AudioInputConfiguration(
                        sample_rate_hertz=self._settings.input_rate
                    ),
                )
            )
        ]

    def audio(self, pcm: bytes) -> list[bytes]:
        """Batch caller PCM; return the ``audioInput`` events now complete (possibly none)."""
        self._expect(InputState.AUDIO, "audio")
        pending = self._pending
        batch = self._batch
        if not pending and len(pcm) % batch == 0:
            # Hot path: whole frames, no copy into the batch buffer; one frame is one event, and
            # several go in events of up to MERGED_EVENT_SAMPLES.
            self._audio_bytes_sent += len(pcm)
            if len(pcm) <= batch:
                return [encode_audio_input(self._prompt, self._audio_name, pcm)] if pcm else []
            step = self._merged
            return [
                encode_audio_input(self._prompt, self._audio_name, pcm[at : at + step])
                for at in range(0, len(pcm), step)
            ]
        pending += pcm
        events: list[bytes] = []
        while len(pending) >= self._batch:
            chunk = bytes(pending[: self._batch])
            del pending[: self._batch]
            self._audio_bytes_sent += len(chunk)
            events.append(encode_audio_input(self._prompt, self._audio_name, chunk))
        return events

    def flush_audio(self) -> list[bytes]:
        """The partial batch, if any, as one (shorter) ``audioInput`` event."""
        if self._state is not InputState.AUDIO or not self._pending:
            return []
        chunk = bytes(self._pending)
        self._pending.clear()
        self._audio_bytes_sent += len(chunk)
        return [encode_audio_input(self._prompt, self._audio_name, chunk)]

    def user_text(self, text: str) -> list[bytes]:
        """A cross-modal interactive USER TEXT block (DTMF digits, "speak first"), as one unit."""
        self._expect(InputState.AUDIO, "user_text")
        return self._text_block("USER", text, interactive=True)

    def tool_result(self, tool_use_id: str, content_json: str) -> list[bytes]:
        """A TOOL block answering ``tool_use_id`` with ``content_json`` (a JSON string), as one unit."""
        self._expect(InputState.AUDIO, "tool_result")
        name = str(uuid.uuid4())
        return [
            encode_input_event(
                InputContentStart(
                    prompt_name=self._prompt,
                    content_name=name,
                    type="TOOL",
                    interactive=False,
                    role="TOOL",
                    tool_result_input_configuration=ToolResultInputConfiguration(
                        tool_use_id=tool_use_id
                    ),
                )
            ),
            encode_input_event(
                ToolResultInput(prompt_name=self._prompt, content_name=name, content=content_json)
            ),
            encode_input_event(InputContentEnd(prompt_name=self._prompt, content_name=name)),
        ]

    def close(self) -> list[bytes]:
        """The orderly end: pending audio, audio contentEnd, promptEnd, sessionEnd. Idempotent."""
        if self._state is InputState.CLOSED:
            return []
        events: list[bytes] = []
        if self._state is InputState.AUDIO:
            events += self.flush_audio()
            events.append(
                encode_input_event(
                    InputContentEnd(prompt_name=self._prompt, content_name=self._audio_name)
                )
            )
        if self._state is not InputState.NEW:
            events.append(encode_input_event(PromptEnd(prompt_name=self._prompt)))
            events.append(encode_input_event(SessionEnd()))
        self._state = InputState.CLOSED
        return events

    def _text_block(self, role: str, text: str, *, interactive: bool) -> list[bytes]:
        name = str(uuid.uuid4())
        return [
            encode_input_event(
                InputContentStart(
                    prompt_name=self._prompt,
                    content_name=name,
                    type="TEXT",
                    interactive=interactive,
                    role=role,  # type: ignore[arg-type]  # USER/ASSISTANT/SYSTEM only, by callers
                    text_input_configuration=TextConfiguration(),
                )
            ),
            encode_input_event(
                TextInput(prompt_name=self._prompt, content_name=name, content=text)
            ),
            encode_input_event(InputContentEnd(prompt_name=self._prompt, content_name=name)),
        ]

    def _expect(self, state: InputState, what: str) -> None:
        if self._state is not state:
            raise LocalProtocolError(
                f"{what} needs input state {state.name}, not {self._state.name}"
            )

    def attach_turn_ids(self, turn_ids: Iterator[int]) -> None:
        """Use the conversation's assistant-turn counter (a pooled stream gets it when taken)."""
        self._turn_ids = turn_ids

    # ---------------------------------------------------------------- output side

    @property
    def completion_ended(self) -> bool:
        """True once a ``completionEnd`` arrived (the orderly close waits briefly for it)."""
        return self._completion_ended

    @property
    def assistant_turn_open(self) -> bool:
        """True while an assistant turn is in progress (text or audio not yet ended)."""
        return self._turn_open

    @property
    def assistant_speaking(self) -> bool:
        """True while an assistant answer is being generated (turn open, its audio not ended)."""
        return self._turn_open and not self._turn_audio_ended and not self._turn_barged

    def statistics(self) -> dict[str, int]:
        """Counters for snapshots and tests."""
        return {
            "events_received": self._events_received,
            "audio_dropped": self._audio_dropped,
            "audio_bytes_sent": self._audio_bytes_sent,
        }

    def receive(self, data: bytes) -> list[SonicEvent]:
        """Decode one output event (``chunk.value.bytes_``) into internal events.

        Raises:
            SonicEventError: the event is malformed (a remote protocol error).
        """
        body = decode_output_event(data)
        self._events_received += 1
        match body:
            case AudioOutput():
                return self._on_audio(body)
            case TextOutput():
                return self._on_text(body)
            case OutputContentStart():
                return self._on_content_start(body)
            case OutputContentEnd():
                return self._on_content_end(body)
            case ToolUse():
                return [
                    ToolUseRequested(
                        tool_use_id=body.tool_use_id,
                        name=body.tool_name,
                        arguments_json=body.content,
                    )
                ]
            case UsageEvent():
                return [
                    Usage(
                        input_tokens=body.total_input_tokens,
                        output_tokens=body.total_output_tokens,
                        total_tokens=body.total_tokens,
                    )
                ]
            case CompletionStart():
                self._completion_ended = False
                return []
            case CompletionEnd():
                self._completion_ended = True
                events: list[SonicEvent] = self._end_turn_audio(body.stop_reason)
                self._turn_open = False
                events.append(CompletionEnded(stop_reason=body.stop_reason))
                return events
            case UnknownOutputEvent():
                return []

    def _open_turn(self) -> None:
        if not self._turn_open:
            self._turn_id = next(self._turn_ids)
            self._turn_open = True
            self._turn_audio_started = False
            self._turn_audio_ended = False
            self._turn_barged = False

    def _on_content_start(self, body: OutputContentStart) -> list[SonicEvent]:
        stage = generation_stage(body)
        rate = self._settings.output_rate
        if body.audio_output_configuration is not None:
            rate = body.audio_output_configuration.sample_rate_hertz
        self._blocks[body.content_id] = _Block(body.type, body.role, stage, rate)
        if len(self._blocks) > 64:  # bounded: ended blocks are removed, this guards against leaks
            del self._blocks[next(iter(self._blocks))]
        if body.role != "ASSISTANT":
            return []
        if body.type == "AUDIO":
            if self._turn_open and self._turn_audio_ended:
                self._turn_open = False  # a new answer after the last one's audio ended
            self._open_turn()
            if not self._turn_audio_started:
                self._turn_audio_started = True
                return [SonicAudioStarted(turn_id=self._turn_id, rate=rate)]
        elif body.type == "TEXT" and stage == "SPECULATIVE":
            if self._turn_open and self._turn_audio_ended:
                self._turn_open = False
            self._open_turn()
        return []

    def _on_audio(self, body: AudioOutput) -> list[SonicEvent]:
        block = self._blocks.get(body.content_id)
        if self._turn_barged or self._turn_audio_ended or not self._turn_open:
            self._audio_dropped += 1
            return []
        rate = block.rate if block is not None else self._settings.output_rate
        return [SonicAudio(pcm=body.content, rate=rate, turn_id=self._turn_id)]

    def _on_text(self, body: TextOutput) -> list[SonicEvent]:
        block = self._blocks.get(body.content_id)
        role = block.role if block is not None else body.role
        stage = block.stage if block is not None else None
        if is_barge_in_marker(body.content):
            return self._barge_in("marker")
        if role == "USER":
            text = body.content.strip()
            if not text:
                return []  # empty transcripts caused spurious interruptions (pipecat #4042)
            return [UserTranscript(text=text, final=stage != "SPECULATIVE")]
        if role == "ASSISTANT":
            if not body.content.strip():
                return []
            if stage == "SPECULATIVE":
                return [
                    AssistantText(text=body.content, stage="SPECULATIVE", turn_id=self._turn_id)
                ]
            if self._turn_id == 0:
                self._open_turn()  # FINAL text with no turn seen (text-only answer)
            return [AssistantText(text=body.content, stage="FINAL", turn_id=self._turn_id)]
        return []

    def _on_content_end(self, body: OutputContentEnd) -> list[SonicEvent]:
        block = self._blocks.pop(body.content_id, None)
        role = block.role if block is not None else ""
        events: list[SonicEvent] = []
        if body.stop_reason == "INTERRUPTED":
            events += self._barge_in("interrupted")
        elif role == "ASSISTANT" and body.type == "AUDIO" and body.stop_reason == "END_TURN":
            events += self._end_turn_audio("END_TURN")
        return events

    def _end_turn_audio(self, stop_reason: str) -> list[SonicEvent]:
        if self._turn_audio_started and not self._turn_audio_ended:
            self._turn_audio_ended = True
            return [SonicAudioEnded(turn_id=self._turn_id, stop_reason=stop_reason)]
        return []

    def _barge_in(self, source: BargeInSource) -> list[SonicEvent]:
        if self._turn_id == 0 or self._turn_barged:
            return []
        self._turn_barged = True
        events: list[SonicEvent] = [SonicBargeIn(turn_id=self._turn_id, source=source)]
        events += self._end_turn_audio("INTERRUPTED")
        return events

    def abandon_turn(self) -> list[SonicEvent]:
        """End an assistant turn this stream will never finish (the stream is being replaced)."""
        events = self._end_turn_audio("SESSION_LOST")
        self._turn_open = False
        return events
