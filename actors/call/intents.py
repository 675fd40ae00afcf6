"""Fast intents, sans I/O: rules that match the caller's keypad entry or words, and the note that
tells the model what the gateway did.

Theory of operation:

* An :class:`IntentRule` has a name, its triggers -- DTMF ``digits``, transcript ``keywords``, a
  transcript ``pattern`` (a compiled regular expression) -- the cached prompt it plays, and its
  action: a configured tool's name and the fixed input (JSON text) the tool runs with. The
  gateway's config layer (``gateway.intents``) builds and checks the rules once, at start.
* :class:`IntentBook` holds the rules in configuration order; the first rule that matches wins.

  - :meth:`IntentBook.match_transcript`: a keyword matches as whole words, case and punctuation
    ignored (both sides are lowered and every run of characters that are not letters or digits
    becomes one space, so ``"a person"`` matches ``"Can I talk to a person, please?"`` but not
    ``"a personal loan"``). The pattern is searched in the transcript as Sonic wrote it (compiled
    case-insensitive by the config layer). Only a FINAL transcript is ever given here.
  - :meth:`IntentBook.match_entry`: a complete keypad entry equal to a rule's digits.
  - :meth:`IntentBook.match_pending`: the keys pressed so far equal a rule's digits and no other
    rule's digits start with them, so the rule fires on the key itself instead of after the
    inter-digit time (an IVR's digit map). A caller typing a longer number that begins with such
    digits cannot: choose digits no other entry starts with.

* :func:`intent_note` is the interactive USER text that tells the model what happened (Sonic keeps
  its own history of the conversation, so the gateway must say what the caller heard instead of
  the model's answer). It starts with :data:`INTENT_NOTE_PREFIX`; the system prompt says what such
  notes are (:func:`intent_system_note`).

Pure functions and frozen data; no I/O, no clock.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, Literal, final

import attrs

from actors.call.prompts import PromptName

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "INTENT_NOTE_PREFIX",
    "IntentBook",
    "IntentRule",
    "IntentTrigger",
    "intent_note",
    "intent_system_note",
    "normalize_words",
]

IntentTrigger = Literal["dtmf", "transcript"]

INTENT_NOTE_PREFIX: Final = "Gateway note: "
"""Every note about an intent starts with this (the system prompt says what the notes are)."""

_NOT_WORD: Final = re.compile(r"[^\w]+|_+")
MAX_TRANSCRIPT_CHARS: Final = 2000
"""Only this much of a transcript is searched (a caller turn is a few sentences; this bounds the
work a runaway transcript can cost a pattern)."""


def normalize_words(text: str) -> str:
    """Lowercase ``text`` and turn every run of non-letter, non-digit characters into one space."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def _keywords(value: Sequence[str]) -> tuple[str, ...]:
    words = tuple(normalize_words(k) for k in value)
    if any(not w for w in words):
        raise ValueError("a keyword must contain a letter or a digit")
    return words


@final
@attrs.frozen
class IntentRule:
    """One ``[[intents]]`` entry, checked and compiled.

    Attributes:
        name: the intent's name (logs, the call report, the note to the model).
        prompt: the cached prompt played on a match.
        prompt_text: the prompt's words (what the note tells the model the caller heard).
        tool: the configured tool run on a match (a built-in ends or transfers the call).
        input_json: the fixed input the tool runs with (a JSON object text).
        digits: the keypad entry that triggers it (None: no DTMF trigger).
        keywords: phrases that trigger it when the caller says them (normalised by
            :func:`normalize_words`).
        pattern: a regular expression searched in the caller's transcript (None: none).
    """

    name: str
    prompt: PromptName
    prompt_text: str
    tool: str
    input_json: str = "{}"
    digits: str | None = None
    keywords: tuple[str, ...] = attrs.field(default=(), converter=_keywords)
    pattern: re.Pattern[str] | None = None

    def __attrs_post_init__(self) -> None:
        if self.digits is None and not self.keywords and self.pattern is None:
            raise ValueError(f"intent {self.name!r} has no trigger (digits, keywords or pattern)")
        if self.digits is not None and (not self.digits or not set(self.digits) <= _KEYS):
            raise ValueError(f"intent {self.name!r}: digits must be DTMF keys, got {self.digits!r}")

    def matches_transcript(self, normalized: str, text: str) -> bool:
        """True when a keyword occurs in ``normalized`` (whole words) or the pattern in ``text``."""
        padded = f" {normalized} "
        if any(f" {k} " in padded for k in self.keywords):
            return True
        return self.pattern is not None and self.pattern.search(text) is not None


