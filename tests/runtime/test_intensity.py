"""RestartIntensity: the sans-I/O window logic, driven with explicit times."""

from __future__ import annotations

import pytest

from actors.runtime import RestartIntensity


def test_allows_n_restarts_in_the_window_then_refuses() -> None:
    intensity = RestartIntensity(3, 5.0)
    assert [intensity.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert intensity.record(3.0) is False


def test_restarts_spaced_beyond_the_period_never_escalate() -> None:
    intensity = RestartIntensity(1, 1.0)
    assert all(intensity.record(t * 1.5) for t in range(100))


def test_old_restarts_leave_the_window() -> None:
    intensity = RestartIntensity(2, 10.0)
    assert intensity.record(0.0)
    assert intensity.record(5.0)
    assert intensity.record(10.5)  # 0.0 is now more than 10 s ago
    assert not intensity.record(11.0)  # 5.0, 10.5, 11.0: three in 10 s
    assert intensity.recent(11.0) == 3


def test_window_edge_is_inclusive_like_otp() -> None:
    intensity = RestartIntensity(1, 2.0)
    assert intensity.record(0.0)
    assert not intensity.record(2.0)  # exactly `period` later still counts


def test_zero_restarts_means_give_up_at_once() -> None:
    assert RestartIntensity(0, 1.0).record(0.0) is False


@pytest.mark.parametrize(("n", "t"), [(-1, 1.0), (1, 0.0), (1, -2.0)])
def test_rejects_bad_parameters(n: int, t: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        RestartIntensity(n, t)
