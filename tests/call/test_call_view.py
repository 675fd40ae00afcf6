"""The operator's view of a call: identity, age, floor, masked numbers."""

from __future__ import annotations

from actors.call import CallIdentity, CallView, call_view, mask_number
from actors.call._snapshot import with_counters
from actors.runtime import ActorSnapshot, AutoShutdown, Strategy, SupervisorSnapshot

IDENTITY = CallIdentity(
    call_sid="CA1",
    stream_sid="MZ1",
    account_sid="AC1",
    custom_parameters={"from": "+14155550167", "to": "+442071838750"},
    started_at=10.0,
)


def tree(floor: str | None) -> SupervisorSnapshot:
    base = ActorSnapshot(
        name="turn_taker",
        kind="TurnTaker",
        state="running",
        mailboxes=(),
        messages_in=0,
        messages_out=0,
        restarts=0,
        age_s=1.0,
    )
    child = base if floor is None else with_counters(base, floor=floor)
    return SupervisorSnapshot(
        name="call",
        kind="Supervisor",
        state="running",
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=3,
        period=30.0,
        auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
        restarts=0,
        restarts_performed=0,
        age_s=1.0,
        children=(child,),
        recent_events=(),
    )


def test_numbers_are_masked_to_their_last_two_digits() -> None:
    view = call_view(IDENTITY, tree("caller"), now=12.5, reveal_pii=False)
    assert isinstance(view, CallView)
    assert (view.call_sid, view.stream_sid, view.age_s, view.floor) == ("CA1", "MZ1", 2.5, "caller")
    assert view.caller == "**********67"
    assert view.called == "***********50"
    assert "4155550" not in repr(view)


def test_numbers_are_shown_when_pii_is_revealed() -> None:
    view = call_view(IDENTITY, tree("assistant"), now=10.0, reveal_pii=True)
    assert (view.caller, view.called) == ("+14155550167", "+442071838750")


def test_no_numbers_and_no_floor_yet() -> None:
    bare = CallIdentity(call_sid="CA2", stream_sid="MZ2", account_sid="AC1", started_at=5.0)
    view = call_view(bare, tree(None), now=4.0, reveal_pii=False)
    assert (view.caller, view.called, view.floor, view.age_s) == (None, None, None, 0.0)


def test_mask_hides_short_values_entirely() -> None:
    assert mask_number("1234") == "****"
    assert mask_number("") == ""
