"""SonicSession: the call's Nova Sonic conversation as an actor.

Rules:

* Wraps one :class:`actors.sonic.SonicConversation` (which hands over planned session rotations
  and recovers retryable stream errors with history replay on its own). Three tasks in one task
  group, each with one job: caller audio (data mailbox -> ``send_audio``), control (DTMF keys ->
  :class:`~actors.call.dtmf.DigitCollector` -> one cross-modal USER text per keypad entry;
  ``HeardReport`` -> history truncation), and Sonic events -> internal messages. Control has its
  own task so a digit or a heard report never waits behind audio.
* DTMF: Sonic does not hear keypad tones. Keys are grouped into entries (terminator, inter-digit
  timeout, length limit: :mod:`actors.call.dtmf`); each entry goes to the model as ONE interactive
  USER text, ``DTMF: <keys>`` (``DTMF: #`` for a lone terminator), which a system prompt can refer
  to. The inter-digit timer is the control loop's receive deadline (``anyio.move_on_at``), as in
  TurnTaker; keys pending when the session stops or restarts are dropped. The text unit's three
  events go out under the stream's send lock, never between audio events, and the audio block
  stays open (:mod:`actors.sonic.protocol`).
* Tools: a ``ToolUseRequested`` is handed to a :class:`~actors.tools.ToolRunner` that runs the
  tool in this actor's task group and returns at once, so the event stream (and the model's
  speech) never waits on a tool; the result, or a structured error such as
  ``{"error": "timeout"}``, goes back with ``send_tool_result``. At most ``tools.max_in_flight``
  run at once (more are answered ``{"error": "busy"}``); a name not configured is answered
  ``{"error": "unknown_tool"}``. Pending tools are cancelled when the session stops or restarts
  (their tool-use ids die with the Sonic session). Each call is recorded in the journal.
* Readiness is signalled BEFORE the conversation opens: the greeting and the ingress must not wait
  for Sonic. Caller audio meanwhile waits in the drop-oldest audio mailbox.
* Event translation: first audio chunk of a turn -> ``AssistantTurnStarted`` to TurnTaker, THEN the
  audio to PlaybackEgress (so TurnTaker learns of the turn before PlaybackEgress can report it
  started); ``AssistantAudioEnded`` -> in-band end marker to PlaybackEgress and
  ``AssistantTurnEnded`` to TurnTaker; ``BargeIn`` -> ``BargeInDetected``; FINAL USER transcript
  -> ``UserTranscribed`` and the journal; FINAL assistant text -> the journal; ``HandedOver`` (a
  planned message, not a crash) -> the journal and one log line.
* Turn ids: Sonic numbers assistant turns per conversation from 1; the call's turn id is
  ``SessionMemory.turn_offset + sonic id`` so ids stay unique across SonicSession restarts.
* Failures: ``SonicFatalError`` (our request, access, model) ends the call: recorded, and ``run``
  returns normally (a significant TRANSIENT child: the call auto-shuts down). A
  ``SonicRetryableError`` the conversation could not recover propagates: the supervisor restarts a
  FRESH SonicSession, which continues from :class:`SessionMemory` (owned by the supervisor).
* Stopping: ``request_stop`` cancels the work; leaving the conversation's ``async with`` closes the
  Sonic stream in order (audio ``contentEnd``, ``promptEnd``, ``sessionEnd``; bounded).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final, assert_never, final

import anyio
import attrs
import structlog

from actors.call._snapshot import with_counters
from actors.call.dtmf import DigitCollector, DtmfEntry, DtmfSettings
from actors.call.protocol import (
    AssistantAudio,
    AssistantAudioEnded,
    AssistantTurnEnded,
    AssistantTurnStarted,
    BargeInDetected,
    CallerAudio,
    CallerDtmf,
    HeardReport,
    PlaybackData,
    SonicControl,
    TurnControl,
    UserTranscribed,
)
from actors.errors import ClosedByUs, MailboxClosed, SonicError, SonicFatalError
from actors.runtime import Actor, ActorSnapshot, Mailbox
from actors.sonic import AssistantAudio as SonicAudio
from actors.sonic import AssistantAudioEnded as SonicAudioEnded
from actors.sonic import (
    AssistantAudioStarted,
    AssistantText,
    BargeIn,
    CompletionEnded,
    ConversationHistory,
    HandedOver,
    SessionClosed,
    SessionLost,
    ToolUseRequested,
    Usage,
    UserTranscript,
)
from actors.tools import Toolbox, ToolRunner

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskStatus

    from actors.call.report import CallJournal
    from actors.sonic import SonicConnector, SonicConversation, SonicEvent, SonicSettings
    from actors.tools import CallAction

__all__ = ["DTMF_TEXT_PREFIX", "SessionMemory", "SonicSession", "dtmf_text"]

_log = structlog.get_logger("actors.call.sonic_session")
DTMF_TEXT_PREFIX: Final = "DTMF: "
"""Every keypad entry reaches the model as this prefix and the keys (a system prompt may say what
the caller's keys mean)."""


@final
@attrs.define
class SessionMemory:
    """What survives a SonicSession restart; created and owned by the CallSupervisor.

    Attributes:
        history: FINAL user/assistant text of the whole call, truncated to what was heard: the
            context a fresh session should start from.
        turn_offset: added to the Sonic conversation's turn ids (unique call turn ids).
        last_turn_id: the highest call turn id seen so far.
        sessions: SonicSession instances started (1 + restarts).
    """

    history: ConversationHistory
    turn_offset: int = 0
    last_turn_id: int = 0
    sessions: int = 0

    @classmethod
    def for_settings(cls, settings: SonicSettings) -> SessionMemory:
        """An empty memory with the history limits of ``settings``."""
        return cls(
            history=ConversationHistory(
                max_turns=settings.history_max_turns,
                max_bytes_per_turn=settings.history_max_bytes_per_turn,
                max_total_bytes=settings.history_max_total_bytes,
            )
        )


@final
class SonicSession(Actor[SonicControl | CallerAudio]):
    """One call's Sonic conversation; see the module docstring.

    Args:
        connector: the process's Sonic connector.
        audio / control: this actor's mailboxes.
        playback_data: PlaybackEgress's data mailbox (model audio).
        turn_control: TurnTaker's mailbox.
        memory: survives restarts (owned by the supervisor).
        journal: the call's flight recorder.
        dtmf: how keys are grouped into entries.
        tools: the tools the model may call (none: every call is answered ``unknown_tool``).
        on_action: gets a built-in tool's call action (``end_call``, ``transfer_call``) once its
            result went to the model; the call owns what happens next.
    """

    def __init__(
        self,
        *,
        connector: SonicConnector,
        audio: Mailbox[CallerAudio],
        control: Mailbox[SonicControl],
        playback_data: Mailbox[PlaybackData],
        turn_control: Mailbox[TurnControl],
        memory: SessionMemory,
        journal: CallJournal,
        dtmf: DtmfSettings | None = None,
        tools: Toolbox | None = None,
        on_action: Callable[[CallAction], None] | None = None,
    ) -> None:
        super().__init__("sonic_session", inbox=audio, control=control)
        self._dtmf_settings = dtmf if dtmf is not None else DtmfSettings()
        self._digits = DigitCollector(self._dtmf_settings)
        self._connector = connector
        self._toolbox = tools if tools is not None else Toolbox()
        self._tools: ToolRunner | None = None
        self._on_action = on_action
        self._audio = audio
        self._control_box = control
        self._playback_data = playback_data
        self._turn_control = turn_control
        self._memory = memory
        self._journal = journal
        self._work = anyio.CancelScope()
        self._conv: SonicConversation | None = None
        self._audio_turn: int | None = None  # call turn id whose audio is streaming
        self.audio_bytes_in = 0
        self.audio_bytes_out = 0
        self.events_in = 0
        self.dtmf_keys = 0
        self.dtmf_entries = 0
        self.dtmf_sent = 0

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the conversation and pump until the call ends. Blocks for the call's life.

        Raises:
            SonicRetryableError: the conversation gave up recovering (the supervisor restarts us).
        """
        memory = self._memory
        if memory.sessions:
            memory.turn_offset = memory.last_turn_id
            self._journal.sonic_restarts += 1
        memory.sessions += 1
        self.state = "connecting"
        task_status.started()
        try:
            # A restarted session continues from what the caller heard so far, not from blank.
            history = memory.history.shaped() if memory.sessions > 1 else ()
            async with self._connector.conversation(history=history) as conv:
                self._conv = conv
                self.state = "open"
                with self._work:
                    async with anyio.create_task_group() as tg:
                        # Tools run in this task group: leaving it cancels the pending ones.
                        self._tools = ToolRunner(
                            self._toolbox,
                            tg,
                            answer=functools.partial(self._send_tool_result, conv),
                            record=self._journal.record_tool_call,
                            on_action=self._on_action,
                        )
                        tg.start_soon(self._pump_audio, conv)
                        tg.start_soon(self._pump_control, conv)
                        await self._pump_events(conv)
                        tg.cancel_scope.cancel()
                self.state = "closing"
        except SonicFatalError as exc:
            self._journal.sonic_errors.append(exc.kind)
            self._journal.end(f"sonic_fatal:{exc.kind}", anyio.current_time())
            _log.warning("sonic_session.fatal", kind=exc.kind, error=str(exc))
            self.state = "failed"
            return
        except SonicError as exc:
            self._journal.sonic_errors.append(exc.kind)
            _log.warning("sonic_session.gave_up", kind=exc.kind, error=str(exc))
            raise
        finally:
            self._conv = None
            self._tools = None
        self.state = "closed"

    def request_stop(self) -> bool:
        """Stop pumping; leaving the conversation closes the Sonic stream in order."""
        self._work.cancel()
        return True

    # ------------------------------------------------------------------ pumps

    async def _pump_audio(self, conv: SonicConversation) -> None:
        while True:
            try:
                msg = await self._audio.receive()
            except MailboxClosed:
                return
            self.messages_in += 1
            self.audio_bytes_in += len(msg.pcm)
            try:
                await conv.send_audio(msg.pcm)
            except ClosedByUs:
                return

    async def _pump_control(self, conv: SonicConversation) -> None:
        digits = self._digits
        while True:
            msg: SonicControl | None = None
            deadline = digits.deadline
            try:
                if deadline is None:
                    msg = await self._control_box.receive()
                else:
                    # The inter-digit timer: wait for the next message until the entry's deadline.
                    with anyio.move_on_at(deadline):
                        msg = await self._control_box.receive()
            except MailboxClosed:
                return
            if msg is None:
                entry = digits.expire(anyio.current_time())
                if entry is not None:
                    await self._send_dtmf(conv, entry)
                continue
            self.messages_in += 1
            match msg:
                case CallerDtmf(digit=digit, at=at):
                    self.dtmf_keys += 1
                    try:
                        entry = digits.press(digit, at)
                    except ValueError:
                        # The ingress passes Twilio's digit string on unchecked: not a keypad key.
                        _log.warning("sonic_session.dtmf_refused", reason="not a DTMF key")
                        continue
                    if entry is not None:
                        await self._send_dtmf(conv, entry)
                case HeardReport(turn_id=turn_id, heard_ms=heard, total_ms=total):
                    fraction = 1.0 if total <= 0 else heard / total
                    self._memory.history.note_heard(turn_id, fraction)
                    sonic_turn = turn_id - self._memory.turn_offset
                    if sonic_turn > 0:
                        conv.note_heard(sonic_turn, fraction)
                case _:
                    assert_never(msg)

    async def _send_dtmf(self, conv: SonicConversation, entry: DtmfEntry) -> None:
        """One keypad entry -> one interactive USER text (Sonic does not hear DTMF tones)."""
        self.dtmf_entries += 1
        delivered = await conv.send_user_text(dtmf_text(entry, self._dtmf_settings.terminator))
        self.dtmf_sent += delivered
        _log.info(
            "sonic_session.dtmf_entry",
            pii_digits=entry.digits,
            ended_by=entry.ended_by,
            delivered=delivered,
        )

    async def _send_tool_result(
        self, conv: SonicConversation, tool_use_id: str, content_json: str
    ) -> bool:
        # Runs in a tool's task: an error here must not fail the task group. A failed or closing
        # conversation surfaces through the event stream; the result is simply not delivered.
        try:
            return await conv.send_tool_result(tool_use_id, content_json)
        except (SonicError, ClosedByUs):
            return False

    async def _pump_events(self, conv: SonicConversation) -> None:
        async for event in conv.events:
            self.events_in += 1
            if not await self._on_event(conv, event):
                return

    async def _on_event(self, conv: SonicConversation, event: SonicEvent) -> bool:
        now = anyio.current_time()
        match event:
            case SonicAudio(pcm=pcm, rate=rate, turn_id=sonic_turn):
                turn_id = self._call_turn(sonic_turn)
                if self._audio_turn != turn_id:
                    self._audio_turn = turn_id
                    await self.send_to(
                        self._turn_control, AssistantTurnStarted(turn_id=turn_id, at=now)
                    )
                self.audio_bytes_out += len(pcm)
                await self.send_to(
                    self._playback_data,
                    AssistantAudio(turn_id=turn_id, pcm=pcm, rate=rate, at=now),
                )
            case SonicAudioEnded(turn_id=sonic_turn):
                turn_id = self._call_turn(sonic_turn)
                self._audio_turn = None
                await self.send_to(
                    self._playback_data, AssistantAudioEnded(turn_id=turn_id, at=now)
                )
                await self.send_to(self._turn_control, AssistantTurnEnded(turn_id=turn_id, at=now))
            case BargeIn(source=source):
                await self.send_to(
                    self._turn_control,
                    BargeInDetected(
                        source="sonic_marker" if source == "marker" else "sonic_interrupted",
                        at=now,
                    ),
                )
            case UserTranscript(text=text, final=True):
                self._journal.user_lines.append((now, text))
                self._memory.history.add_user(text)
                _log.info("sonic_session.user_transcript", pii_transcript=text)
                await self.send_to(self._turn_control, UserTranscribed(text=text, at=now))
            case AssistantText(text=text, stage="FINAL", turn_id=sonic_turn):
                turn_id = self._call_turn(sonic_turn)
                self._journal.assistant_lines.append((now, turn_id, text))
                self._memory.history.add_assistant(text, turn_id=turn_id)
                _log.info("sonic_session.assistant_text", turn_id=turn_id, pii_transcript=text)
            case ToolUseRequested(tool_use_id=tool_use_id, name=name, arguments_json=arguments):
                tools = self._tools
                assert tools is not None  # set for as long as events are pumped
                await tools.submit(tool_use_id, name, arguments)
            case HandedOver(reason=reason, session_index=index):
                self._journal.handovers.append(now)
                if reason.startswith("error:"):  # a retryable error the conversation recovered
                    self._journal.sonic_errors.append(reason.removeprefix("error:"))
                _log.info("sonic_session.handed_over", reason=reason, session_index=index)
            case SessionClosed():
                return False
            case (
                UserTranscript()
                | AssistantText()
                | AssistantAudioStarted()
                | SessionLost()
                | Usage()
                | CompletionEnded()
            ):
                pass
            case _:
                assert_never(event)
        return True

    def _call_turn(self, sonic_turn: int) -> int:
        turn_id = self._memory.turn_offset + sonic_turn
        self._memory.last_turn_id = max(self._memory.last_turn_id, turn_id)
        return turn_id

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> ActorSnapshot:
        """The runtime snapshot plus audio/event counters and the conversation's own."""
        conv = self._conv
        conv_stats = conv.statistics() if conv is not None else {}
        return with_counters(
            super().statistics(),
            audio_bytes_in=self.audio_bytes_in,
            audio_bytes_out=self.audio_bytes_out,
            events_in=self.events_in,
            dtmf_keys=self.dtmf_keys,
            dtmf_entries=self.dtmf_entries,
            dtmf_sent=self.dtmf_sent,
            tools_started=None if self._tools is None else self._tools.started,
            tools_in_flight=None if self._tools is None else self._tools.in_flight,
            sessions=self._memory.sessions,
            handovers=_int(conv_stats.get("handovers")),
            recoveries=_int(conv_stats.get("recoveries")),
            session_index=_int(conv_stats.get("session_index")),
        )


def dtmf_text(entry: DtmfEntry, terminator: str) -> str:
    """The USER text that tells the model about one keypad entry: ``DTMF: 1234``."""
    return DTMF_TEXT_PREFIX + (entry.digits or terminator)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None
