"""A local, Bedrock-compatible Nova Sonic emulator: the embedded default backend.

Run it with :func:`run_emulator` (an async context manager yielding an :class:`Emulator`) or
:func:`serve_forever` (the CLI). Point the real SDK client at ``Emulator.endpoint_uri`` and trust
``Emulator.ca_path`` for that endpoint only, and sign with the configured credentials
(:data:`TEST_CREDENTIALS` by default). Behaviour: SigV4 authentication of the request and of each
event as Bedrock checks it (:mod:`gateway.emulator.auth`), strict validation as the service does it,
turn detection from the caller's audio, a default persona, barge-in, scripted turns
(:class:`ModelScript`), stream faults (:class:`Fault`) and connection faults
(:meth:`Emulator.inject_connection_fault`).
"""

from __future__ import annotations

from gateway.emulator.auth import TEST_CREDENTIALS, EmulatorCredentials
from gateway.emulator.faults import (
    DEFAULT_MESSAGES,
    FAULT_KINDS,
    SESSION_CAP_MESSAGE,
    SYSTEM_INSTABILITY_MESSAGE,
    Fault,
    FaultKind,
)
from gateway.emulator.framing import EXCEPTION_KINDS, ExceptionKind
from gateway.emulator.script import (
    ModelScript,
    ScriptedFault,
    ScriptedFiller,
    ScriptedToolUse,
    ScriptedTurn,
    model_script_from_mapping,
    model_script_from_toml,
)
from gateway.emulator.server import (
    INVALID_MODEL_MESSAGE,
    ConnectionFaultKind,
    Emulator,
    run_emulator,
    serve_forever,
)
from gateway.emulator.session import EmulatedSession, EventLog, TurnTiming
from gateway.emulator.settings import ENDPOINTING_PAUSE_MS, MODEL_IDS, EmulatorSettings, ThinkTimes
from gateway.emulator.validator import CHAT_HISTORY_MESSAGE

__all__ = [
    "CHAT_HISTORY_MESSAGE",
    "DEFAULT_MESSAGES",
    "ENDPOINTING_PAUSE_MS",
    "EXCEPTION_KINDS",
    "FAULT_KINDS",
    "INVALID_MODEL_MESSAGE",
    "MODEL_IDS",
    "SESSION_CAP_MESSAGE",
    "SYSTEM_INSTABILITY_MESSAGE",
    "TEST_CREDENTIALS",
    "ConnectionFaultKind",
    "EmulatedSession",
    "Emulator",
    "EmulatorCredentials",
    "EmulatorSettings",
    "EventLog",
    "ExceptionKind",
    "Fault",
    "FaultKind",
    "ModelScript",
    "ScriptedFault",
    "ScriptedFiller",
    "ScriptedToolUse",
    "ScriptedTurn",
    "ThinkTimes",
    "TurnTiming",
    "model_script_from_mapping",
    "model_script_from_toml",
    "run_emulator",
    "serve_forever",
]
