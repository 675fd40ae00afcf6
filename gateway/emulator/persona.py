"""What the emulated model says: output event builders, the default persona and its audio.

Theory of operation. :class:`OutputEvents` builds the output events of one session with the right
ids (``sessionId``, echoed ``promptName``, ``completionId``, a fresh ``contentId`` per block) and the
block shapes of the service's output: a TEXT block is ``contentStart`` (with ``additionalModelFields``
``{"generationStage": ...}`` as a JSON *string*), ``textOutput``, ``contentEnd``; an AUDIO block is
``contentStart``, ``audioOutput`` chunks, ``contentEnd``; a TOOL block is ``contentStart``,
``toolUse``, ``contentEnd`` with ``TOOL_USE``. :class:`Reply` is the plan of one answer (transcript,
reply text, audio length, think time, tool call), from a script turn or the default persona. The
reply audio (a deterministic speech-like signal per reply text) is rendered and framed by
:mod:`gateway.emulator.voice`. Pure, synchronous code; the async shell paces and sends what these
functions build.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final, final

import attrs
import msgspec

from actors.wire import (
    AudioOutput,
    CompletionEnd,
    CompletionStart,
    OutputAudioConfiguration,
    OutputContentEnd,
    OutputContentStart,
    OutputEventBody,
    OutputTextConfiguration,
    OutputToolUseConfiguration,
    TextOutput,
    TokenCounts,
    TokenUsage,
    ToolUse,
    UsageDetails,
    UsageEvent,
)

if TYPE_CHECKING:
    from gateway.emulator.script import ScriptedTurn

__all__ = [
    "FINAL",
    "SPECULATIVE",
    "OutputEvents",
    "Reply",
    "TokenMeter",
    "default_reply",
    "scripted_reply",
]

_ENCODER: Final = msgspec.json.Encoder()
FINAL: Final = '{"generationStage":"FINAL"}'
SPECULATIVE: Final = '{"generationStage":"SPECULATIVE"}'
# Roughly what Nova reports: ~25 speech tokens per second of audio, ~4 characters per text token.
_SPEECH_TOKENS_PER_S: Final = 25.0
_CHARS_PER_TOKEN: Final = 4


def _new_id() -> str:
    return str(uuid.uuid4())


@final
@attrs.frozen
class Reply:
    """The plan of one answer to one caller turn."""

    transcript: str
    text: str
    answer_ms: int
    think_ms: int
    tool_name: str | None = None
    tool_arguments: bytes | None = None
    """``toolUse.content``: the arguments as JSON bytes."""
    filler: Reply | None = None
    """What the model says while the tool runs (before its result arrives)."""


def default_reply(turn: int, *, answer_ms: int, think_ms: int) -> Reply:
    """The default persona's answer to caller turn ``turn`` (1-based)."""
    return Reply(
        transcript=f"caller turn {turn}",
        text=f"This is the emulated assistant answering turn {turn}.",
        answer_ms=answer_ms,
        think_ms=think_ms,
    )


def scripted_reply(turn: ScriptedTurn, *, index: int, answer_ms: int, think_ms: int) -> Reply:
    """A script turn's answer, with the emulator's settings filling what the script leaves out."""
    tool = turn.tool_use
    return Reply(
        transcript=turn.transcript or f"caller turn {index}",
        text=turn.reply or f"This is the emulated assistant answering turn {index}.",
        answer_ms=answer_ms if turn.answer_ms is None else turn.answer_ms,
        think_ms=think_ms if turn.think_ms is None else turn.think_ms,
        tool_name=None if tool is None else tool.name,
        tool_arguments=None if tool is None else _ENCODER.encode(tool.arguments),
        filler=None
        if tool is None or tool.filler is None
        else Reply(
            transcript="", text=tool.filler.text, answer_ms=tool.filler.ms, think_ms=think_ms
        ),
    )


