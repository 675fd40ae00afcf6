"""The order rules Nova Sonic enforces on input events, as a sans-I/O state machine.

Theory of operation. :class:`SessionValidator` sees every decoded input event of one stream in
order (:meth:`SessionValidator.feed`) and raises :class:`SessionViolation` on the first event the
service would answer with a ``ValidationException``. It also remembers what later stages need: the
prompt name, the caller's input rate, the output rate, and which TOOL block answers which
``toolUseId``. The rules (the event order AWS's user guide describes):

* ``sessionStart`` first and once; then one ``promptStart``; content blocks only inside the prompt.
* every content event names the open prompt; ``contentStart`` names a fresh ``contentName``; payload
  events and ``contentEnd`` name an open block of the matching type.
* history (USER / ASSISTANT TEXT blocks before the audio block) starts with USER.
* ``audioInput`` needs an open AUDIO block, and no TEXT block may be open at that moment (the
  service's "Chat history should be sent completely before streaming audio.").
* ``promptEnd`` only with no block open; ``sessionEnd`` only after ``promptEnd``; nothing after it.

No I/O, no clocks: the async shell turns a violation into an exception frame.
"""

from __future__ import annotations

from typing import Final, assert_never, final

import attrs

from actors.errors import RemoteProtocolError
from actors.wire import (
    AudioInput,
    InputContentEnd,
    InputContentStart,
    InputEventBody,
    PromptEnd,
    PromptStart,
    SessionEnd,
    SessionStart,
    TextInput,
    ToolResultInput,
)

__all__ = ["CHAT_HISTORY_MESSAGE", "OpenBlock", "SessionValidator", "SessionViolation"]

CHAT_HISTORY_MESSAGE: Final = "Chat history should be sent completely before streaming audio."


class SessionViolation(RemoteProtocolError):
    """An input event the service rejects; ``str(exc)`` is the ValidationException message."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.message = message


@final
@attrs.frozen
class OpenBlock:
    """A content block the client opened and has not closed."""

    name: str
    type: str
    role: str
    tool_use_id: str | None = None


@final
class SessionValidator:
    """Feed it input events in order; it raises on the first one the service would reject."""

    def __init__(self) -> None:
        self._session_started = False
        self._session_ended = False
        self._prompt_name: str | None = None
        self._prompt_ended = False
        self._open: dict[str, OpenBlock] = {}
        self._audio_seen = False
        self._history_roles: list[str] = []
        self.input_rate: int | None = None
        self.output_rate: int = 24000
        self.last_block: OpenBlock | None = None
        """The block the last payload or end event belonged to (for the shell)."""

    @property
    def prompt_name(self) -> str | None:
        """The open prompt's name, once ``promptStart`` arrived."""
        return self._prompt_name

    @property
    def session_ended(self) -> bool:
        """True after ``sessionEnd``."""
        return self._session_ended

    def feed(self, event: InputEventBody) -> None:
        """Check one event against the rules and update the state.

        Raises:
            SessionViolation: the event breaks a rule; the stream must end with a validation error.
        """
        if self._session_ended:
            raise SessionViolation("Invalid input request: event received after sessionEnd")
        if not self._session_started and not isinstance(event, SessionStart):
            raise SessionViolation(
                "Invalid input request: the first event must be sessionStart", field="event"
            )
        match event:
            case SessionStart():
                if self._session_started:
                    raise SessionViolation("Invalid input request: duplicate sessionStart")
                self._session_started = True
            case PromptStart():
                if self._prompt_name is not None:
                    raise SessionViolation(
                        "Invalid input request: only one promptStart per session"
                    )
                self._prompt_name = event.prompt_name
                self.output_rate = event.audio_output_configuration.sample_rate_hertz
            case InputContentStart():
                self._check_prompt(event.prompt_name)
                self._content_start(event)
            case TextInput():
                self.last_block = self._payload(event.prompt_name, event.content_name, "TEXT")
            case AudioInput():
                self._audio_input(event)
            case ToolResultInput():
                self.last_block = self._payload(event.prompt_name, event.content_name, "TOOL")
            case InputContentEnd():
                self._check_prompt(event.prompt_name)
                block = self._open.pop(event.content_name, None)
                if block is None:
                    raise SessionViolation(
                        f"Invalid input request: contentEnd for unknown contentName "
                        f"{event.content_name!r}",
                        field="contentEnd.contentName",
                    )
                self.last_block = block
            case PromptEnd():
                self._check_prompt(event.prompt_name)
                if self._open:
                    raise SessionViolation(
                        "Invalid input request: promptEnd while content blocks are open",
                        field="promptEnd",
                    )
                self._prompt_ended = True
            case SessionEnd():
                if self._prompt_name is not None and not self._prompt_ended:
                    raise SessionViolation(
                        "Invalid input request: sessionEnd before promptEnd", field="sessionEnd"
                    )
                self._session_ended = True
            case _:
                assert_never(event)

    def _check_prompt(self, prompt_name: str) -> None:
        if self._prompt_name is None or self._prompt_ended:
            raise SessionViolation(
                "Invalid input request: content event outside a prompt", field="promptName"
            )
        if prompt_name != self._prompt_name:
            raise SessionViolation(
                f"Invalid input request: unknown promptName {prompt_name!r}", field="promptName"
            )

    def _content_start(self, event: InputContentStart) -> None:
        if event.content_name in self._open:
            raise SessionViolation(
                f"Invalid input request: contentName {event.content_name!r} is already open",
                field="contentStart.contentName",
            )
        tool_use_id = None
        if event.type == "AUDIO":
            if any(block.type == "AUDIO" for block in self._open.values()):
                raise SessionViolation(
                    "Invalid input request: an AUDIO content block is already open",
                    field="contentStart.type",
                )
            audio_config = event.audio_input_configuration
            self.input_rate = 16000 if audio_config is None else audio_config.sample_rate_hertz
            self._audio_seen = True
        elif event.type == "TEXT" and event.role in ("USER", "ASSISTANT") and not self._audio_seen:
            if not self._history_roles and event.role != "USER":
                raise SessionViolation(
                    "Invalid input request: conversation history must start with a USER message",
                    field="contentStart.role",
                )
            self._history_roles.append(event.role)
        elif event.type == "TOOL":
            tool_config = event.tool_result_input_configuration
            tool_use_id = None if tool_config is None else tool_config.tool_use_id
        self._open[event.content_name] = OpenBlock(
            name=event.content_name, type=event.type, role=event.role, tool_use_id=tool_use_id
        )

    def _payload(self, prompt_name: str, content_name: str, kind: str) -> OpenBlock:
        self._check_prompt(prompt_name)
        block = self._open.get(content_name)
        if block is None or block.type != kind:
            raise SessionViolation(
                f"Invalid input request: no open {kind} content block named {content_name!r}",
                field="contentName",
            )
        return block

    def _audio_input(self, event: AudioInput) -> None:
        self._check_prompt(event.prompt_name)
        if any(block.type == "TEXT" for block in self._open.values()):
            raise SessionViolation(CHAT_HISTORY_MESSAGE)
        block = self._open.get(event.content_name)
        if block is None or block.type != "AUDIO":
            raise SessionViolation(
                f"Invalid input request: audioInput without an open AUDIO content block "
                f"{event.content_name!r}",
                field="audioInput.contentName",
            )
        self.last_block = block
