"""Configured fast intents: the ``[[intents]]`` entries of the config, checked, and what they become.

Theory of operation: each ``[[intents]]`` table is one :class:`IntentConfig` (a field of
:class:`gateway.config.GatewayConfig`, converted with the rest of the config). After conversion
:func:`check_intents` cross-checks them against the ``[[tools]]`` and the DTMF settings: distinct
names and digits, at least one trigger, a regular expression that compiles and cannot match an
empty transcript, digits a keypad entry can hold, a tool that is configured and an input that tool
accepts. Every failure is a :class:`~actors.errors.ConfigError` naming ``intents[i].<key>``. At
start :func:`build_intents` turns them into the call's :class:`~actors.call.IntentBook` (patterns
compiled case-insensitive, inputs as JSON text, each prompt's words from ``[prompts]``). Nothing
here matches anything; :mod:`actors.call.intents` does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import attrs
import msgspec

from actors.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.call import IntentBook
    from gateway.tools import ToolConfig

__all__ = ["IntentConfig", "PromptChoice", "build_intents", "check_intents"]

PromptChoice = Literal["greeting", "hold", "transferring", "goodbye", "sorry"]
_NAME: Final = r"^[A-Za-z0-9_-]{1,64}$"
_MAX_PATTERN: Final = 500


@attrs.frozen
class IntentConfig:
    """One ``[[intents]]`` entry: a keypad entry or caller words that the gateway answers itself.

    Attributes:
        name: the intent's name (letters, digits, ``_``, ``-``; at most 64): logs, the call report
            and the note the model gets.
        dtmf: the keypad entry that triggers it (``0``, ``*9``...; keys ``0-9 * # A-D``, without
            the DTMF terminator).
        keywords: phrases that trigger it when the caller's FINAL transcript contains them as whole
            words (case and punctuation ignored).
        regex: a regular expression (Python ``re``) searched in the caller's FINAL transcript,
            case-insensitive.
        prompt: the cached prompt played at once on a match.
        tool: the ``[[tools]]`` entry run on a match (``end_call`` / ``transfer_call`` kinds end or
            transfer the call once the prompt was heard; an ``http`` tool's answer goes to the
            model).
        input: the tool's fixed input (a table; ``{ target = "sales" }`` for ``transfer_call``).
    """

    name: Annotated[str, msgspec.Meta(pattern=_NAME)]
    prompt: PromptChoice
    tool: Annotated[str, msgspec.Meta(pattern=_NAME)]
    input: dict[str, Any] = attrs.field(factory=dict)
    dtmf: Annotated[str, msgspec.Meta(pattern=r"^[0-9*#A-D]{1,64}$")] | None = None
    keywords: tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=200)], ...] = ()
    regex: Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_PATTERN)] | None = None


def _pattern(intent: IntentConfig, key: str) -> re.Pattern[str] | None:
    if intent.regex is None:
        return None
    try:
        pattern = re.compile(intent.regex, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(
            f"{key}.regex", f"a regular expression (Python re syntax; {exc})", intent.regex
        ) from None
    if pattern.search("") is not None:
        raise ConfigError(
            f"{key}.regex", "a regular expression that needs at least one character", intent.regex
        )
    return pattern


def check_intents(
    intents: Sequence[IntentConfig],
    tools: Sequence[ToolConfig],
    *,
    dtmf_terminator: str,
    dtmf_max_digits: int,
) -> None:
    """Cross-check converted ``[[intents]]`` entries against the tools and the DTMF settings.

    Raises:
        ConfigError: naming ``intents[i].<key>`` and the expected form.
    """
    if not intents:
        return
    from actors.call import normalize_words  # the call package loads the Sonic client: only here

    by_name = {t.name: t for t in tools}
    names: set[str] = set()
    digits: dict[str, str] = {}
    for i, intent in enumerate(intents):
        key = f"intents[{i}]"
        if intent.name in names:
            raise ConfigError(f"{key}.name", "a name no other intent has", intent.name)
        names.add(intent.name)
        if intent.dtmf is None and not intent.keywords and intent.regex is None:
            raise ConfigError(key, "at least one trigger: dtmf, keywords or regex")
        _pattern(intent, key)
        for j, keyword in enumerate(intent.keywords):
            if not normalize_words(keyword):
                raise ConfigError(
                    f"{key}.keywords[{j}]", "a phrase with a letter or digit", keyword
                )
        if intent.dtmf is not None:
            _check_dtmf(intent.dtmf, key, digits, dtmf_terminator, dtmf_max_digits)
            digits[intent.dtmf] = intent.name
        tool = by_name.get(intent.tool)
        if tool is None:
            known = ", ".join(by_name) or "none configured"
            raise ConfigError(
                f"{key}.tool", f"the name of a [[tools]] entry (one of: {known})", intent.tool
            )
        _check_input(intent, tool, key)


def _check_dtmf(
    value: str, key: str, seen: dict[str, str], terminator: str, max_digits: int
) -> None:
    if terminator and terminator in value:
        raise ConfigError(
            f"{key}.dtmf",
            f"keys without the DTMF terminator {terminator!r} (call.dtmf_terminator ends an "
            "entry and is never part of it)",
            value,
        )
    if len(value) > max_digits:
        raise ConfigError(f"{key}.dtmf", f"at most call.dtmf_max_digits ({max_digits}) keys", value)
    if value in seen:
        raise ConfigError(
            f"{key}.dtmf", f"keys no other intent has (intent {seen[value]!r})", value
        )


def _check_input(intent: IntentConfig, tool: ToolConfig, key: str) -> None:
    given = intent.input
    if tool.kind == "end_call":
        if given:
            raise ConfigError(f"{key}.input", "unset (end_call takes no input)", given)
        return
    if tool.kind == "transfer_call":
        targets = [t.name for t in tool.targets]
        if set(given) != {"target"} or given["target"] not in targets:
            raise ConfigError(
                f"{key}.input",
                f"{{ target = <one of {', '.join(targets)}> }} (a transfer_call target)",
                given,
            )
        return
    schema = msgspec.json.decode(tool.schema_json())
    required = schema.get("required", []) if isinstance(schema, dict) else []
    missing = [name for name in required if isinstance(name, str) and name not in given]
    if missing:
        raise ConfigError(
            f"{key}.input", f"a table with the tool's required keys ({', '.join(missing)})", given
        )


def build_intents(intents: Sequence[IntentConfig], prompt_texts: dict[str, str]) -> IntentBook:
    """The call's intent book (checked by :func:`check_intents` at load).

    Args:
        intents: the ``[[intents]]`` entries.
        prompt_texts: each prompt's words (``prompts.<name>_text``), for the note to the model.
    """
    from actors.call import IntentBook, IntentRule

    return IntentBook(
        [
            IntentRule(
                name=intent.name,
                prompt=intent.prompt,
                prompt_text=prompt_texts[intent.prompt],
                tool=intent.tool,
                input_json=msgspec.json.encode(intent.input).decode(),
                digits=intent.dtmf,
                keywords=intent.keywords,
                pattern=_pattern(intent, f"intents[{i}]"),
            )
            for i, intent in enumerate(intents)
        ]
    )
