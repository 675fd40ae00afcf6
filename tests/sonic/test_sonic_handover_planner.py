"""The handover planner with explicit time: due time, turn boundaries, grace, failures."""

from __future__ import annotations

from actors.sonic import HandoverAction, HandoverPlanner, SonicSettings

S = SonicSettings(
    handover_after_s=360, handover_grace_s=30, handover_quiet_s=1.0, credential_refresh_margin_s=180
)


def test_waits_until_due_then_prepares() -> None:
    p = HandoverPlanner(S)
    p.stream_started(now=0.0, credentials_expire_at=None)
    assert p.decide(100.0, next_ready=False) is HandoverAction.WAIT
    assert p.next_wakeup(100.0) == 360.0
    assert p.decide(360.0, next_ready=False) is HandoverAction.PREPARE
    assert p.reason == "age"


def test_credentials_expiry_brings_the_due_time_forward() -> None:
    p = HandoverPlanner(S)
    p.stream_started(now=0.0, credentials_expire_at=300.0)
    assert p.due_at == 120.0
    assert p.reason == "credentials"


def test_switches_at_a_turn_boundary_only() -> None:
    p = HandoverPlanner(S)
    p.stream_started(now=0.0, credentials_expire_at=None)
    p.assistant_turn(now=359.0, open_=True)
    assert p.decide(361.0, next_ready=True) is HandoverAction.WAIT  # assistant speaking
    p.assistant_audio(362.0)
    p.assistant_turn(now=362.5, open_=False)
    assert p.decide(363.0, next_ready=True) is HandoverAction.WAIT  # not quiet for 1 s yet
    assert p.next_wakeup(363.0) == 363.5
    assert p.decide(363.5, next_ready=True) is HandoverAction.SWITCH


def test_idle_call_switches_as_soon_as_ready() -> None:
    p = HandoverPlanner(S)
    p.stream_started(now=0.0, credentials_expire_at=None)
    assert p.decide(360.0, next_ready=True) is HandoverAction.SWITCH


def test_grace_forces_the_switch() -> None:
    p = HandoverPlanner(S)
    p.stream_started(now=0.0, credentials_expire_at=None)
    p.assistant_turn(now=350.0, open_=True)
    assert p.decide(389.9, next_ready=True) is HandoverAction.WAIT
    assert p.next_wakeup(370.0) == 390.0
    assert p.decide(390.0, next_ready=True) is HandoverAction.SWITCH


def test_failures_back_off_then_give_up() -> None:
    s = SonicSettings(max_reopen_attempts=3, reopen_backoff_s=0.2)
    p = HandoverPlanner(s)
    assert p.stream_failed() == 0.0
    assert p.stream_failed() == 0.4
    assert p.stream_failed() == 0.8
    assert p.stream_failed() is None
    p.stream_healthy()
    assert p.stream_failed() == 0.0


def test_a_failed_next_stream_is_retried_with_capped_backoff_while_the_current_lives() -> None:
    s = SonicSettings(handover_after_s=360, reopen_backoff_s=0.2, max_reopen_attempts=3)
    p = HandoverPlanner(s)
    p.stream_started(now=0.0, credentials_expire_at=None)
    assert p.decide(360.0, next_ready=False) is HandoverAction.PREPARE
    now = 360.0
    waits = []
    for _ in range(8):  # far more than max_reopen_attempts: the current stream is healthy
        retry_at = p.prepare_failed(now, retryable=True)
        assert retry_at is not None
        waits.append(round(retry_at - now, 3))
        assert p.decide(now, next_ready=False) is HandoverAction.WAIT
        assert p.next_wakeup(now, next_ready=False) == retry_at
        now = retry_at
        assert p.decide(now, next_ready=False) is HandoverAction.PREPARE
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]  # capped at PREPARE_BACKOFF_MAX_S
    assert p.consecutive_failures == 0  # the current stream's own failures are counted apart
    p.stream_started(now=now, credentials_expire_at=None)  # handed over: a fresh count
    assert p.prepare_failures == 0


def test_a_fatal_error_preparing_stops_the_retries_for_this_stream() -> None:
    p = HandoverPlanner(S)
    p.stream_started(now=0.0, credentials_expire_at=None)
    assert p.prepare_failed(360.0, retryable=False) is None
    assert p.decide(1000.0, next_ready=False) is HandoverAction.WAIT
    assert p.next_wakeup(1000.0, next_ready=False) == float("inf")
    p.stream_started(now=1000.0, credentials_expire_at=None)
    assert p.decide(1360.0, next_ready=False) is HandoverAction.PREPARE