@final
class TokenMeter:
    """Running token totals for ``usageEvent`` (plausible, not billed)."""

    def __init__(self) -> None:
        self._input = [0, 0]  # speech, text
        self._output = [0, 0]

    def usage(
        self,
        events: OutputEvents,
        *,
        input_s: float,
        input_chars: int,
        output_s: float,
        output_chars: int,
    ) -> UsageEvent:
        """Add one turn's counts and build the ``usageEvent`` with delta and running total."""
        delta_in = [round(input_s * _SPEECH_TOKENS_PER_S), input_chars // _CHARS_PER_TOKEN]
        delta_out = [round(output_s * _SPEECH_TOKENS_PER_S), output_chars // _CHARS_PER_TOKEN]
        self._input = [a + b for a, b in zip(self._input, delta_in, strict=True)]
        self._output = [a + b for a, b in zip(self._output, delta_out, strict=True)]
        total_in = sum(self._input)
        total_out = sum(self._output)

        def usage(speech_text_in: list[int], speech_text_out: list[int]) -> TokenUsage:
            return TokenUsage(
                input=TokenCounts(speech_tokens=speech_text_in[0], text_tokens=speech_text_in[1]),
                output=TokenCounts(
                    speech_tokens=speech_text_out[0], text_tokens=speech_text_out[1]
                ),
            )

        return UsageEvent(
            session_id=events.session_id,
            prompt_name=events.prompt_name,
            completion_id=events.completion_id,
            details=UsageDetails(
                delta=usage(delta_in, delta_out), total=usage(self._input, self._output)
            ),
            total_input_tokens=total_in,
            total_output_tokens=total_out,
            total_tokens=total_in + total_out,
        )


@final
class OutputEvents:
    """Builds one session's output events with consistent ids."""

    def __init__(
        self, *, prompt_name: str, output_rate: int, session_id: str | None = None
    ) -> None:
        self.session_id = session_id or _new_id()
        self.prompt_name = prompt_name
        self.completion_id = _new_id()
        self.output_rate = output_rate

    def completion_start(self) -> CompletionStart:
        """``completionStart``."""
        return CompletionStart(
            session_id=self.session_id,
            prompt_name=self.prompt_name,
            completion_id=self.completion_id,
        )

    def completion_end(self, stop_reason: str = "END_TURN") -> CompletionEnd:
        """``completionEnd``."""
        return CompletionEnd(
            session_id=self.session_id,
            prompt_name=self.prompt_name,
            completion_id=self.completion_id,
            stop_reason=stop_reason,
        )

    def text_block(
        self, *, role: str, stage: str, text: str, stop_reason: str
    ) -> list[OutputEventBody]:
        """A whole TEXT block: start (with ``generationStage``), one ``textOutput``, end."""
        content_id = _new_id()
        sid, prompt, completion = self.session_id, self.prompt_name, self.completion_id
        return [
            OutputContentStart(
                session_id=sid,
                prompt_name=prompt,
                completion_id=completion,
                content_id=content_id,
                type="TEXT",
                role=role,
                additional_model_fields=stage,
                text_output_configuration=OutputTextConfiguration(),
            ),
            TextOutput(
                session_id=sid,
                prompt_name=prompt,
                completion_id=completion,
                content_id=content_id,
                role=role,
                content=text,
            ),
            OutputContentEnd(
                session_id=sid,
                prompt_name=prompt,
                completion_id=completion,
                content_id=content_id,
                type="TEXT",
                stop_reason=stop_reason,
            ),
        ]

    def tool_block(
        self, *, tool_name: str, tool_use_id: str, arguments: bytes
    ) -> list[OutputEventBody]:
        """A whole TOOL block asking the client to run ``tool_name``."""
        content_id = _new_id()
        sid, prompt, completion = self.session_id, self.prompt_name, self.completion_id
        return [
            OutputContentStart(
                session_id=sid,
                prompt_name=prompt,
                completion_id=completion,
                content_id=content_id,
                type="TOOL",
                role="TOOL",
                tool_use_output_configuration=OutputToolUseConfiguration(),
            ),
            ToolUse(
                session_id=sid,
                prompt_name=prompt,
                completion_id=completion,
                content_id=content_id,
                tool_name=tool_name,
                tool_use_id=tool_use_id,
                content=arguments.decode(),
            ),
            OutputContentEnd(
                session_id=sid,
                prompt_name=prompt,
                completion_id=completion,
                content_id=content_id,
                type="TOOL",
                stop_reason="TOOL_USE",
            ),
        ]

    def audio_start(self) -> OutputContentStart:
        """Open an assistant AUDIO block (a fresh ``contentId``)."""
        return OutputContentStart(
            session_id=self.session_id,
            prompt_name=self.prompt_name,
            completion_id=self.completion_id,
            content_id=_new_id(),
            type="AUDIO",
            role="ASSISTANT",
            audio_output_configuration=OutputAudioConfiguration(sample_rate_hertz=self.output_rate),
        )

    def audio_chunk(self, block: OutputContentStart, pcm: bytes) -> AudioOutput:
        """One ``audioOutput`` of the block ``block``."""
        return AudioOutput(
            session_id=self.session_id,
            prompt_name=self.prompt_name,
            completion_id=self.completion_id,
            content_id=block.content_id,
            content=pcm,
        )

    def audio_end(
        self, block: OutputContentStart, stop_reason: str = "END_TURN"
    ) -> OutputContentEnd:
        """Close the AUDIO block ``block``."""
        return OutputContentEnd(
            session_id=self.session_id,
            prompt_name=self.prompt_name,
            completion_id=self.completion_id,
            content_id=block.content_id,
            type="AUDIO",
            stop_reason=stop_reason,
        )
