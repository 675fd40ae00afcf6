"""Scripted call replays: the scenario format, a simulated Twilio peer, the local fakes of Twilio's
REST API and of a tool receiver, per-call reports, the runner (docs/replay.md).

Entry points for the CLI: :func:`main_replay` (``sonic-gateway replay SCENARIO...``) and
:func:`main_demo` (``sonic-gateway demo``: every bundled scenario in ``scripts/calls/``).
"""

from __future__ import annotations

from gateway.replay.audio import load_caller_audio, speech_like_ulaw
from gateway.replay.fake_tools import ReceiverTool, ToolReceiver, ToolReply, ToolRequest
from gateway.replay.fake_twilio import FakeTwilioRest, RecordedRestRequest, RestAnswer
from gateway.replay.loopback import serve_asgi
from gateway.replay.peer import PeerBargeIn, PeerResult, TimelineEvent, TurnRecord, TwilioPeer
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
    Check,
    ReplayReport,
    ReplayTurnLatency,
    TurnSplit,
    build_report,
    format_report,
    format_summary,
)
from gateway.replay.runner import (
    BUNDLED_SCENARIOS,
    CallObserver,
    ReplayStack,
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
    RestExpectation,
    Say,
    Scenario,
    ScenarioError,
    ToolExpectation,
    TwilioRestFake,
    WaitForAnswer,
    load_scenario,
    parse_scenario,
)
from gateway.replay.services import ReplayServices, start_services
from gateway.replay.tool_report import ReplayCallControl, ReplayToolUse, ServiceRecord, ToolCallSeen

__all__ = [
    "BUNDLED_SCENARIOS",
    "AnswerEnded",
    "AnswerHeard",
    "AnswerPlayback",
    "AnswerStarted",
    "BargeIn",
    "BargeInStop",
    "CallObserver",
    "CallRecord",
    "CallerStep",
    "Check",
    "Dtmf",
    "Expectations",
    "FakeTwilioRest",
    "Hangup",
    "MarkDone",
    "Pause",
    "PeerBargeIn",
    "PeerResult",
    "PeerSettings",
    "PlaybackBuffer",
    "PlaybackEvent",
    "ReceiverTool",
    "RecordedRestRequest",
    "ReplayCallControl",
    "ReplayReport",
    "ReplayServices",
    "ReplayStack",
    "ReplayToolUse",
    "ReplayTurnLatency",
    "RestAnswer",
    "RestExpectation",
    "Say",
    "Scenario",
    "ScenarioError",
    "ServiceRecord",
    "TimelineEvent",
    "ToolCallSeen",
    "ToolExpectation",
    "ToolReceiver",
    "ToolReply",
    "ToolRequest",
    "TurnRecord",
    "TurnSplit",
    "TwilioPeer",
    "TwilioRestFake",
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
    "serve_asgi",
    "speech_like_ulaw",
    "start_services",
    "step_audio",
]
