"""Scripted model behaviour for replays: what the emulated model hears, says, calls and breaks.

Theory of operation. A :class:`ModelScript` is plain data (msgspec Structs that reject unknown
fields), decodable from a TOML table with :func:`model_script_from_toml` or from an already parsed
mapping with :func:`model_script_from_mapping`. Its ``turns`` are consumed one per caller turn the
emulator detects (speech, or an interactive USER text such as DTMF keys; in order, per session);
when they run out the default persona answers. A turn may ask for a tool first (``tool_use``: a
TOOL block, then, with a ``filler``, the words the model speaks while the tool runs (Nova 2 tools
are asynchronous), then the emulator waits for the client's ``toolResult``) or fail instead of
answering (``fault``). ``faults`` fire once per session, ``after_ms`` from the start of the response;
``session_cap_s`` overrides the emulator's cap.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.emulator.faults import Fault

__all__ = [
    "ModelScript",
    "ScriptedFault",
    "ScriptedFiller",
    "ScriptedToolUse",
    "ScriptedTurn",
    "model_script_from_mapping",
    "model_script_from_toml",
]

ScriptedFault = Fault


class ScriptedFiller(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the model says while its tool runs: ``text``, spoken for ``ms``, right after the TOOL
    block and the emulator's think time; the turn's reply waits for its end and the tool's result."""

    text: str
    ms: Annotated[int, msgspec.Meta(gt=0)] = 1500


class ScriptedToolUse(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tool call the model makes before replying; ``arguments`` become ``toolUse.content``;
    ``filler`` is spoken while the tool runs (the reply follows the tool's result)."""

    name: str
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    filler: ScriptedFiller | None = None


class ScriptedTurn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the model does for one caller turn.

    Attributes:
        transcript: the USER FINAL transcript it reports (none for a text turn).
        reply: the ASSISTANT text (SPECULATIVE and FINAL).
        answer_ms: length of the spoken reply; None takes the emulator setting.
        think_ms: delay from end of turn to the reply; None takes the emulator setting.
        tool_use: a tool call made before replying.
        fault: fail instead of replying, ``fault.after_ms`` after the end of the turn.
    """

    transcript: str = ""
    reply: str = ""
    answer_ms: int | None = None
    think_ms: int | None = None
    tool_use: ScriptedToolUse | None = None
    fault: ScriptedFault | None = None


class ModelScript(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A scenario's model behaviour: per-turn answers, session faults and the session cap."""

    turns: list[ScriptedTurn] = msgspec.field(default_factory=list)
    faults: list[ScriptedFault] = msgspec.field(default_factory=list)
    session_cap_s: float | None = None


def model_script_from_mapping(table: object) -> ModelScript:
    """Convert a parsed TOML/JSON table into a :class:`ModelScript`.

    Raises:
        msgspec.ValidationError: unknown keys or wrong types (the message names the path).
    """
    return msgspec.convert(table, ModelScript)


def model_script_from_toml(text: str | bytes) -> ModelScript:
    """Decode a :class:`ModelScript` from TOML text.

    Raises:
        msgspec.DecodeError: invalid TOML, unknown keys or wrong types.
    """
    return msgspec.toml.decode(text, type=ModelScript)
