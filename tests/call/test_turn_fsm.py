"""TurnTaker's Mealy machine, driven with explicit times and no event loop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.call.protocol import (
    AssistantTurnEnded,
    AssistantTurnStarted,
    BargeInDetected,
    CallerSpeechStarted,
    CallerSpeechStopped,
    ClearPlayback,
    HeardReport,
    IntentMatched,
    LocalBargeIn,
    PlaybackFinished,
    PlaybackStarted,
    PlayPrompt,
    PromptPlayed,
    UserTranscribed,
)
from actors.call.report import BargeInRecord, IntentLatency, TurnLatency
from actors.call.turn_fsm import (
    Floor,
    GuardElapsed,
    TurnAction,
    TurnInput,
    TurnSettings,
    TurnState,
    decide,
    initial_state,
)

DEFAULT = TurnSettings()
LOCAL = TurnSettings(local_vad_barge_in=True, min_barge_in_speech_ms=300)


def run(
    msgs: list[TurnInput], settings_: TurnSettings = DEFAULT, state: TurnState | None = None
) -> tuple[TurnState, list[TurnAction]]:
    state = state or TurnState()
    actions: list[TurnAction] = []
    for msg in msgs:
        state, out = decide(state, msg, msg.at, settings_)
        actions.extend(out)
    return state, actions


def finished(
    turn: int,
    at: float,
    *,
    heard: float = 1000,
    total: float = 1000,
    gen: int = 0,
    interrupted: bool = False,
) -> PlaybackFinished:
    return PlaybackFinished(
        turn_id=turn,
        generation=gen,
        position_ms=heard,
        total_ms=total,
        interrupted=interrupted,
        at=at,
    )


GREETING_DONE = [PlaybackStarted(turn_id=0, generation=0, at=0.03), finished(0, 2.0)]


def test_greeting_then_idle() -> None:
    state, actions = run(GREETING_DONE)
    assert state.floor is Floor.IDLE
    assert state.open_turns == ()
    assert actions == []  # the greeting has no end of speech: the report times it


def test_turn_latency_split_from_vad_end_of_speech() -> None:
    state, actions = run(
        [
            *GREETING_DONE,
            CallerSpeechStarted(started_at=3.0, at=3.05),
            CallerSpeechStopped(ended_at=4.0, speech_ms=1000, at=4.3),
            UserTranscribed(text="hello", at=4.4),
            AssistantTurnStarted(turn_id=1, at=4.9),
            PlaybackStarted(turn_id=1, generation=0, at=4.905),
        ]
    )
    assert state.floor is Floor.ASSISTANT
    lat = [a for a in actions if isinstance(a, TurnLatency)][-1]
    assert lat.turn_id == 1
    assert lat.end_of_speech == "vad"
    assert lat.model_ms == pytest.approx(900.0)
    assert lat.gateway_ms == pytest.approx(5.0)
    assert lat.total_ms == pytest.approx(905.0)


def test_late_vad_stop_settles_a_turn_that_started_while_the_vad_still_heard_speech() -> None:
    # Sonic's endpointing (300 ms) beats the VAD's 400 ms release: the turn starts first.
    state, actions = run(
        [
            *GREETING_DONE,
            CallerSpeechStarted(started_at=3.0, at=3.06),
            UserTranscribed(text="hello", at=4.35),
            AssistantTurnStarted(turn_id=1, at=4.4),
            PlaybackStarted(turn_id=1, generation=0, at=4.401),
        ]
    )
    assert not [a for a in actions if isinstance(a, TurnLatency)]
    stopped = CallerSpeechStopped(ended_at=4.0, speech_ms=1000, at=4.4)
    state, actions = decide(state, stopped, 4.45, DEFAULT)
    forwarded, lat = actions
    assert forwarded == stopped  # SonicSession learns of it too (it now owes an answer)
    assert isinstance(lat, TurnLatency)
    assert lat.end_of_speech == "vad"
    assert lat.model_ms == pytest.approx(400.0)
    assert lat.gateway_ms == pytest.approx(1.0)
    assert state.end_of_speech_at is None  # consumed: not reused by the next turn


def test_transcript_is_the_fallback_end_of_speech() -> None:
    _, actions = run(
        [
            *GREETING_DONE,
            UserTranscribed(text="hello", at=4.4),
            AssistantTurnStarted(turn_id=1, at=4.9),
            PlaybackStarted(turn_id=1, generation=0, at=4.91),
        ]
    )
    lat = [a for a in actions if isinstance(a, TurnLatency)][-1]
    assert lat.end_of_speech == "transcript"
    assert lat.model_ms == pytest.approx(500.0)


def test_floor_walk_caller_thinking_assistant_idle() -> None:
    state, _ = run(GREETING_DONE)
    state, _ = decide(state, CallerSpeechStarted(started_at=3.0, at=3.0), 3.0, DEFAULT)
    assert state.floor is Floor.CALLER
    state, _ = decide(
        state, CallerSpeechStopped(ended_at=4.0, speech_ms=1000, at=4.2), 4.2, DEFAULT
    )
    assert state.floor is Floor.THINKING
    state, _ = decide(state, AssistantTurnStarted(turn_id=1, at=5.0), 5.0, DEFAULT)
    assert state.floor is Floor.ASSISTANT
    state, _ = decide(state, AssistantTurnEnded(turn_id=1, at=5.5), 5.5, DEFAULT)
    state, _ = decide(state, finished(1, 7.0), 7.0, DEFAULT)
    assert state.floor is Floor.IDLE


def test_sonic_barge_in_clears_once_per_generation_and_reports_heard() -> None:
    state, actions = run(
        [
            *GREETING_DONE,
            CallerSpeechStopped(ended_at=4.0, speech_ms=800, at=4.2),
            AssistantTurnStarted(turn_id=1, at=5.0),
            PlaybackStarted(turn_id=1, generation=0, at=5.01),
            BargeInDetected(source="sonic_marker", at=6.0),
            BargeInDetected(source="sonic_interrupted", at=6.02),
        ]
    )
    clears = [a for a in actions if isinstance(a, ClearPlayback)]
    assert len(clears) == 1
    assert clears[0].generation == 1
    assert clears[0].through_turn_id == 1
    assert clears[0].source == "sonic_marker"
    assert clears[0].signal_at == 6.0
    assert next(a for a in actions if isinstance(a, BargeInRecord)).generation == 1
    assert state.floor is Floor.INTERRUPTED
    assert state.barge_ins == 1
    assert state.barge_ins_ignored == 1
    # Playback reports what was heard; the session gets a HeardReport; stale start ignored.
    state, out = decide(state, PlaybackStarted(turn_id=1, generation=0, at=6.05), 6.05, DEFAULT)
    assert out == []
    state, out = decide(
        state, finished(1, 6.01, heard=900, total=3000, interrupted=True), 6.01, DEFAULT
    )
    assert out == [HeardReport(turn_id=1, heard_ms=900, total_ms=3000, at=6.01)]
    assert state.floor is Floor.IDLE
    # Late turn start of the interrupted turn is stale; the next turn is not.
    state, _ = decide(state, AssistantTurnStarted(turn_id=1, at=6.1), 6.1, DEFAULT)
    assert state.open_turns == ()
    state, _ = decide(state, AssistantTurnStarted(turn_id=2, at=8.0), 8.0, DEFAULT)
    assert state.floor is Floor.ASSISTANT


def test_barge_in_without_assistant_speaking_is_ignored() -> None:
    state, actions = run([*GREETING_DONE, BargeInDetected(source="sonic_interrupted", at=3.0)])
    assert not any(isinstance(a, ClearPlayback) for a in actions)
    assert state.barge_ins_ignored == 1


def test_local_vad_barge_in_off_by_default() -> None:
    state, actions = run(
        [
            CallerSpeechStarted(started_at=0.5, at=0.55),
            GuardElapsed(at=0.9),
        ]
    )
    assert state.deadline is None
    assert not any(isinstance(a, ClearPlayback) for a in actions)


def test_local_vad_guard_ignores_a_cough_and_fires_on_real_speech() -> None:
    # Greeting (turn 0) is playing; a 150 ms cough does not interrupt.
    cough = CallerSpeechStopped(ended_at=0.65, speech_ms=150, at=0.85)
    state, actions = run([CallerSpeechStarted(started_at=0.50, at=0.55), cough], LOCAL)
    assert state.deadline is None
    assert state.false_barge_ins_avoided == 1
    assert actions == [cough]  # only forwarded to SonicSession: no clear
    # Real speech: the guard arms at onset + 300 ms and fires.
    state, _ = decide(state, CallerSpeechStarted(started_at=1.0, at=1.05), 1.05, LOCAL)
    assert state.deadline == pytest.approx(1.3)
    state, actions = decide(state, GuardElapsed(at=1.3), 1.3, LOCAL)
    clears = [a for a in actions if isinstance(a, ClearPlayback)]
    assert len(clears) == 1
    assert clears[0].source == "local_vad"
    assert clears[0].through_turn_id == 0


def test_local_vad_guard_fires_at_once_when_vad_decided_late() -> None:
    state, actions = run([CallerSpeechStarted(started_at=0.5, at=0.9)], LOCAL)
    assert any(isinstance(a, ClearPlayback) for a in actions)
    assert state.floor is Floor.INTERRUPTED


def test_guard_cancelled_when_assistant_finishes_first() -> None:
    state, _ = run([CallerSpeechStarted(started_at=1.9, at=1.95), finished(0, 2.0)], LOCAL)
    assert state.deadline is None
    assert state.floor is Floor.CALLER
    state, actions = decide(state, GuardElapsed(at=2.2), 2.2, LOCAL)
    assert actions == []


_inputs = st.lists(
    st.one_of(
        st.builds(lambda: CallerSpeechStarted(started_at=0.0, at=0.0)),
        st.builds(lambda: CallerSpeechStopped(ended_at=0.0, speech_ms=100, at=0.0)),
        st.builds(lambda: UserTranscribed(text="x", at=0.0)),
        st.integers(0, 4).map(lambda t: AssistantTurnStarted(turn_id=t, at=0.0)),
        st.integers(0, 4).map(lambda t: AssistantTurnEnded(turn_id=t, at=0.0)),
        st.integers(0, 4).map(lambda t: PlaybackStarted(turn_id=t, generation=0, at=0.0)),
        st.tuples(st.integers(0, 4), st.booleans()).map(
            lambda ti: finished(ti[0], 0.0, interrupted=ti[1])
        ),
        st.sampled_from(["sonic_marker", "sonic_interrupted"]).map(
            lambda s: BargeInDetected(source=s, at=0.0)  # type: ignore[arg-type]
        ),
        st.builds(lambda: GuardElapsed(at=0.0)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_inputs, st.booleans())
def test_properties_generation_monotonic_one_clear_per_generation(
    msgs: list[TurnInput], local: bool
) -> None:
    cfg = LOCAL if local else DEFAULT
    state = TurnState()
    generations: list[int] = []
    for i, msg in enumerate(msgs):
        now = float(i)
        before = state.generation
        state, out = decide(state, msg, now, cfg)
        clears = [a for a in out if isinstance(a, ClearPlayback)]
        assert len(clears) <= 1
        if clears:
            assert clears[0].generation == before + 1
            generations.append(clears[0].generation)
        else:
            assert state.generation == before
        # The floor is ASSISTANT only while some uninterrupted turn is open.
        if state.floor is Floor.ASSISTANT:
            assert state.open_turns
    assert generations == sorted(set(generations))


# ------------------------------------------------------------------ intents

CLIP = b"\xff" * 800


def intent(turn: int, at: float, *, trigger_at: float | None = None) -> IntentMatched:
    return IntentMatched(turn_id=turn, intent="operator", ulaw=CLIP, trigger_at=trigger_at, at=at)


def test_an_intent_during_the_greeting_clears_it_and_plays_the_prompt_at_once() -> None:
    state, actions = run([PlaybackStarted(turn_id=0, generation=0, at=0.03), intent(1, 0.5)])
    assert actions == [
        ClearPlayback(generation=1, through_turn_id=0, source="intent", signal_at=0.5, at=0.5),
        PlayPrompt(turn_id=1, ulaw=CLIP, at=0.5),
    ]
    assert state.floor is Floor.ASSISTANT
    assert state.barge_ins == 0  # taking the floor is not a barge-in
    assert [t.turn_id for t in state.speaking_turns()] == [1]


def test_a_key_intent_is_timed_from_the_key_to_the_prompts_first_media() -> None:
    _, actions = run(
        [
            *GREETING_DONE,
            intent(1, 3.002, trigger_at=3.0),
            PlaybackStarted(turn_id=1, generation=0, at=3.005),
        ]
    )
    assert actions == [
        PlayPrompt(turn_id=1, ulaw=CLIP, at=3.002),  # nothing was playing: nothing to clear
        IntentLatency(
            turn_id=1,
            intent="operator",
            caller="dtmf",
            caller_ms=2.0,
            media_ms=3.0,
            total_ms=5.0,
        ),
    ]


def test_a_spoken_intent_is_timed_from_the_end_of_speech_and_consumes_it() -> None:
    state, actions = run(
        [
            *GREETING_DONE,
            CallerSpeechStarted(started_at=3.0, at=3.05),
            CallerSpeechStopped(ended_at=4.0, speech_ms=1000, at=4.4),
            UserTranscribed(text="a person please", at=5.5),
            intent(1, 5.501),
            PlaybackStarted(turn_id=1, generation=0, at=5.503),
        ]
    )
    latency = actions[-1]
    assert isinstance(latency, IntentLatency)
    assert (latency.caller, latency.caller_ms, latency.media_ms) == ("vad", 1501.0, 2.0)
    assert latency.total_ms == 1503.0
    assert state.end_of_speech_at is None


def test_the_prompts_end_goes_back_to_sonic_session_not_a_heard_report() -> None:
    state, actions = run(
        [
            *GREETING_DONE,
            intent(1, 3.0, trigger_at=3.0),
            PlaybackStarted(turn_id=1, generation=0, at=3.0),
            finished(1, 4.5, heard=400, total=1000, interrupted=True),
        ]
    )
    assert actions[-1] == PromptPlayed(turn_id=1, interrupted=True, at=4.5)
    assert not [a for a in actions if isinstance(a, HeardReport)]
    assert state.floor is Floor.IDLE


def test_an_intent_while_the_model_speaks_cuts_it_and_its_heard_share_is_reported() -> None:
    state, actions = run(
        [
            *GREETING_DONE,
            AssistantTurnStarted(turn_id=1, at=3.0),
            PlaybackStarted(turn_id=1, generation=0, at=3.001),
            intent(2, 3.5, trigger_at=3.5),
            finished(1, 3.51, heard=480, total=2000, gen=0, interrupted=True),
        ]
    )
    assert (
        ClearPlayback(generation=1, through_turn_id=1, source="intent", signal_at=3.5, at=3.5)
        in actions
    )
    assert actions[-1] == HeardReport(turn_id=1, heard_ms=480, total_ms=2000, at=3.51)
    assert [t.turn_id for t in state.speaking_turns()] == [2]
    assert state.floor is Floor.ASSISTANT


def test_without_a_greeting_the_first_words_are_not_a_barge_in() -> None:
    # A call with no greeting has no turn 0 playing: the floor starts idle, nothing to clear.
    settings_ = TurnSettings(local_vad_barge_in=True, min_barge_in_speech_ms=300, greeting=False)
    state = initial_state(settings_)
    assert state.floor is Floor.IDLE
    assert state.open_turns == ()
    state, actions = run(
        [CallerSpeechStarted(started_at=0.5, at=0.55), GuardElapsed(at=0.8)], settings_, state
    )
    assert state.floor is Floor.CALLER
    assert not [a for a in actions if isinstance(a, ClearPlayback)]
    assert initial_state(LOCAL) == TurnState()  # with a greeting: turn 0 is playing


def test_a_local_vad_barge_in_is_reported_to_the_session_and_a_sonic_one_is_not() -> None:
    _, local = run([CallerSpeechStarted(started_at=1.0, at=1.05), GuardElapsed(at=1.3)], LOCAL)
    assert [a for a in local if isinstance(a, LocalBargeIn)] == [LocalBargeIn(turn_id=0, at=1.3)]
    _, sonic = run(
        [
            *GREETING_DONE,
            AssistantTurnStarted(turn_id=1, at=5.0),
            BargeInDetected(source="sonic_marker", at=6.0),
        ]
    )
    assert any(isinstance(a, ClearPlayback) for a in sonic)
    assert not any(isinstance(a, LocalBargeIn) for a in sonic)
