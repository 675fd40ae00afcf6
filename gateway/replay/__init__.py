"""Scripted call replays: the scenario format, a simulated Twilio peer, per-call reports, the runner.

Entry points for the CLI: :func:`main_replay` (``sonic-gateway replay SCENARIO...``) and
:func:`main_demo` (``sonic-gateway demo``: every bundled scenario in ``scripts/calls/``).
"""

from __future__ import annotations

from gateway.replay.audio import load_caller_audio, speech_like_ulaw
from gateway.replay.peer import BargeInRecord, PeerResult, TimelineEvent, TurnRecord, TwilioPeer
from gateway.replay.playback import (
    AnswerEnded,
    AnswerPlayback,
    AnswerStarted,
    MarkDone,
    PlaybackBuffer,
    PlaybackEvent,
)
from gateway.replay.report import (
    AnswerHeard,
    BargeInStop,
    CallRecord,
    CallReport,
    Check,
    TurnLatency,
    TurnSplit,
    build_report,
    format_report,
    format_summary,
)
from gateway.replay.runner import (
    BUNDLED_SCENARIOS,
    CallObserver,
    ReplayStack,
    StackUnavailable,
    bundled_scenarios,
    main_demo,
    main_replay,
    replay_stack,
    run_scenario,
    step_audio,
)
from gateway.replay.scenario import (
    BargeIn,
    CallerStep,
    Dtmf,
    Expectations,
    Hangup,
    Pause,
    PeerSettings,
    Say,
    Scenario,
    ScenarioError,
    WaitForAnswer,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "BUNDLED_SCENARIOS",
    "AnswerEnded",
    "AnswerHeard",
    "AnswerPlayback",
    "AnswerStarted",
    "BargeIn",
    "BargeInRecord",
    "BargeInStop",
    "CallObserver",
    "CallRecord",
    "CallReport",
    "CallerStep",
    "Check",
    "Dtmf",
    "Expectations",
    "Hangup",
    "MarkDone",
    "Pause",
    "PeerResult",
    "PeerSettings",
    "PlaybackBuffer",
    "PlaybackEvent",
    "ReplayStack",
    "Say",
    "Scenario",
    "ScenarioError",
    "StackUnavailable",
    "TimelineEvent",
    "TurnLatency",
    "TurnRecord",
    "TurnSplit",
    "TwilioPeer",
    "WaitForAnswer",
    "build_report",
    "bundled_scenarios",
    "format_report",
    "format_summary",
    "load_caller_audio",
    "load_scenario",
    "main_demo",
    "main_replay",
    "parse_scenario",
    "replay_stack",
    "run_scenario",
    "speech_like_ulaw",
    "step_audio",
]
