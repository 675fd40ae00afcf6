"""``Call``: the object the gateway runs for one Twilio media stream (gateway's LiveCall).

Rules:

* ``Call(socket, identity, deps)`` builds the call's mailboxes, the Sonic session memory and the
  CallSupervisor (data only; nothing runs). ``await call.run()`` runs the tree in the caller's
  task and returns, when the call has ended, its :class:`~actors.call.outcome.CallOutcome`: the
  outcome, the close code and reason (mapped from the journal's end reason in ONE place,
  :mod:`actors.call.outcome`). It never raises for a call-level failure (peer fault, Sonic
  failure, gave up): those end THIS call only. Cancellation propagates (the gateway is shutting
  down).
* A peer's fault closes the socket at once (TwilioIngress does it before the tree stops), so the
  close frame never waits for the Sonic session to shut down.
* Logging: ``call_sid``/``stream_sid`` are bound with structlog's contextvars for the whole run,
  so every actor's lines carry them (child tasks inherit the context). One ``call.summary`` line
  per call with per-turn latencies; transcripts only under ``pii_*`` keys.
* On the way out the socket is closed with the outcome's code (bounded, shielded; a no-op when
  the ingress closed it already), then ``deps.on_finished(report)``.
* A built-in tool's action (``end_call``, ``transfer_call``; :mod:`actors.tools.builtin`) arrives
  after its result went to the model: the call records ``tool_end_call`` / ``tool_transfer``,
  stops the tree like :meth:`Call.request_stop`, then -- the socket now its alone -- plays the
  goodbye / transferring prompt and waits for its mark's echo (bounded by the clip plus slack),
  and only then asks Twilio's REST API (``deps.call_control``) to complete the call or run the
  transfer ``<Dial>``. An already-ended call is fine; a REST failure is a WARNING. The socket
  then closes with 1000. An intent's action arrives the same way once its own prompt has played
  (``announced``): the prompt is not played again.
* :meth:`Call.say_goodbye` (the gateway is stopping and waited long enough) stops the tree like
  :meth:`Call.request_stop` -- the Sonic stream is closed in order -- then plays the goodbye prompt
  and closes the socket with 1001 (going away).
* Sonic failed for good (a fatal error, ``sonic_fatal:<kind>``, or the supervisor gave up after
  repeated restarts): once the tree has stopped the caller hears the sorry prompt, then, with a
  fallback target (``deps.fallback``, one of the ``transfer_call`` targets) and Twilio's REST API,
  the transferring prompt and the transfer; otherwise the call is completed through the REST API
  (when there is one) as ``end_call`` does. The outcome stays ``sonic_failed`` / ``failed`` (close
  1011, ERROR): the caller was not left in silence, but the call did fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, assert_never, final

import anyio
import msgspec
import structlog

from actors.call.goodbye import play_goodbye
from actors.call.outcome import CallOutcome, outcome_for_end_reason
from actors.call.report import CallJournal, CallReport
from actors.call.sonic_session import SessionMemory
from actors.call.supervisor import CallMailboxes, build_call_supervisor
from actors.call.view import call_view
from actors.errors import GatewayError, SupervisorGaveUp
from actors.tools import CallAction, EndCall, TransferCall

if TYPE_CHECKING:
    from actors.call.deps import CallDeps
    from actors.call.ports import CallIdentity, TwilioSocket
    from actors.call.view import CallView
    from actors.runtime import SupervisorSnapshot

__all__ = ["ACTION_MARK", "Call"]

_log = structlog.get_logger("actors.call")
_CLOSE_TIMEOUT_S = 1.0
ACTION_MARK: Final = "call_action"
"""The mark after the prompt of an ``end_call`` / ``transfer_call``; its echo means "heard"."""
_ACTION_SLACK_S: Final = 1.0
_REST_TIMEOUT_S: Final = 30.0


@final
class Call:
    """One call's actor tree (see the module docstring).

    Args:
        socket: the Twilio socket after ``start`` (the call reads and writes it from now on).
        identity: what ``start`` said.
        deps: shared services and options.
    """

    def __init__(self, socket: TwilioSocket, identity: CallIdentity, deps: CallDeps) -> None:
        self._socket = socket
        self._identity = identity
        self._deps = deps
        self._journal = CallJournal(started_at=identity.started_at)
        self._mailboxes = CallMailboxes.create()
        self._memory = SessionMemory.for_settings(deps.sonic_settings)
        self._supervisor = build_call_supervisor(
            socket=socket,
            identity=identity,
            deps=deps,
            journal=self._journal,
            mailboxes=self._mailboxes,
            memory=self._memory,
            on_call_action=self._on_call_action,
        )
        self._report: CallReport | None = None
        self._goodbye = False
        self._action: CallAction | None = None

    @property
    def identity(self) -> CallIdentity:
        """The call's identity."""
        return self._identity

    async def run(self) -> CallOutcome:
        """Run the call until it ends; blocks for the call's whole life.

        Returns:
            How the call ended, with the close code the socket was closed with.

        Raises:
            RuntimeError: ``run`` was called twice.
        """
        if self._journal.ended_at is not None or self._supervisor.started_at is not None:
            raise RuntimeError("a Call runs once")
        if not self._identity.started_at:
            self._journal.started_at = anyio.current_time()
        ident = self._identity
        with structlog.contextvars.bound_contextvars(
            call_sid=ident.call_sid, stream_sid=ident.stream_sid
        ):
            _log.info("call.started")
            try:
                await self._supervisor.run()
                if self._goodbye:
                    heard = await play_goodbye(
                        self._socket,
                        ident.stream_sid,
                        self._deps.goodbye_ulaw,
                        chunk_ms=self._deps.playback_chunk_ms,
                    )
                    _log.info("call.goodbye_played", heard=heard)
                elif self._action is not None:
                    await self._carry_out(self._action)
                elif (self._journal.end_reason or "").startswith("sonic_fatal:"):
                    await self._apologise()
            except SupervisorGaveUp as exc:
                self._journal.end("supervisor_gave_up", anyio.current_time())
                _log.error("call.gave_up", error=str(exc))
                await self._apologise()
            except Exception as exc:
                # A child failed during start-up: this call ends, the gateway goes on. A bug of
                # ours, so a traceback (never with locals: gateway.logs).
                self._journal.end(f"error:{type(exc).__name__}", anyio.current_time(), str(exc))
                _log.error("call.failed", error=type(exc).__name__, exc_info=exc)
            except BaseException:
                self._journal.end("cancelled", anyio.current_time())
                raise
            finally:
                self._journal.end("stopped", anyio.current_time())
                journal = self._journal
                ending = outcome_for_end_reason(journal.end_reason or "stopped", journal.end_detail)
                with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                    await self._socket.close(ending.close_code, ending.close_reason)
                self._finish()
        return ending

    def request_stop(self) -> None:
        """Begin an orderly stop (the gateway is draining); does not block."""
        self._journal.end("stopped_by_gateway", anyio.current_time())
        self._supervisor.request_stop()

    def say_goodbye(self) -> None:
        """End the call because the gateway is stopping: stop the tree, play the goodbye prompt,
        close with 1001; does not block (:meth:`run` returns when done)."""
        self._goodbye = True
        self._journal.end("drained", anyio.current_time())
        self._supervisor.request_stop()

    def _on_call_action(self, action: CallAction) -> None:
        """A built-in tool's action (its result already went to the model): stop the tree; the
        prompt and the REST request follow in :meth:`run`. The first ending wins."""
        if self._goodbye or self._action is not None or self._journal.end_reason is not None:
            _log.info("call.action_ignored", action=type(action).__name__)
            return
        self._action = action
        reason = "tool_end_call" if isinstance(action, EndCall) else "tool_transfer"
        self._journal.end(reason, anyio.current_time())
        self._supervisor.request_stop()

    async def _apologise(self) -> None:
        """Sonic failed for good: the sorry prompt, then the fallback transfer or the end of the
        call (the tree has stopped: the socket is ours alone)."""
        deps = self._deps
        sorry = deps.prompts.get("sorry")
        if deps.fallback is not None and deps.call_control is not None:
            _log.info("call.fallback", target=deps.fallback.target)
            await self._carry_out(
                deps.fallback, clip=sorry + deps.prompts.get("transferring"), clear=True
            )
        else:
            await self._carry_out(EndCall(), clip=sorry, clear=True)

    async def _carry_out(
        self, action: CallAction, *, clip: bytes | None = None, clear: bool = False
    ) -> None:
        """Play the action's prompt until Twilio echoes its mark (bounded), then ask Twilio's REST
        API to hang up or transfer. Runs after the tree stopped: the socket is ours alone. An
        ``announced`` action (an intent's: its prompt has played) plays nothing more.

        Args:
            clip: the prompt to play (default: goodbye or transferring, per the action).
            clear: drop the audio Twilio still buffers first (default: it plays out first: what
                the model said before the tool use).
        """
        deps = self._deps
        heard: bool | None = None  # an intent's prompt: SonicSession logged whether it was heard
        if not action.announced:
            if clip is None:
                clip = deps.prompts.get(
                    "goodbye" if isinstance(action, EndCall) else "transferring"
                )
            heard = await play_goodbye(
                self._socket,
                self._identity.stream_sid,
                clip,
                chunk_ms=deps.playback_chunk_ms,
                mark=ACTION_MARK,
                clear=clear,
                slack_s=_ACTION_SLACK_S + deps.playback_lead_ms / 1000.0,
            )
        control = deps.call_control
        call_sid = self._identity.call_sid
        match action:
            case EndCall():
                _log.info("call.ending", heard=heard)
                if control is None:
                    return
                with anyio.move_on_after(_REST_TIMEOUT_S) as scope:
                    try:
                        result = await control.complete_call(call_sid)
                    except GatewayError as exc:
                        _log.warning("call.end_failed", reason=str(exc))
                        return
                    _log.info("call.completed_by_rest", result=type(result).__name__)
                if scope.cancelled_caught:
                    _log.warning("call.end_failed", reason="no answer from Twilio in time")
            case TransferCall(target=target, twiml=twiml):
                _log.info("call.transferring", heard=heard, target=target)
                if control is None:
                    return
                with anyio.move_on_after(_REST_TIMEOUT_S) as scope:
                    try:
                        result = await control.update_call_twiml(call_sid, twiml)
                    except GatewayError as exc:
                        _log.warning("call.transfer_failed", target=target, reason=str(exc))
                        return
                    _log.info("call.transferred", target=target, result=type(result).__name__)
                if scope.cancelled_caught:
                    _log.warning(
                        "call.transfer_failed",
                        target=target,
                        reason="no answer from Twilio in time",
                    )
            case _:
                assert_never(action)

    def statistics(self) -> SupervisorSnapshot:
        """The CallSupervisor's snapshot tree (msgspec-encodable; ``/debug/actors``)."""
        return self._supervisor.statistics()

    def debug_view(self, *, reveal_pii: bool) -> CallView:
        """The call for operators: identity, age, floor and the actor tree (``/debug/actors``)."""
        return call_view(
            self._identity, self.statistics(), now=anyio.current_time(), reveal_pii=reveal_pii
        )

    def caller_audio_dropped_ms(self) -> float:
        """Caller audio dropped because SonicSession fell behind (its drop-oldest mailbox), ms."""
        return self._mailboxes.sonic_audio.statistics().dropped_weight

    def report(self) -> CallReport:
        """What happened so far (final once :meth:`run` has returned)."""
        if self._report is not None:
            return self._report
        return self._journal.report(
            call_sid=self._identity.call_sid,
            stream_sid=self._identity.stream_sid,
            now=anyio.current_time(),
        )

    def _finish(self) -> None:
        report = self._report = self.report()
        dropped_ms = self.caller_audio_dropped_ms()
        if dropped_ms:
            # The model never heard part of the caller: the process was overloaded (see limits).
            _log.warning("call.caller_audio_dropped", ms=dropped_ms)
        _log.info(
            "call.summary",
            end_reason=report.end_reason,
            duration_ms=report.duration_ms,
            greeting_ms=report.greeting_ms,
            turns=msgspec.to_builtins(report.turns),
            barge_ins=msgspec.to_builtins(report.barge_ins),
            heard_ms=report.heard_ms,
            handovers=report.handovers,
            sonic_restarts=report.sonic_restarts,
            tools=_tool_counts(report),
            caller_audio_dropped_ms=dropped_ms,
            pii_transcript=[f"{line.role}: {line.text}" for line in report.transcript],
        )
        callback = self._deps.on_finished
        if callback is not None:
            try:
                callback(report)
            except Exception:
                _log.exception("call.on_finished_failed")


def _tool_counts(report: CallReport) -> dict[str, dict[str, float]]:
    """Per tool: calls, calls by outcome and the slowest latency (the summary stays one line)."""
    counts: dict[str, dict[str, float]] = {}
    for call in report.tools:
        entry = counts.setdefault(call.name, {"calls": 0, "max_latency_ms": 0.0})
        entry["calls"] += 1
        entry[call.outcome] = entry.get(call.outcome, 0) + 1
        entry["max_latency_ms"] = max(entry["max_latency_ms"], call.latency_ms)
    return counts
