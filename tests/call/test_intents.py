"""Fast intents, sans I/O: matching the caller's words and keys, the note, the call's turn ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.call.intents import (
    INTENT_NOTE_PREFIX,
    IntentBook,
    IntentRule,
    intent_note,
    intent_system_note,
    normalize_words,
)
from actors.call.turn_ids import KEPT, CallTurnIds


def rule(
    name: str = "operator",
    *,
    digits: str | None = None,
    keywords: tuple[str, ...] = (),
    pattern: str | None = None,
) -> IntentRule:
    return IntentRule(
        name=name,
        prompt="transferring",
        prompt_text="Transferring your call now.",
        tool="transfer_call",
        input_json='{"target":"sales"}',
        digits=digits,
        keywords=keywords,
        pattern=None if pattern is None else re.compile(pattern, re.IGNORECASE),
    )


# ------------------------------------------------------------------ transcripts


@pytest.mark.parametrize(
    "text",
    [
        "I want to talk to a person.",
        "A PERSON, please!",
        "can i speak to a   person",
        "Person-to-person? No: a person.",
    ],
)
def test_a_keyword_matches_as_whole_words_ignoring_case_and_punctuation(text: str) -> None:
    book = IntentBook([rule(keywords=("a person",))])
    matched = book.match_transcript(text)
    assert matched is not None
    assert matched.name == "operator"


@pytest.mark.parametrize("text", ["a personal loan", "apersonal", "person", "a pers on"])
def test_a_keyword_does_not_match_part_of_a_word_or_a_different_phrase(text: str) -> None:
    assert IntentBook([rule(keywords=("a person",))]).match_transcript(text) is None


def test_a_pattern_is_searched_case_insensitively() -> None:
    book = IntentBook([rule(pattern=r"\b(agent|representative)s?\b")])
    assert book.match_transcript("Get me a REPRESENTATIVE now") is not None
    assert book.match_transcript("my agents are busy") is not None
    assert book.match_transcript("agentic workflows") is None


def test_the_first_matching_rule_wins_and_dtmf_only_rules_never_match_words() -> None:
    book = IntentBook(
        [
            rule("keys", digits="0"),
            rule("first", keywords=("help",)),
            rule("second", keywords=("help",), pattern="help"),
        ]
    )
    matched = book.match_transcript("help")
    assert matched is not None
    assert matched.name == "first"
    assert book.match_transcript("0") is None


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789éß", min_size=1, max_size=8)
separators = st.text(alphabet=" ,.!?;:-'\"()\t\n", min_size=1, max_size=3)


@given(
    st.lists(words, min_size=1, max_size=12),
    st.data(),
)
def test_any_run_of_the_callers_words_matches_whatever_the_punctuation(
    spoken: list[str], data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, len(spoken) - 1))
    stop = data.draw(st.integers(start + 1, len(spoken)))
    keyword = " ".join(spoken[start:stop])
    gaps = data.draw(st.lists(separators, min_size=len(spoken) + 1, max_size=len(spoken) + 1))
    case = data.draw(st.sampled_from([str.lower, str.upper, str.title]))
    text = gaps[0] + "".join(case(w) + g for w, g in zip(spoken, gaps[1:], strict=True))
    assert IntentBook([rule(keywords=(keyword,))]).match_transcript(text) is not None


@given(st.text(max_size=200))
def test_normalizing_is_idempotent_and_leaves_single_spaced_lowercase_words(text: str) -> None:
    once = normalize_words(text)
    assert normalize_words(once) == once
    assert "  " not in once
    assert once == once.strip()
    assert once == once.casefold()


@given(st.text(max_size=300))
def test_a_rule_never_matches_text_without_its_keyword_words(text: str) -> None:
    keyword = "zqxv"
    matched = IntentBook([rule(keywords=(keyword,))]).match_transcript(text)
    assert (matched is not None) == (keyword in normalize_words(text).split())


# ------------------------------------------------------------------ keys


def test_an_entry_matches_the_rule_with_exactly_its_digits() -> None:
    book = IntentBook([rule("operator", digits="0"), rule("hours", digits="12")])
    assert (book.match_entry("0") or rule()).name == "operator"
    assert (book.match_entry("12") or rule()).name == "hours"
    assert book.match_entry("1") is None
    assert book.match_entry("120") is None


def test_digits_no_other_rule_extends_match_on_the_key_itself() -> None:
    book = IntentBook([rule("one", digits="1"), rule("twelve", digits="12"), rule("z", digits="0")])
    assert book.match_pending("0") is not None  # nothing starts with 0: no need to wait
    assert book.match_pending("1") is None  # 12 may still come: wait for the entry to end
    assert (book.match_pending("12") or rule()).name == "twelve"
    assert book.match_pending("3") is None


@given(st.lists(st.text(alphabet="0123*#", min_size=1, max_size=4), unique=True, max_size=8))
def test_an_early_match_is_never_a_prefix_of_another_rules_digits(codes: list[str]) -> None:
    book = IntentBook([rule(f"r{i}", digits=code) for i, code in enumerate(codes)])
    for code in codes:
        early = book.match_pending(code)
        longer = [c for c in codes if c != code and c.startswith(code)]
        assert (early is None) == bool(longer)
        assert (book.match_entry(code) or rule()).digits == code


def test_rules_need_a_trigger_distinct_names_and_distinct_digits() -> None:
    with pytest.raises(ValueError, match="no trigger"):
        rule()
    with pytest.raises(ValueError, match="DTMF keys"):
        rule(digits="0x")
    with pytest.raises(ValueError, match="letter or a digit"):
        rule(keywords=("?!",))
    with pytest.raises(ValueError, match="distinct"):
        IntentBook([rule("a", digits="1"), rule("a", digits="2")])
    with pytest.raises(ValueError, match="same digits"):
        IntentBook([rule("a", digits="1"), rule("b", digits="1")])


# ------------------------------------------------------------------ what the model is told


def test_the_note_says_what_the_caller_did_heard_and_what_happened() -> None:
    keys = intent_note(
        rule(digits="0"),
        trigger="dtmf",
        digits="0",
        outcome="The call is being transferred to sales.",
    )
    assert keys.startswith(INTENT_NOTE_PREFIX)
    assert "pressed 0" in keys
    assert '"Transferring your call now."' in keys
    assert keys.endswith("The call is being transferred to sales.")
    words_ = intent_note(rule(keywords=("x",)), trigger="transcript", outcome="Done.")
    assert "was not played" in words_  # the model's own answer to those words was withheld
    assert INTENT_NOTE_PREFIX.strip() in intent_system_note()


# ------------------------------------------------------------------ the call's turn ids


def test_a_prompt_takes_the_next_id_and_later_sonic_turns_follow_it() -> None:
    ids = CallTurnIds()
    assert ids.call_id(1) == (1, True)
    assert ids.call_id(1) == (1, False)
    prompt = ids.allocate()
    assert prompt == 2
    assert ids.call_id(2) == (3, True)  # Sonic's second turn comes after the prompt
    assert ids.call_id(1) == (1, False)  # late audio of the first keeps its id
    assert ids.sonic_id(3) == 2
    assert ids.sonic_id(prompt) is None
    assert ids.last == 3


def test_a_restarted_session_numbers_after_the_calls_last_turn() -> None:
    ids = CallTurnIds(offset=7)
    assert ids.call_id(1) == (8, True)
    assert ids.allocate() == 9
    assert ids.call_id(5) == (10, True)


@given(st.lists(st.one_of(st.integers(1, 200), st.none()), max_size=300))
def test_ids_are_unique_and_grow_in_the_order_turns_appear(steps: list[int | None]) -> None:
    ids = CallTurnIds()
    given_out: list[int] = []
    for sonic in steps:
        if sonic is None:
            given_out.append(ids.allocate())
            continue
        turn_id, new = ids.call_id(sonic)
        if new:
            given_out.append(turn_id)
    assert given_out == sorted(set(given_out))
    assert len(given_out) == len(set(given_out))
    assert len(ids._by_sonic) <= KEPT
