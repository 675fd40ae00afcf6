"""``Call``: the object the gateway runs for one Twilio media stream (gateway's LiveCall).

Rules:

* ``Call(socket, identity, deps)`` builds the call's mailboxes, the Sonic session memory and the
  CallSupervisor (data only; nothing runs). ``await call.run()`` runs the tree in the caller's
  task and returns when the call has ended, for whatever reason; the reason is in the report.
  It never raises for a call-level failure (protocol error, Sonic failure, gave up): those end
  THIS call only. Cancellation propagates (the gateway is shutting down).
* Logging: ``call_sid``/``stream_sid`` are bound with structlog's contextvars for the whole run,
  so every actor's lines carry them (child tasks inherit the context). One ``call.summary`` line
  per call with per-turn latencies; transcripts only under ``pii_*`` keys.
* On the way out the socket is closed (bounded, shielded), then ``deps.on_finished(report)``.
* :meth:`Call.say_goodbye` (the gateway is stopping and waited long enough) stops the tree like
  :meth:`Call.request_stop` -- the Sonic stream is closed in order -- then plays the goodbye prompt
  and closes the socket with 1001 (going away).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import anyio
import msgspec
import structlog

from actors.call.goodbye import play_goodbye
from actors.call.report import CallJournal, CallReport
from actors.call.sonic_session import SessionMemory
from actors.call.supervisor import CallMailboxes, build_call_supervisor
from actors.errors import SupervisorGaveUp

if TYPE_CHECKING:
    from actors.call.deps import CallDeps
    from actors.call.ports import CallIdentity, TwilioSocket
    from actors.runtime import SupervisorSnapshot

__all__ = ["Call"]

_log = structlog.get_logger("actors.call")
_CLOSE_TIMEOUT_S = 1.0


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
        )
        self._report: CallReport | None = None
        self._goodbye = False

    @property
    def identity(self) -> CallIdentity:
        """The call's identity."""
        return self._identity

    async def run(self) -> None:
        """Run the call until it ends; blocks for the call's whole life.

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
            except SupervisorGaveUp as exc:
                self._journal.end("supervisor_gave_up", anyio.current_time())
                _log.error("call.gave_up", error=str(exc))
            except Exception as exc:
                # A child failed during start-up: this call ends, the gateway goes on.
                self._journal.end(f"error:{type(exc).__name__}", anyio.current_time())
                _log.exception("call.failed")
            except BaseException:
                self._journal.end("cancelled", anyio.current_time())
                raise
            finally:
                self._journal.end("stopped", anyio.current_time())
                with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                    await self._socket.close(*_close_code(self._journal.end_reason or ""))
                self._finish()

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

    def statistics(self) -> SupervisorSnapshot:
        """The CallSupervisor's snapshot tree (msgspec-encodable; ``/debug/actors``)."""
        return self._supervisor.statistics()

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
            caller_audio_dropped_ms=dropped_ms,
            pii_transcript=[f"{line.role}: {line.text}" for line in report.transcript],
        )
        callback = self._deps.on_finished
        if callback is not None:
            try:
                callback(report)
            except Exception:
                _log.exception("call.on_finished_failed")


def _close_code(reason: str) -> tuple[int, str]:
    if reason == "drained":
        return 1001, "going away"
    if reason.startswith("protocol_error"):
        return 1008, "protocol error"
    if reason in ("caller_hangup", "socket_closed", "stopped", "stopped_by_gateway", "cancelled"):
        return 1000, ""
    return 1011, "call ended"
