"""One SonicSession's fast intents: match, take the floor with a cached prompt, act, tell the model.

Theory of operation (the rules are :mod:`actors.call.intents`; this is the shell that runs them):

* Triggers. A keypad entry (or, for a rule whose digits no other rule extends, the key that
  completes its digits: no inter-digit wait) and every FINAL USER transcript are offered to
  :class:`IntentFlow`. A speculative transcript is never offered. At most one intent is handled at
  a time, and a transcript matches at most once per caller turn: after a match, transcripts are
  not matched again until the model starts a new turn.
* The floor, at once. On a match the prompt gets the next call turn id and ``IntentMatched`` goes
  to TurnTaker, which clears the assistant's audio if it is speaking and has PlaybackEgress play
  the cached clip. Nothing on that path waits on Sonic or the network.
* The model's own answer is withheld: every Sonic turn that STARTS while an intent is handled is
  never played (its audio is dropped here, its barge-in signals are ignored, and the history marks
  it unheard, so a new session is not told it was said). Sonic barge-in signals for turns older
  than the prompt are ignored as well: the intent already cleared those turns.
* The action is the rule's tool, run with the rule's fixed input in SonicSession's task group:

  - a built-in (``end_call`` / ``transfer_call``) yields a call action. The model gets a note that
    the call is ending or being transferred; the action (``announced``: its prompt has played) is
    handed to the call once TurnTaker reports the prompt over (``PromptPlayed``), or at the latest
    the clip's length plus :data:`PROMPT_SLACK_S` after the match. The pending action lives in
    :class:`~actors.call.sonic_session.SessionMemory`, so a restarted SonicSession still carries it
    out. Every model turn from the match on is withheld: the call is ending.
  - any other tool answers with JSON. The note carries it; the model's answer to the note is the
    next thing the caller hears after the prompt. For a transcript, the note waits until the model
    has started its (withheld) answer to the caller's words, at most :data:`ANSWER_WAIT_S`, so its
    answer to the note is not mistaken for the one withheld. Turns starting after the note was sent
    are played again.

* The note is an interactive USER text (:func:`~actors.call.intents.intent_note`): Sonic cannot be
  given a tool result for a tool use it did not ask for, and its history must say what the caller
  heard instead of its answer. Tool calls are recorded in the journal like the model's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, assert_never, final

import anyio
import attrs
import msgspec
import structlog

from actors.call.intents import IntentBook, IntentRule, IntentTrigger, intent_note
from actors.call.protocol import IntentMatched
from actors.call.report import IntentRecord
from actors.errors import ClosedByUs, SonicError
from actors.tools import CallAction, EndCall, ToolCall, TransferCall, error_result

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskGroup

    from actors.call.prompts import PromptCache
    from actors.call.report import CallJournal
    from actors.call.sonic_session import SessionMemory
    from actors.sonic import SonicConversation
    from actors.tools import Toolbox, ToolOutcome

__all__ = ["ANSWER_WAIT_S", "PROMPT_SLACK_S", "IntentFlow", "PendingEnd"]

_log = structlog.get_logger("actors.call.intents")

ANSWER_WAIT_S: Final = 3.0
"""Longest wait for the model to start its (withheld) answer to the words that matched before the
note goes out (Sonic usually starts answering well within a second of its FINAL transcript)."""
PROMPT_SLACK_S: Final = 2.0
"""Added to the prompt's length to bound the wait for its end before an ending action goes ahead
anyway (the playback lead, the echo's way back, a slow peer)."""
_ULAW_BYTES_PER_S: Final = 8000
_WITHHELD_KEPT: Final = 64


@attrs.define
class PendingEnd:
    """An intent's end or transfer, waiting for its prompt to be heard.

    Attributes:
        action: what the call does (``announced``: the prompt is not played again).
        turn_id: the prompt's turn.
        deadline: act at this time (``anyio.current_time``) even without the prompt's end.
        acted: the action was handed to the call.
    """

    action: CallAction
    turn_id: int
    deadline: float
    acted: bool = False


@final
class IntentFlow:
    """Runs the intents of one Sonic conversation; see the module docstring.

    Args:
        book: the configured intents.
        prompts: the cached prompt clips (needed when ``book`` has intents).
        toolbox: the tools an intent's action runs.
        journal: the call's flight recorder.
        memory: the session memory (history; the pending end survives restarts).
        task_group: SonicSession's task group (actions run there; cancelled with the session).
        take_floor: sends ``IntentMatched`` to TurnTaker.
        allocate_turn: gives the prompt's call turn id (after every turn so far).
        on_action: gets a built-in's call action once its prompt has played.
    """

    def __init__(
        self,
        *,
        book: IntentBook,
        prompts: PromptCache | None,
        toolbox: Toolbox,
        journal: CallJournal,
        memory: SessionMemory,
        task_group: TaskGroup,
        take_floor: Callable[[IntentMatched], Awaitable[None]],
        allocate_turn: Callable[[], int],
        on_action: Callable[[CallAction], None] | None,
    ) -> None:
        self._book = book
        self._prompts = prompts
        self._toolbox = toolbox
        self._journal = journal
        self._memory = memory
        self._conv: SonicConversation | None = None
        self._opened = anyio.Event()
        self._tg = task_group
        self._take_floor = take_floor
        self._allocate_turn = allocate_turn
        self._on_action = on_action
        self._busy = False
        self._withholding = False
        self._matched_this_turn = False
        self._answer_started: anyio.Event | None = None
        self._prompt_played = anyio.Event()
        self._prompt_turn = -1
        self._withheld: dict[int, None] = {}  # insertion-ordered set, bounded
        self.matched = 0
        self.turns_withheld = 0
        self.barge_ins_ignored = 0
        pending = memory.pending_end
        if pending is not None and not pending.acted:
            # A restarted session carries out the end or transfer its predecessor promised.
            self._prompt_turn = pending.turn_id
            task_group.start_soon(self._end_after_prompt, pending)

    def attach(self, conv: SonicConversation) -> None:
        """The conversation is open: notes go to ``conv`` (an intent matched earlier waits)."""
        self._conv = conv
        self._opened.set()

    # ------------------------------------------------------------------ triggers

    @property
    def has_dtmf(self) -> bool:
        """True when some intent has a DTMF trigger."""
        return self._book.has_dtmf

    def _available(self) -> bool:
        return len(self._book) > 0 and not self._busy and self._memory.pending_end is None

    def match_pending_digits(self, digits: str) -> IntentRule | None:
        """The intent the keys pressed so far already select (no wait for the entry's end)."""
        return self._book.match_pending(digits) if self._available() else None

    def match_entry(self, digits: str) -> IntentRule | None:
        """The intent a complete keypad entry selects."""
        return self._book.match_entry(digits) if self._available() else None

    async def on_transcript(self, text: str) -> bool:
        """A FINAL USER transcript; True when it matched an intent (now being handled)."""
        if self._matched_this_turn or not self._available():
            return False
        rule = self._book.match_transcript(text)
        if rule is None:
            return False
        await self.start(rule, "transcript", trigger_at=None, digits=None)
        return True

    async def start(
        self,
        rule: IntentRule,
        trigger: IntentTrigger,
        *,
        trigger_at: float | None,
        digits: str | None,
    ) -> None:
        """Take the floor with ``rule``'s prompt now and start its action (does not wait for it).

        Args:
            trigger_at: when the caller pressed the key that completed a DTMF trigger.
            digits: the keys (DTMF trigger).
        """
        now = anyio.current_time()
        assert self._prompts is not None  # an intent matched: the book is not empty
        turn_id = self._memory.last_turn_id = self._allocate_turn()
        clip = self._prompts.get(rule.prompt)
        self._busy = self._withholding = self._matched_this_turn = True
        self._answer_started = anyio.Event() if trigger == "transcript" else None
        self._prompt_played = anyio.Event()  # this prompt's end, not an earlier intent's
        self._prompt_turn = turn_id
        self.matched += 1
        await self._take_floor(
            IntentMatched(
                turn_id=turn_id, intent=rule.name, ulaw=clip, trigger_at=trigger_at, at=now
            )
        )
        self._journal.intents.append(
            IntentRecord(intent=rule.name, trigger=trigger, at=now, turn_id=turn_id, tool=rule.tool)
        )
        _log.info("intent.matched", intent=rule.name, trigger=trigger, turn_id=turn_id)
        self._tg.start_soon(self._act, rule, trigger, digits, turn_id, now, len(clip))

    # ------------------------------------------------------------------ the model's turns

    def turn_started(self, turn_id: int, sonic_turn: int) -> None:
        """Sonic turn ``sonic_turn`` (call turn ``turn_id``) was seen for the first time."""
        self._matched_this_turn = False
        if not (self._withholding or self._memory.pending_end is not None):
            return
        self._withheld[turn_id] = None
        if len(self._withheld) > _WITHHELD_KEPT:
            del self._withheld[next(iter(self._withheld))]
        self.turns_withheld += 1
        # The caller never hears it: the call's history (the conversation's) may not say it was.
        if self._conv is not None:
            self._conv.note_heard(sonic_turn, 0.0)
        else:
            self._memory.history.note_heard(sonic_turn, 0.0)
        _log.info("intent.turn_withheld", turn_id=turn_id)
        if self._answer_started is not None:
            self._answer_started.set()

    def withheld(self, turn_id: int) -> bool:
        """True when turn ``turn_id`` is not played."""
        return turn_id in self._withheld

    def ignores_barge_in(self, turn_id: int) -> bool:
        """True when a Sonic barge-in signal for ``turn_id`` must not clear playback: the turn is
        withheld, or older than the last prompt (which already cleared it)."""
        ignored = turn_id in self._withheld or turn_id < self._prompt_turn
        self.barge_ins_ignored += ignored
        return ignored

    def prompt_played(self, turn_id: int, *, interrupted: bool) -> None:
        """TurnTaker: the prompt of ``turn_id`` is over (``PromptPlayed``)."""
        pending = self._memory.pending_end
        if turn_id == self._prompt_turn or (pending is not None and pending.turn_id == turn_id):
            _log.info("intent.prompt_played", turn_id=turn_id, interrupted=interrupted)
            self._prompt_played.set()

    # ------------------------------------------------------------------ the action

    async def _act(
        self,
        rule: IntentRule,
        trigger: IntentTrigger,
        digits: str | None,
        turn_id: int,
        matched_at: float,
        clip_bytes: int,
    ) -> None:
        tool = self._toolbox.get(rule.tool)
        result = (
            error_result("unknown_tool") if tool is None else await tool.invoke(rule.input_json)
        )
        latency_ms = round((anyio.current_time() - matched_at) * 1000.0, 1)
        self._journal.intent_outcomes[turn_id] = result.outcome
        action = result.action
        if action is not None:
            pending = PendingEnd(
                action=msgspec.structs.replace(action, announced=True),
                turn_id=turn_id,
                deadline=matched_at + clip_bytes / _ULAW_BYTES_PER_S + PROMPT_SLACK_S,
            )
            self._memory.pending_end = pending
            match action:
                case EndCall():
                    outcome = "The call is being ended."
                case TransferCall(target=target):
                    outcome = f"The call is being transferred to {target}."
                case _:
                    assert_never(action)
            delivered = await self._note(rule, trigger, digits, outcome)
            self._record(rule, result.outcome, latency_ms, delivered)
            await self._end_after_prompt(pending)
            return
        if self._answer_started is not None:
            with anyio.move_on_after(ANSWER_WAIT_S):
                await self._answer_started.wait()
        outcome = f"The tool {rule.tool} answered: {result.content_json}"
        delivered = await self._note(rule, trigger, digits, outcome)
        # Sonic turns from now on answer the note: they are played again.
        self._withholding = self._busy = False
        self._record(rule, result.outcome, latency_ms, delivered)

    async def _note(
        self, rule: IntentRule, trigger: IntentTrigger, digits: str | None, outcome: str
    ) -> bool:
        text = intent_note(rule, trigger=trigger, digits=digits, outcome=outcome)
        await self._opened.wait()  # an intent matched while Sonic was opening
        assert self._conv is not None  # set before ``_opened``
        try:
            delivered = await self._conv.send_user_text(text)
        except (SonicError, ClosedByUs):
            delivered = False  # the conversation failed or is closing: its events say so
        _log.info("intent.note", intent=rule.name, delivered=delivered, pii_note=text)
        return delivered

    def _record(
        self, rule: IntentRule, outcome: ToolOutcome, latency_ms: float, delivered: bool
    ) -> None:
        self._journal.record_tool_call(
            ToolCall(name=rule.tool, outcome=outcome, latency_ms=latency_ms, delivered=delivered)
        )

    async def _end_after_prompt(self, pending: PendingEnd) -> None:
        with anyio.move_on_at(pending.deadline):
            await self._prompt_played.wait()
        if not self._prompt_played.is_set():
            _log.warning("intent.prompt_unconfirmed", turn_id=pending.turn_id)
        if pending.acted:
            return
        pending.acted = True
        if self._on_action is not None:
            self._on_action(pending.action)
