"""One call's actor tree: Twilio Media Streams <-> Nova Sonic.

Public surface (import only from here)::

    deps = CallDeps(connector=connector, sonic_settings=settings, greeting_ulaw=load_greeting())
    call = Call(socket, identity, deps)      # socket: TwilioSocket, identity: CallIdentity
    outcome = await call.run()               # returns when the call has ended: CallOutcome
    call.report()                            # CallReport; call.statistics() for /debug/actors

See docs/call.md for the tree, the messages, the mailboxes and the latency points.
"""

from __future__ import annotations

from actors.call.call import ACTION_MARK, Call
from actors.call.deps import CallDeps, load_greeting
from actors.call.dtmf import DtmfSettings
from actors.call.intents import (
    INTENT_NOTE_PREFIX,
    IntentBook,
    IntentRule,
    IntentTrigger,
    intent_note,
    intent_system_note,
    normalize_words,
)
from actors.call.outcome import CallOutcome, Outcome, outcome_for_end_reason, outcome_for_error
from actors.call.ports import CallIdentity, TwilioSocket
from actors.call.prompts import (
    PROMPT_NAMES,
    PromptCache,
    PromptFile,
    PromptFormatError,
    PromptName,
    greeting_system_note,
    load_prompt_cache,
)
from actors.call.report import (
    BargeInSummary,
    CallReport,
    IntentSummary,
    ToolCallSummary,
    TranscriptLine,
    TurnLatency,
)
from actors.call.turn_fsm import MIN_BARGE_IN_SPEECH_MS
from actors.call.view import CallView, call_view, mask_number

__all__ = [
    "ACTION_MARK",
    "INTENT_NOTE_PREFIX",
    "MIN_BARGE_IN_SPEECH_MS",
    "PROMPT_NAMES",
    "BargeInSummary",
    "Call",
    "CallDeps",
    "CallIdentity",
    "CallOutcome",
    "CallReport",
    "CallView",
    "DtmfSettings",
    "IntentBook",
    "IntentRule",
    "IntentSummary",
    "IntentTrigger",
    "Outcome",
    "PromptCache",
    "PromptFile",
    "PromptFormatError",
    "PromptName",
    "ToolCallSummary",
    "TranscriptLine",
    "TurnLatency",
    "TwilioSocket",
    "call_view",
    "greeting_system_note",
    "intent_note",
    "intent_system_note",
    "load_greeting",
    "load_prompt_cache",
    "mask_number",
    "normalize_words",
    "outcome_for_end_reason",
    "outcome_for_error",
]