_KEYS: Final = frozenset("0123456789*#ABCD")


@final
class IntentBook:
    """The configured intents, in order; see the module docstring.

    Raises:
        ValueError: two rules share a name, or two rules share the same digits.
    """

    __slots__ = ("_by_digits", "_rules")

    def __init__(self, rules: Sequence[IntentRule] = ()) -> None:
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError("intent names must be distinct")
        by_digits: dict[str, IntentRule] = {}
        for rule in rules:
            if rule.digits is None:
                continue
            if rule.digits in by_digits:
                raise ValueError(
                    f"intents {by_digits[rule.digits].name!r} and {rule.name!r} "
                    "have the same digits"
                )
            by_digits[rule.digits] = rule
        self._rules = tuple(rules)
        self._by_digits = by_digits

    @property
    def rules(self) -> tuple[IntentRule, ...]:
        """Every rule, in configuration order."""
        return self._rules

    @property
    def has_dtmf(self) -> bool:
        """True when some rule has a DTMF trigger."""
        return bool(self._by_digits)

    def __len__(self) -> int:
        return len(self._rules)

    def match_transcript(self, text: str) -> IntentRule | None:
        """The first rule the caller's FINAL transcript ``text`` matches, or None."""
        text = text[:MAX_TRANSCRIPT_CHARS]
        normalized = normalize_words(text)
        for rule in self._rules:
            if (rule.keywords or rule.pattern is not None) and rule.matches_transcript(
                normalized, text
            ):
                return rule
        return None

    def match_entry(self, digits: str) -> IntentRule | None:
        """The rule whose digits are exactly the complete keypad entry ``digits``, or None."""
        return self._by_digits.get(digits)

    def match_pending(self, digits: str) -> IntentRule | None:
        """The rule the keys pressed so far already select (see the module docstring), or None."""
        rule = self._by_digits.get(digits)
        if rule is None:
            return None
        if any(len(other) > len(digits) and other.startswith(digits) for other in self._by_digits):
            return None  # a longer entry may still come: wait for it to end
        return rule


def intent_note(
    rule: IntentRule,
    *,
    trigger: IntentTrigger,
    digits: str | None = None,
    outcome: str,
) -> str:
    """The USER text telling the model what the gateway did about an intent.

    Args:
        rule: the intent that matched.
        trigger: what matched it.
        digits: the keys the caller pressed (``trigger == "dtmf"``).
        outcome: one sentence on what the action did ("The call is being transferred to sales.",
            "The tool opening_hours answered: {...}.").
    """
    if trigger == "dtmf":
        said = f"the caller pressed {digits or ''} on the keypad (the {rule.name} shortcut)."
    else:
        said = (
            f"the caller's last words matched the {rule.name} shortcut, so your answer to them "
            "was not played."
        )
    return (
        f"{INTENT_NOTE_PREFIX}{said} The caller then heard the recorded message "
        f'"{rule.prompt_text}" {outcome}'
    )


def intent_system_note() -> str:
    """What the system prompt says about intent notes (added when intents are configured)."""
    return (
        f'Messages that start with "{INTENT_NOTE_PREFIX.strip()}" come from the phone system, '
        "not from the caller: they say what the system did for the caller (a recorded message it "
        "played, a tool it ran). Take them as true and continue the conversation from there."
    )
