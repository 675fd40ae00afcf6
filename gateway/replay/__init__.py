"""Scripted call replays: the scenario format, a simulated Twilio peer, per-call reports, the runner."""

from __future__ import annotations

from gateway.replay.playback import (
    AnswerEnded,
    AnswerPlayback,
    AnswerStarted,
    MarkDone,
    PlaybackBuffer,
    PlaybackEvent,
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
from gateway.replay.signature import twilio_signature

__all__ = [
    "AnswerEnded",
    "AnswerPlayback",
    "AnswerStarted",
    "BargeIn",
    "CallerStep",
    "Dtmf",
    "Expectations",
    "Hangup",
    "MarkDone",
    "Pause",
    "PeerSettings",
    "PlaybackBuffer",
    "PlaybackEvent",
    "Say",
    "Scenario",
    "ScenarioError",
    "WaitForAnswer",
    "load_scenario",
    "parse_scenario",
    "twilio_signature",
]
