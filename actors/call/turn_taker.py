"""TurnTaker: the actor shell around the turn Mealy machine (:mod:`actors.call.turn_fsm`).

Rules:

* Control plane only: TurnTaker sees no audio (model audio goes straight from SonicSession to
  PlaybackEgress, one hop), so it has a single control inbox and is never behind a queue of audio.
* Loop: receive the next control message, or -- when the machine has armed the local-VAD barge-in
  guard -- until its absolute deadline, which then becomes :class:`GuardElapsed`. Every input
  goes through ``decide``; the actions are performed in order: ``ClearPlayback`` and an intent's
  ``PlayPrompt`` to PlaybackEgress's CONTROL mailbox, ``HeardReport``, ``PromptPlayed``,
  ``CallerSpeechStopped`` and ``LocalBargeIn`` to SonicSession's control mailbox, latency and
  barge-in records to the journal (one ``turn.latency`` / ``intent.latency`` log line per turn,
  never per frame).
* A restarted instance starts with the floor idle: the greeting it would otherwise assume has long
  been played. So does a call without a greeting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never, final

import anyio
import structlog

from actors.call._snapshot import with_counters
from actors.call.protocol import (
    CallerSpeechStopped,
    ClearPlayback,
    HeardReport,
    LocalBargeIn,
    PlaybackControl,
    PlayPrompt,
    PromptPlayed,
    SonicControl,
    TurnControl,
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
from actors.errors import MailboxClosed
from actors.runtime import Actor, ActorSnapshot, Mailbox

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from actors.call.report import CallJournal

__all__ = ["TurnTaker"]

_log = structlog.get_logger("actors.call.turn_taker")


@final
class TurnTaker(Actor[TurnControl]):
    """Runs the turn machine; see the module docstring.

    Args:
        control: this actor's only inbox.
        playback_control: PlaybackEgress's control mailbox (``ClearPlayback``).
        sonic_control: SonicSession's control mailbox (``HeardReport``).
        settings: barge-in options.
        journal: the call's flight recorder.
    """

    def __init__(
        self,
        *,
        control: Mailbox[TurnControl],
        playback_control: Mailbox[PlaybackControl],
        sonic_control: Mailbox[SonicControl],
        settings: TurnSettings,
        journal: CallJournal,
    ) -> None:
        super().__init__("turn_taker", inbox=control)
        self._playback_control = playback_control
        self._sonic_control = sonic_control
        self._settings = settings
        self._journal = journal
        self._state = initial_state(settings)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Decide on every control message until the call ends. Blocks on the inbox."""
        if self.restarts:
            self._state = TurnState(floor=Floor.IDLE, open_turns=())
        self.state = self._state.floor.value
        task_status.started()
        while True:
            msg: TurnInput | None
            try:
                msg = await self.receive_until(self._state.deadline)
            except MailboxClosed:
                return
            now = anyio.current_time()
            if msg is None:
                msg = GuardElapsed(at=now)
            self._state, actions = decide(self._state, msg, now, self._settings)
            self.state = self._state.floor.value
            for action in actions:
                await self._perform(action)

    async def _perform(self, action: TurnAction) -> None:
        match action:
            case ClearPlayback() | PlayPrompt():
                await self.send_to(self._playback_control, action)
            case HeardReport() | PromptPlayed() | CallerSpeechStopped() | LocalBargeIn():
                await self.send_to(self._sonic_control, action)
            case TurnLatency():
                self._journal.latencies.append(action)
                _log.info(
                    "turn.latency",
                    turn_id=action.turn_id,
                    end_of_speech=action.end_of_speech,
                    model_ms=action.model_ms,
                    gateway_ms=action.gateway_ms,
                    total_ms=action.total_ms,
                )
            case IntentLatency():
                self._journal.intent_latencies[action.turn_id] = action
                _log.info(
                    "intent.latency",
                    intent=action.intent,
                    turn_id=action.turn_id,
                    caller=action.caller,
                    caller_ms=action.caller_ms,
                    media_ms=action.media_ms,
                    total_ms=action.total_ms,
                )
            case BargeInRecord():
                self._journal.barge_ins.append(action)
                _log.info(
                    "turn.barge_in",
                    source=action.source,
                    turn_id=action.turn_id,
                    generation=action.generation,
                )
            case _:
                assert_never(action)

    def statistics(self) -> ActorSnapshot:
        """The runtime snapshot plus the floor and barge-in counters."""
        s = self._state
        return with_counters(
            super().statistics(),
            floor=s.floor.value,
            generation=s.generation,
            open_turns=len(s.open_turns),
            barge_ins=s.barge_ins,
            barge_ins_ignored=s.barge_ins_ignored,
            false_barge_ins_avoided=s.false_barge_ins_avoided,
        )
