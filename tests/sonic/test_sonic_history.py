"""History shaping for a new session, heard-truncation, and the caller-audio replay ring."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.sonic import CallerAudioRing, ConversationHistory, HistoryTurn


def _history(**kw: int) -> ConversationHistory:
    args = {"max_turns": 40, "max_bytes_per_turn": 1024, "max_total_bytes": 40 * 1024} | kw
    return ConversationHistory(**args)


def test_merges_same_role_and_starts_with_user() -> None:
    h = _history()
    h.add_assistant("Hello, how can I help?", turn_id=1)  # greeting before any caller turn
    h.add_user("I need")
    h.add_user("my order status")
    h.add_assistant("It shipped.", turn_id=2)
    assert h.shaped() == [
        HistoryTurn(role="USER", text="I need my order status"),
        HistoryTurn(role="ASSISTANT", text="It shipped."),
    ]


def test_empty_user_transcripts_are_ignored() -> None:
    h = _history()
    h.add_user("   ")
    h.add_assistant("hi", turn_id=1)
    assert h.shaped() == []


def test_trailing_user_dropped_when_replayed() -> None:
    h = _history()
    h.add_user("one")
    h.add_assistant("two", turn_id=1)
    h.add_user("three")
    assert [t.text for t in h.shaped(drop_trailing_user=True)] == ["one", "two"]
    assert [t.text for t in h.shaped()] == ["one", "two", "three"]


def test_heard_fraction_truncates_by_words_before_or_after_text() -> None:
    h = _history()
    h.add_user("question")
    h.note_heard(1, 0.5)  # PlaybackEgress reported before the FINAL text arrived
    h.add_assistant("one two three four", turn_id=1)
    h.add_user("next")
    h.add_assistant("alpha beta gamma delta", turn_id=2)
    h.truncate_last_assistant(heard_ms=250, total_ms=1000)
    assert [t.text for t in h.shaped()] == ["question", "one two", "next", "alpha"]


def test_assistant_turn_heard_not_at_all_disappears() -> None:
    h = _history()
    h.add_user("a")
    h.add_assistant("long answer", turn_id=1)
    h.note_heard(1, 0.0)
    h.add_user("b")
    assert h.shaped() == [HistoryTurn(role="USER", text="a b")]


def test_bounds_on_count_size_and_total() -> None:
    h = _history(max_turns=4, max_bytes_per_turn=16, max_total_bytes=40)
    for i in range(10):
        h.add_user(f"user turn number {i} " + "x" * 30)
        h.add_assistant(f"assistant {i}", turn_id=i + 1)
    turns = h.shaped()
    assert turns[0].role == "USER"
    assert len(turns) <= 4
    assert all(len(t.text.encode()) <= 16 for t in turns)
    assert sum(len(t.text.encode()) for t in turns) <= 40
    assert turns[-1].text == "assistant 9"
    assert h.statistics()["entries"] <= 16


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["USER", "ASSISTANT"]), st.text(min_size=0, max_size=80)),
        max_size=60,
    )
)
def test_shaped_history_always_obeys_the_rules(entries: list[tuple[str, str]]) -> None:
    h = _history(max_turns=6, max_bytes_per_turn=50, max_total_bytes=200)
    for i, (role, text) in enumerate(entries):
        if role == "USER":
            h.add_user(text)
        else:
            h.add_assistant(text, turn_id=i + 1)
    turns = h.shaped(drop_trailing_user=True)
    if turns:
        assert turns[0].role == "USER"
        assert turns[-1].role == "ASSISTANT" or len(turns) == 0
    assert len(turns) <= 6
    assert all(a.role != b.role for a, b in itertools.pairwise(turns))
    assert all(t.text and len(t.text.encode()) <= 50 for t in turns)
    assert sum(len(t.text.encode()) for t in turns) <= 200


def test_ring_keeps_the_last_bytes() -> None:
    ring = CallerAudioRing(8)
    ring.append(b"abcd")
    ring.append(b"efghij")
    assert ring.snapshot() == b"cdefghij"
    assert ring.total_bytes == 10
    empty = CallerAudioRing(0)
    empty.append(b"xy")
    assert empty.snapshot() == b""
    assert empty.total_bytes == 2


def test_a_sealed_history_is_continued_without_its_turn_ids_colliding() -> None:
    # One call's history across two conversations: both number their assistant turns from 1.
    h = _history()
    h.add_user("What are your hours?")
    h.add_assistant("Nine to five on weekdays.", turn_id=1)
    h.note_heard(2, 0.5)  # pending for a turn 2 that never came
    h.seal()  # the next conversation continues it
    h.add_user("And on Saturday?")
    h.add_assistant("Closed on Saturdays.", turn_id=2)  # not cut by the old pending report
    h.add_assistant("Sorry, I mean open till noon.", turn_id=1)
    h.note_heard(1, 0.0)  # the new turn 1 was not heard; the old turn 1 stays whole
    assert [(t.role, t.text) for t in h.shaped()] == [
        ("USER", "What are your hours?"),
        ("ASSISTANT", "Nine to five on weekdays."),
        ("USER", "And on Saturday?"),
        ("ASSISTANT", "Closed on Saturdays."),
    ]
