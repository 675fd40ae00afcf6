"""Stream tokens: minted by the webhook, spent once by the media socket (clock under test control)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.stream_token import StreamTokens, derive_key

KEY = derive_key("test-auth-token-123")
SID = st.text(alphabet="0123456789abcdef", min_size=1, max_size=34).map(lambda s: "CA" + s)
ACCOUNT = st.text(alphabet="0123456789abcdef", min_size=1, max_size=34).map(lambda s: "AC" + s)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tokens(clock: Clock, *, ttl_s: float = 60.0, max_seen: int = 10_000) -> StreamTokens:
    return StreamTokens(KEY, ttl_s=ttl_s, clock=clock, max_seen=max_seen)


@given(call_sid=SID, account_sid=ACCOUNT, elapsed=st.floats(0, 59.9))
def test_round_trip_within_ttl(call_sid: str, account_sid: str, elapsed: float) -> None:
    clock = Clock()
    stream_tokens = tokens(clock)
    token = stream_tokens.mint(call_sid, account_sid)
    clock.now += elapsed
    assert stream_tokens.verify(token, call_sid, account_sid) is None


@given(call_sid=SID, other=SID, account_sid=ACCOUNT)
def test_another_call_sid_fails(call_sid: str, other: str, account_sid: str) -> None:
    stream_tokens = tokens(Clock())
    token = stream_tokens.mint(call_sid, account_sid)
    expected = None if other == call_sid else "bad_stream_token"
    assert stream_tokens.verify(token, other, account_sid) == expected


@given(call_sid=SID, account_sid=ACCOUNT, other=ACCOUNT)
def test_another_account_fails(call_sid: str, account_sid: str, other: str) -> None:
    stream_tokens = tokens(Clock())
    token = stream_tokens.mint(call_sid, account_sid)
    expected = None if other == account_sid else "bad_stream_token"
    assert stream_tokens.verify(token, call_sid, other) == expected


@given(call_sid=SID, account_sid=ACCOUNT, delta=st.integers(-(10**6), 10**6).filter(bool))
def test_a_changed_expiry_fails(call_sid: str, account_sid: str, delta: int) -> None:
    stream_tokens = tokens(Clock())
    expiry, _, mac = stream_tokens.mint(call_sid, account_sid).partition(".")
    forged = f"{max(0, int(expiry) + delta)}.{mac}"
    assert stream_tokens.verify(forged, call_sid, account_sid) == "bad_stream_token"


@given(call_sid=SID, account_sid=ACCOUNT, data=st.data())
def test_any_changed_character_fails(call_sid: str, account_sid: str, data: st.DataObject) -> None:
    stream_tokens = tokens(Clock())
    token = stream_tokens.mint(call_sid, account_sid)
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != token[index]))
    forged = token[:index] + char + token[index + 1 :]
    assert stream_tokens.verify(forged, call_sid, account_sid) is not None


@given(junk=st.one_of(st.none(), st.text(max_size=200)))
def test_junk_fails_without_raising(junk: str | None) -> None:
    assert tokens(Clock()).verify(junk, "CA1", "AC1") == "bad_stream_token"


def test_another_key_fails() -> None:
    clock = Clock()
    token = tokens(clock).mint("CA1", "AC1")
    other = StreamTokens(derive_key("another-auth-token"), ttl_s=60, clock=clock)
    assert other.verify(token, "CA1", "AC1") == "bad_stream_token"


@given(call_sid=SID, account_sid=ACCOUNT, late=st.floats(61.0, 1e6))
def test_expired_fails(call_sid: str, account_sid: str, late: float) -> None:
    clock = Clock()
    stream_tokens = tokens(clock)
    token = stream_tokens.mint(call_sid, account_sid)
    clock.now += late
    assert stream_tokens.verify(token, call_sid, account_sid) == "expired_stream_token"


@given(call_sid=SID, account_sid=ACCOUNT, later=st.floats(0, 59.9))
def test_a_token_is_accepted_once(call_sid: str, account_sid: str, later: float) -> None:
    clock = Clock()
    stream_tokens = tokens(clock)
    token = stream_tokens.mint(call_sid, account_sid)
    assert stream_tokens.verify(token, call_sid, account_sid) is None
    clock.now += later
    assert stream_tokens.verify(token, call_sid, account_sid) == "replayed_stream_token"


@given(
    steps=st.lists(st.tuples(st.floats(0, 30), st.integers(0, 5)), min_size=1, max_size=60),
    max_seen=st.integers(1, 8),
)
def test_the_spent_set_stays_bounded(steps: list[tuple[float, int]], max_seen: int) -> None:
    clock = Clock()
    stream_tokens = tokens(clock, ttl_s=10.0, max_seen=max_seen)
    spent: list[tuple[str, str]] = []
    for n, (advance, replays) in enumerate(steps):
        clock.now += advance
        call_sid = f"CA{n}"
        token = stream_tokens.mint(call_sid, "AC1")
        outcome = stream_tokens.verify(token, call_sid, "AC1")
        assert outcome in (None, "replay_cache_full")
        assert stream_tokens.seen_count <= max_seen
        if outcome is None:
            spent.append((token, call_sid))
        # Every spent token stays refused, whether it is still remembered or has expired.
        for old, old_sid in spent[-replays:] if replays else []:
            assert stream_tokens.verify(old, old_sid, "AC1") in (
                "replayed_stream_token",
                "expired_stream_token",
            )


def test_a_full_spent_set_refuses_until_tokens_expire() -> None:
    clock = Clock()
    stream_tokens = tokens(clock, ttl_s=10.0, max_seen=2)
    for sid in ("CA1", "CA2"):
        assert stream_tokens.verify(stream_tokens.mint(sid, "AC1"), sid, "AC1") is None
    third = stream_tokens.mint("CA3", "AC1")
    assert stream_tokens.verify(third, "CA3", "AC1") == "replay_cache_full"
    clock.now += 11.0
    assert stream_tokens.verify(stream_tokens.mint("CA4", "AC1"), "CA4", "AC1") is None
    assert stream_tokens.seen_count == 1


def test_bad_settings_refused() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        StreamTokens(KEY, ttl_s=0)
