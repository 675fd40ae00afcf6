"""SonicSession: the call's Nova Sonic conversation as an actor.

Rules:

* Wraps one :class:`actors.sonic.SonicConversation` (which hands over planned session rotations
  and recovers retryable stream errors with history replay on its own). Three tasks, each with one
  job: caller audio (data mailbox -> ``send_audio``), control (DTMF keys ->
  :class:`~actors.call.dtmf.DigitCollector` -> an intent, or one cross-modal USER text per keypad
  entry; ``HeardReport`` -> history truncation; ``PromptPlayed`` -> the intent waiting for it), and
  Sonic events -> internal messages. Control has its own task so a digit or a heard report never
  waits behind audio, and it starts BEFORE the conversation opens (an intent needs no model; a
  plain entry waits for the conversation).
* DTMF: Sonic does not hear keypad tones. Keys are grouped into entries (terminator, inter-digit
  timeout, length limit: :mod:`actors.call.dtmf`); each entry goes to the model as ONE interactive
  USER text, ``DTMF: <keys>`` (``DTMF: #`` for a lone terminator), which a system prompt can refer
  to. The inter-digit timer is the control loop's receive deadline (``anyio.move_on_at``), as in
  TurnTaker; keys pending when the session stops or restarts are dropped. The text unit's three
  events go out under the stream's send lock, never between audio events, and the audio block
  stays open (:mod:`actors.sonic.protocol`).
* Tools: a ``ToolUseRequested`` is handed to a :class:`~actors.tools.ToolRunner` that runs the
  tool in this actor's task group and returns at once (a built-in's end or transfer is dropped
  while an intent's own is pending), so the event stream (and the model's
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
  ``AssistantTurnEnded`` to TurnTaker; ``SonicBargeIn`` -> ``BargeInDetected``; FINAL USER transcript
  -> ``UserTranscribed`` and the journal; FINAL assistant text -> the journal; ``HandedOver`` (a
  planned message, not a crash) -> the journal and one log line.
* Fast intents (:mod:`actors.call.intent_flow`): keypad entries and FINAL USER transcripts are
  offered to the call's intents first. A match takes the floor with a cached prompt at once
  (``IntentMatched`` to TurnTaker), the model's own answer for that turn is withheld (never
  forwarded to PlaybackEgress), the intent's tool runs in this actor's task group, and the model is
  told what happened in a USER text note. A matched keypad entry is not sent as ``DTMF: ...``.
* Turn ids: Sonic numbers assistant turns per conversation from 1; the call numbers them after the
  call's last turn when this session started, in the order they are first seen, with an intent's
  prompt, or a hold prompt, taking the next id when it starts
  (:class:`~actors.call.turn_ids.CallTurnIds`), so ids stay unique across SonicSession restarts and
  grow in the order the turns happen.
* Failures: ``SonicFatalError`` (our request, access, model) ends the call: recorded, and ``run``
  returns normally (a significant TRANSIENT child: the call auto-shuts down, and the Call plays the
  sorry prompt, then transfers or hangs up). A ``SonicRetryableError`` the conversation could not
  recover propagates: the supervisor restarts a FRESH SonicSession, which continues from
  :class:`SessionMemory` (owned by the supervisor).
* Hold prompt: while a Sonic session is lost (``SessionLost`` until ``HandedOver``, or across a
  restart until the fresh conversation is open) the model can say nothing. Once that has lasted
  ``hold_after_s`` the cached hold prompt plays as an assistant turn of its own (to PlaybackEgress
  as 8 kHz PCM; TurnTaker treats it like any turn, so a barge-in clears it), and again
  :data:`HOLD_REPEAT_GAP_S` after its end while the loss lasts (:class:`LossWatch`). The timer is
  a task of its own (it must also run while a restarted session opens); a lock keeps its sends and
  the recovery from interleaving.
* Stall: the VAD's ``CallerSpeechStopped`` (forwarded by TurnTaker) after at least
  :data:`CALLER_TURN_MIN_SPEECH_MS` of speech arms the conversation's stall watchdog
  (``conv.expect_output``).
* Unheard barge-in: a ``LocalBargeIn`` from TurnTaker (the local VAD cut the assistant off, Sonic
  gave no sign) is watched by :class:`UnheardBargeIn`: if Sonic shows no sign of it (barge-in
  signal, USER transcript, a newer turn) within ``barge_in_confirm_s`` of the caller stopping, the
  model gets a USER text saying it was cut off by a noise, so it carries on instead of waiting.
  Its timer shares the control task's receive deadline with the DTMF entry timer.
* Stopping: ``request_stop`` cancels the work, and bounds the conversation's close by the
  supervisor's shutdown timeout for this child (``stop_timeout_s``, minus a margin for the rest of
  the exit): every Sonic stream is closed in order (audio ``contentEnd``, ``promptEnd``,
  ``sessionEnd``), without waiting for an answer nobody will hear, or released at that deadline.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Final, assert_never, final

import anyio
import attrs
import structlog

import audiocodec
from actors.call._snapshot import with_counters
from actors.call.dtmf import DigitCollector, DtmfEntry, DtmfSettings
from actors.call.intent_flow import IntentFlow, PendingEnd
from actors.call.intents import IntentBook
from actors.call.prompts import PromptCache
from actors.call.protocol import (
    AssistantAudio,
    AssistantAudioEnded,
    AssistantTurnEnded,
    AssistantTurnStarted,
    BargeInDetected,
    CallerAudio,
    CallerDtmf,
    CallerSpeechStopped,
    HeardReport,
    LocalBargeIn,
    PlaybackData,
    PromptPlayed,
    SonicControl,
    TurnControl,
    UserTranscribed,
)
from actors.call.session_watch import LossWatch, UnheardBargeIn
from actors.call.turn_ids import CallTurnIds
from actors.errors import ClosedByUs, MailboxClosed, SonicError, SonicFatalError
from actors.runtime import Actor, ActorSnapshot, Mailbox
from actors.sonic import (
    AssistantText,
    CompletionEnded,
    ConversationHistory,
    HandedOver,
    SessionClosed,
    SessionLost,
    SonicAudio,
    SonicAudioEnded,
    SonicAudioStarted,
    SonicBargeIn,
    ToolUseRequested,
    Usage,
    UserTranscript,
)
from actors.tools import Toolbox, ToolRunner

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskStatus

    from actors.call.report import CallJournal
    from actors.sonic import (
        SonicConnector,
        SonicConversation,
        SonicEvent,
        SonicSettings,
    )
    from actors.tools import CallAction

__all__ = [
    "CALLER_TURN_MIN_SPEECH_MS",
    "DTMF_TEXT_PREFIX",
    "HOLD_REPEAT_GAP_S",
    "STOP_MARGIN_S",
    "SessionMemory",
    "SonicSession",
    "dtmf_text",
]

_log = structlog.get_logger("actors.call.sonic_session")
DTMF_TEXT_PREFIX: Final = "DTMF: "
"""Every keypad entry reaches the model as this prefix and the keys (a system prompt may say what
the caller's keys mean)."""
HOLD_REPEAT_GAP_S: Final = 4.0
"""While a lost session is still not back, the hold prompt plays again this long after its end."""
CALLER_TURN_MIN_SPEECH_MS: Final = 400.0
"""Speech the VAD heard before it stopped for the model to owe an answer (the stall watchdog arms);
shorter sounds (a cough, a click) may get none."""
STOP_MARGIN_S: Final = 0.2
"""Part of the shutdown bound kept for leaving the actor after the conversation closed."""
_PROMPT_RATE: Final = 8000


@final
@attrs.define
class SessionMemory:
    """What survives a SonicSession restart; created and owned by the CallSupervisor.

    Attributes:
        history: FINAL user/assistant text of the whole call, truncated to what was heard: the
            context a fresh session should start from. The call's one history: each
            conversation continues and keeps it (``shared_history``).
        turn_offset: the call's last turn id when the current SonicSession started (its Sonic
            turns are numbered after it).
        last_turn_id: the highest call turn id given out so far.
        sessions: SonicSession instances started (1 + restarts).
        pending_end: an intent's end or transfer waiting for its prompt to be heard (a restarted
            SonicSession carries it out).
        loss: a lost Sonic session and the hold prompt (it lasts across a restart).
    """

    history: ConversationHistory
    turn_offset: int = 0
    last_turn_id: int = 0
    sessions: int = 0
    pending_end: PendingEnd | None = None
    loss: LossWatch = attrs.field(factory=LossWatch)

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
            result went to the model (or an intent's, once its prompt was heard); the call owns
            what happens next.
        intents: the fast intents (none by default).
        intent_tools: the tools intents run (None: ``tools``).
        prompts: the cached prompts intents play (the bundled clips by default).
        settings: the call's Sonic settings (its route's system prompt, voice and tools); None:
            the connector's.
        hold_ulaw: the hold prompt, raw 8 kHz μ-law (empty: none is played).
        hold_after_s: silence of a lost session before the hold prompt plays (0: never).
        barge_in_confirm_s: after a local-VAD barge-in and the caller's stop, how long Sonic has
            to show it noticed before the model is told.
        stop_timeout_s: the supervisor's shutdown timeout for this child: a stop fits inside it.
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
        intents: IntentBook | None = None,
        intent_tools: Toolbox | None = None,
        prompts: PromptCache | None = None,
        settings: SonicSettings | None = None,
        hold_ulaw: bytes = b"",
        hold_after_s: float = 1.0,
        barge_in_confirm_s: float = 2.75,
        stop_timeout_s: float = 1.0,
    ) -> None:
        super().__init__("sonic_session", inbox=audio, control=control)
        self._settings = settings
        self._intents = intents if intents is not None else IntentBook()
        self._intent_tools = intent_tools
        if prompts is None and len(self._intents):
            prompts = PromptCache.bundled()
        self._prompts = prompts
        self._flow: IntentFlow | None = None
        self._turn_ids = CallTurnIds()
        self._hold_pcm = audiocodec.ulaw_decode(hold_ulaw) if hold_ulaw else b""
        self._hold_after_s = hold_after_s
        self._hold_repeat_s = len(hold_ulaw) / _PROMPT_RATE + HOLD_REPEAT_GAP_S
        # A hold prompt being sent goes out whole before a recovery is noted.
        self._playback_lock = anyio.Lock()
        self._loss_changed = anyio.Event()  # set when a loss begins: wakes the hold timer
        self._unheard = UnheardBargeIn(confirm_s=barge_in_confirm_s)
        self._stop_timeout_s = stop_timeout_s
        self._stop_by: float | None = None
        self._opening: SonicConversation | None = None  # the conversation being opened
        self._prompt_turns: set[int] = set()  # call turn ids of hold prompts
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
        self._opened = anyio.Event()  # set once ``_conv`` is the open conversation
        self._audio_turn: int | None = None  # call turn id whose audio is streaming
        self.audio_bytes_in = 0
        self.audio_bytes_out = 0
        self.events_in = 0
        self.dtmf_keys = 0
        self.dtmf_entries = 0
        self.dtmf_sent = 0
        self.audio_bytes_withheld = 0
        self.holds_played = 0
        self.interruptions_told = 0

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
        self._turn_ids = CallTurnIds(memory.turn_offset)
        self.state = "connecting"
        task_status.started()
        failure: SonicError | None = None
        try:
            async with anyio.create_task_group() as outer:
                # Keys (and so the intents they trigger) are served while Sonic opens: an intent
                # needs no model. Intent actions run here too; cancelled once the stream closed.
                self._flow = IntentFlow(
                    book=self._intents,
                    prompts=self._prompts,
                    toolbox=self._toolbox if self._intent_tools is None else self._intent_tools,
                    journal=self._journal,
                    memory=memory,
                    task_group=outer,
                    take_floor=functools.partial(self.send_to, self._turn_control),
                    allocate_turn=self._turn_ids.allocate,
                    on_action=self._on_action,
                )
                outer.start_soon(self._pump_control)
                # Its own task: due before the conversation is open after a lost session, too.
                outer.start_soon(self._hold_timer)
                failure = await self._converse()
                outer.cancel_scope.cancel()
        finally:
            self._conv = None
            self._opening = None
            self._opened = anyio.Event()
            self._tools = None
            self._flow = None
        if isinstance(failure, SonicFatalError):
            self._journal.sonic_errors.append(failure.kind)
            self._journal.end(f"sonic_fatal:{failure.kind}", anyio.current_time())
            _log.warning("sonic_session.fatal", kind=failure.kind, error=str(failure))
            self.state = "failed"
            return
        if failure is not None:
            self._journal.sonic_errors.append(failure.kind)
            memory.loss.lost(anyio.current_time())  # the restarted session continues the loss
            _log.warning("sonic_session.gave_up", kind=failure.kind, error=str(failure))
            raise failure
        self.state = "closed"

    async def _converse(self) -> SonicError | None:
        """Open the conversation, pump until the call ends, close it in order; its failure is
        returned (raised by the caller, outside the task group that would wrap it). The
        conversation keeps the call's one history (``SessionMemory.history``): a restarted
        session continues from what the caller heard so far, not from blank."""
        opening = self._connector.conversation(
            shared_history=self._memory.history, settings=self._settings
        )
        self._opening = opening
        if self._stop_by is not None:
            opening.stop_by(self._stop_by)
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    conv = await stack.enter_async_context(opening)
                except ClosedByUs:
                    if self._stop_by is None:
                        raise
                    return None  # stopped while opening: the conversation released its streams
                async with self._playback_lock:  # a hold prompt being sent goes out whole first
                    self._memory.loss.recovered()
                self._conv = conv
                assert self._flow is not None  # made before the conversation opens
                self._flow.attach(conv)
                self._opened.set()
                self.state = "open"
                with self._work:
                    async with anyio.create_task_group() as tg:
                        # Tools run in this task group: leaving it cancels the pending ones.
                        self._tools = ToolRunner(
                            self._toolbox,
                            tg,
                            answer=functools.partial(self._send_tool_result, conv),
                            record=self._journal.record_tool_call,
                            on_action=self._on_model_action,
                        )
                        tg.start_soon(self._pump_audio, conv)
                        await self._pump_events(conv)
                        tg.cancel_scope.cancel()
                self.state = "closing"
        except SonicError as exc:
            return exc
        return None

    def _on_model_action(self, action: CallAction) -> None:
        """The model's own end or transfer; none while an intent's end or transfer is pending (the
        model may act on the note that says so, and the caller heard the intent's prompt)."""
        if self._memory.pending_end is not None:
            _log.info("sonic_session.action_ignored", action=type(action).__name__)
            return
        if self._on_action is not None:
            self._on_action(action)

    def request_stop(self) -> bool:
        """Stop pumping; the conversation then closes its streams in order within our bound."""
        if self._stop_by is None:
            self._stop_by = anyio.current_time() + max(0.0, self._stop_timeout_s - STOP_MARGIN_S)
            if self._opening is not None:
                self._opening.stop_by(self._stop_by)  # also bounds an open in progress
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

    async def _pump_control(self) -> None:
        digits = self._digits
        unheard = self._unheard
        while True:
            msg: SonicControl | None = None
            # The DTMF inter-digit timer and the unheard-barge-in timer: the receive's deadline.
            timers = [t for t in (digits.deadline, unheard.due_at) if t is not None]
            try:
                if not timers:
                    msg = await self._control_box.receive()
                else:
                    with anyio.move_on_at(min(timers)):
                        msg = await self._control_box.receive()
            except MailboxClosed:
                return
            if msg is None:
                now = anyio.current_time()
                entry = digits.expire(now)
                if entry is not None:
                    await self._on_entry(entry)
                note = unheard.take(now)
                if note is not None:
                    await self._tell_interrupted(note)
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
                    flow = self._flow
                    if entry is None and flow is not None and flow.has_dtmf:
                        # Keys that select an intent no longer entry extends act on this key.
                        rule = flow.match_pending_digits(digits.pending)
                        taken = digits.take(at) if rule is not None else None
                        if rule is not None and taken is not None:
                            self.dtmf_entries += 1
                            await flow.start(rule, "dtmf", trigger_at=at, digits=taken.digits)
                            continue
                    if entry is not None:
                        await self._on_entry(entry)
                case HeardReport(turn_id=turn_id, heard_ms=heard, total_ms=total):
                    fraction = 1.0 if total <= 0 else heard / total
                    unheard.heard(turn_id, fraction)
                    sonic_turn = self._turn_ids.sonic_id(turn_id)
                    if sonic_turn is not None:  # not a prompt: a turn of this conversation
                        conv = self._conv
                        if conv is not None:
                            conv.note_heard(sonic_turn, fraction)  # in the call's history
                        else:
                            self._memory.history.note_heard(sonic_turn, fraction)
                case PromptPlayed(turn_id=turn_id, interrupted=interrupted):
                    if self._flow is not None:
                        self._flow.prompt_played(turn_id, interrupted=interrupted)
                case CallerSpeechStopped(ended_at=ended_at, speech_ms=speech_ms):
                    conv = self._conv
                    if speech_ms >= CALLER_TURN_MIN_SPEECH_MS and conv is not None:
                        conv.expect_output()  # the stall watchdog: an answer is due now
                    unheard.caller_stopped(ended_at)
                case LocalBargeIn(turn_id=turn_id):
                    unheard.barge_in(turn_id)
                case _:
                    assert_never(msg)

    async def _tell_interrupted(self, note: str) -> None:
        """Tell the model a noise, not the caller's words, cut its answer off (it answers)."""
        conv = self._conv
        delivered = False
        if conv is not None:  # no open conversation: the session restarts from history anyway
            try:
                delivered = await conv.send_user_text(note)
            except (SonicError, ClosedByUs):
                delivered = False  # the conversation failed or is closing: its events say so
        self.interruptions_told += delivered
        _log.info("sonic_session.interruption_told", delivered=delivered)

    async def _on_entry(self, entry: DtmfEntry) -> None:
        """A complete keypad entry: an intent's trigger, else one USER text for the model."""
        flow = self._flow
        rule = flow.match_entry(entry.digits) if flow is not None else None
        if flow is None or rule is None:
            await self._send_dtmf(entry)
            return
        self.dtmf_entries += 1
        # The key that completed it (a timeout ends the entry an inter-digit time after its key).
        key_at = entry.at
        if entry.ended_by == "timeout":
            key_at -= self._dtmf_settings.interdigit_ms / 1000.0
        await flow.start(rule, "dtmf", trigger_at=key_at, digits=entry.digits)

    async def _send_dtmf(self, entry: DtmfEntry) -> None:
        """One keypad entry -> one interactive USER text (Sonic does not hear DTMF tones)."""
        self.dtmf_entries += 1
        await self._opened.wait()  # keys pressed while Sonic opens are told once it is open
        conv = self._conv
        assert conv is not None  # set before ``_opened``
        try:
            delivered = await conv.send_user_text(dtmf_text(entry, self._dtmf_settings.terminator))
        except (SonicError, ClosedByUs):
            delivered = False  # the conversation failed or is closing: its events say so
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
                if self._withheld(turn_id):
                    self.audio_bytes_withheld += len(pcm)
                    return True
                if self._audio_turn != turn_id:
                    self._audio_turn = turn_id
                    self._unheard.model_spoke(turn_id)
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
                if self._withheld(turn_id):
                    return True
                self._audio_turn = None
                await self.send_to(
                    self._playback_data, AssistantAudioEnded(turn_id=turn_id, at=now)
                )
                await self.send_to(self._turn_control, AssistantTurnEnded(turn_id=turn_id, at=now))
            case SonicBargeIn(source=source, turn_id=sonic_turn):
                flow = self._flow
                if flow is not None and flow.ignores_barge_in(self._call_turn(sonic_turn)):
                    return True
                self._unheard.model_noticed()
                await self.send_to(
                    self._turn_control,
                    BargeInDetected(
                        source="sonic_marker" if source == "marker" else "sonic_interrupted",
                        at=now,
                    ),
                )
            case UserTranscript(text=text, final=True):
                self._unheard.model_noticed()
                self._journal.user_lines.append((now, text))
                _log.info("sonic_session.user_transcript", pii_transcript=text)
                await self.send_to(self._turn_control, UserTranscribed(text=text, at=now))
                if self._flow is not None:
                    await self._flow.on_transcript(text)
            case AssistantText(text=text, stage="FINAL", turn_id=sonic_turn):
                turn_id = self._call_turn(sonic_turn)
                # The conversation recorded the text in the call's history; a withheld turn's is
                # cut to nothing there (never heard), and the report omits it.
                withheld = self._withheld(turn_id)
                if not withheld:
                    self._journal.assistant_lines.append((now, turn_id, text))
                _log.info(
                    "sonic_session.assistant_text",
                    turn_id=turn_id,
                    withheld=withheld,
                    pii_transcript=text,
                )
            case ToolUseRequested(tool_use_id=tool_use_id, name=name, arguments_json=arguments):
                tools = self._tools
                assert tools is not None  # set for as long as events are pumped
                await tools.submit(tool_use_id, name, arguments)
            case SessionLost(kind=kind):
                self._memory.loss.lost(now)
                self._loss_changed.set()  # wakes the hold timer
                _log.info("sonic_session.session_lost", kind=kind)
            case HandedOver(reason=reason, session_index=index):
                self._journal.handovers.append(now)
                if reason.startswith("error:"):  # a retryable error the conversation recovered
                    self._journal.sonic_errors.append(reason.removeprefix("error:"))
                    self._memory.loss.recovered()
                _log.info("sonic_session.handed_over", reason=reason, session_index=index)
            case SessionClosed():
                return False
            case (
                UserTranscript()
                | AssistantText()
                | SonicAudioStarted()
                | Usage()
                | CompletionEnded()
            ):
                pass
            case _:
                assert_never(event)
        return True

    # ------------------------------------------------------------------ hold prompt

    async def _hold_timer(self) -> None:
        """Play the hold prompt whenever it is due (:class:`LossWatch`), for the session's life:
        also before the conversation is open, when this session replaces one that was lost."""
        loss = self._memory.loss
        while True:
            due = loss.due_at(after_s=self._hold_after_s, repeat_s=self._hold_repeat_s)
            if due is None:
                self._loss_changed = changed = anyio.Event()
                await changed.wait()
                continue
            await anyio.sleep_until(due)
            again = loss.due_at(after_s=self._hold_after_s, repeat_s=self._hold_repeat_s)
            if again is not None and again <= anyio.current_time():
                await self._play_hold()

    async def _play_hold(self) -> None:
        """Play the hold prompt as an assistant turn of its own (nothing else is heard now)."""
        loss = self._memory.loss
        async with self._playback_lock:
            now = anyio.current_time()
            loss.held(now)
            if not self._hold_pcm or self._audio_turn is not None:
                return
            memory = self._memory
            turn_id = self._turn_ids.allocate()  # after every turn so far, before the next
            memory.last_turn_id = max(memory.last_turn_id, turn_id)
            self._prompt_turns.add(turn_id)
            self.holds_played += 1
            _log.info("sonic_session.hold_played", turn_id=turn_id)
            with anyio.CancelScope(shield=True):  # a turn is sent whole or not at all
                await self.send_to(
                    self._turn_control, AssistantTurnStarted(turn_id=turn_id, at=now)
                )
                await self.send_to(
                    self._playback_data,
                    AssistantAudio(turn_id=turn_id, pcm=self._hold_pcm, rate=_PROMPT_RATE, at=now),
                )
                await self.send_to(
                    self._playback_data, AssistantAudioEnded(turn_id=turn_id, at=now)
                )
                await self.send_to(self._turn_control, AssistantTurnEnded(turn_id=turn_id, at=now))

    def _call_turn(self, sonic_turn: int) -> int:
        turn_id, new = self._turn_ids.call_id(sonic_turn)
        if new:
            self._memory.last_turn_id = max(self._memory.last_turn_id, turn_id)
            if self._flow is not None:
                self._flow.turn_started(turn_id, sonic_turn)
        return turn_id

    def _withheld(self, turn_id: int) -> bool:
        return self._flow is not None and self._flow.withheld(turn_id)

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
            intents_matched=None if self._flow is None else self._flow.matched,
            turns_withheld=None if self._flow is None else self._flow.turns_withheld,
            audio_bytes_withheld=self.audio_bytes_withheld,
            holds_played=self.holds_played,
            interruptions_told=self.interruptions_told,
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
