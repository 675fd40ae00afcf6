"""DigitCollector: keys grouped into entries by terminator, inter-digit timeout and length limit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.call.dtmf import DigitCollector, DtmfEntry, DtmfSettings

KEYS = "0123456789*#"


def drive(collector: DigitCollector, presses: list[tuple[str, float]]) -> list[DtmfEntry]:
    """What the shell does: before each key, expire at the deadline if it passed; at the end, wait."""
    entries: list[DtmfEntry] = []
    for key, at in presses:
        deadline = collector.deadline
        if deadline is not None and deadline <= at:
            expired = collector.expire(at)
            assert expired is not None
            entries.append(expired)
        entry = collector.press(key, at)
        if entry is not None:
            entries.append(entry)
    deadline = collector.deadline
    if deadline is not None:
        assert collector.expire(deadline - 1e-6) is None
        last = collector.expire(deadline)
        assert last is not None
        entries.append(last)
    assert collector.deadline is None
    return entries


def test_terminator_ends_the_entry_at_once_without_the_terminator() -> None:
    c = DigitCollector(DtmfSettings())
    assert [c.press(k, 0.1 * i) for i, k in enumerate("123")] == [None, None, None]
    assert c.pending == "123"
    assert c.press("#", 0.4) == DtmfEntry(digits="123", ended_by="terminator", at=0.4)
    assert c.deadline is None


def test_timeout_ends_the_entry_interdigit_after_the_last_key() -> None:
    c = DigitCollector(DtmfSettings(interdigit_ms=2000))
    c.press("4", 10.0)
    c.press("2", 11.0)
    assert c.deadline == pytest.approx(13.0)
    assert c.expire(12.9) is None
    assert c.expire(13.5) == DtmfEntry(digits="42", ended_by="timeout", at=pytest.approx(13.0))
    assert c.expire(20.0) is None


def test_max_digits_ends_the_entry_and_swallows_a_following_terminator() -> None:
    c = DigitCollector(DtmfSettings(max_digits=3))
    assert c.press("1", 0.0) is None
    assert c.press("2", 0.1) is None
    assert c.press("3", 0.2) == DtmfEntry(digits="123", ended_by="max_digits", at=0.2)
    assert c.press("#", 0.5) is None  # closes the entry the limit already ended
    assert c.press("#", 0.6) == DtmfEntry(digits="", ended_by="terminator", at=0.6)


def test_terminator_long_after_a_full_entry_is_an_entry_of_its_own() -> None:
    c = DigitCollector(DtmfSettings(max_digits=1, interdigit_ms=1000))
    assert c.press("7", 0.0) == DtmfEntry(digits="7", ended_by="max_digits", at=0.0)
    assert c.press("#", 5.0) == DtmfEntry(digits="", ended_by="terminator", at=5.0)


def test_empty_terminator_makes_hash_a_digit() -> None:
    c = DigitCollector(DtmfSettings(terminator=""))
    c.press("1", 0.0)
    assert c.press("#", 0.1) is None
    assert c.expire(10.0) == DtmfEntry(digits="1#", ended_by="timeout", at=pytest.approx(2.1))


def test_star_terminator() -> None:
    c = DigitCollector(DtmfSettings(terminator="*"))
    c.press("#", 0.0)
    assert c.press("*", 0.1) == DtmfEntry(digits="#", ended_by="terminator", at=0.1)


@pytest.mark.parametrize(
    "kwargs", [{"terminator": "x"}, {"terminator": "##"}, {"interdigit_ms": 0}, {"max_digits": 0}]
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        DtmfSettings(**kwargs)  # type: ignore[arg-type]


def test_a_key_that_is_not_dtmf_is_refused() -> None:
    with pytest.raises(ValueError, match="not a DTMF key"):
        DigitCollector(DtmfSettings()).press("x", 0.0)


# Gaps and timeouts in steps of 125 ms: exact binary fractions of a second, so the oracle's sums
# and the collector's agree to the last bit.
STEP_MS = 125
presses = st.lists(
    st.tuples(
        st.sampled_from(KEYS), st.integers(min_value=0, max_value=32).map(lambda n: n * STEP_MS)
    ),
    max_size=60,
)
interdigit = st.integers(min_value=1, max_value=24).map(lambda n: n * STEP_MS)


def _timeline(raw: list[tuple[str, int]]) -> list[tuple[str, float]]:
    """Keys with gaps in ms -> keys at absolute times in seconds."""
    out, t = [], 0.0
    for key, gap_ms in raw:
        t += gap_ms / 1000.0
        out.append((key, t))
    return out


@settings(max_examples=300, deadline=None)
@given(
    raw=presses,
    interdigit_ms=interdigit,
    terminator=st.sampled_from(["#", "*", ""]),
    max_digits=st.integers(min_value=1, max_value=8),
)
def test_no_key_is_lost_duplicated_or_reordered(
    raw: list[tuple[str, int]], interdigit_ms: int, terminator: str, max_digits: int
) -> None:
    timeline = _timeline(raw)
    collector = DigitCollector(
        DtmfSettings(interdigit_ms=interdigit_ms, terminator=terminator, max_digits=max_digits)
    )
    entries = drive(collector, timeline)
    typed = "".join(k for k, _ in timeline if not terminator or k != terminator)
    assert "".join(e.digits for e in entries) == typed
    for entry in entries:
        assert 0 <= len(entry.digits) <= max_digits
        assert not terminator or terminator not in entry.digits
        assert entry.digits or entry.ended_by == "terminator"
        if entry.ended_by == "max_digits":
            assert len(entry.digits) == max_digits
        else:
            assert len(entry.digits) < max_digits
    assert [e.at for e in entries] == sorted(e.at for e in entries)


@settings(max_examples=300, deadline=None)
@given(raw=presses, interdigit_ms=interdigit)
def test_an_entry_ends_by_timeout_only_after_a_long_enough_gap(
    raw: list[tuple[str, int]], interdigit_ms: int
) -> None:
    """Without terminator and length limit, entries are exactly the runs of keys split at gaps of
    at least the inter-digit timeout."""
    timeline = _timeline(raw)
    collector = DigitCollector(
        DtmfSettings(interdigit_ms=interdigit_ms, terminator="", max_digits=10**6)
    )
    entries = drive(collector, timeline)
    expected: list[str] = []
    last: float | None = None
    for key, at in timeline:
        if last is None or at - last >= interdigit_ms / 1000.0:
            expected.append("")
        expected[-1] += key
        last = at
    assert [e.digits for e in entries] == expected
    assert all(e.ended_by == "timeout" for e in entries)
