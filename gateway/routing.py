"""Which route a call gets, decided where the truth is: Twilio's signed voice webhook.

Theory of operation:

* :meth:`CallRouter.route_call` runs in the voice webhook (``POST /twilio/voice``), whose form
  Twilio signs: the called number (``To``) picks the route (:meth:`gateway.routes.RouteTable.choose`).
  When the route has a configuration webhook, it is asked now, while the caller still hears the
  ring tone (:mod:`gateway.call_webhook`); its overrides, or the route alone after a failure (a
  WARNING ``call_webhook.failed`` with the reason), make the call's :class:`~gateway.routes.CallPlan`,
  kept in this process for the call's media socket.
* The route's name travels to the media socket as the ``route`` ``<Parameter>``
  (:data:`gateway.twiml.PARAM_ROUTE`, absent for the default route) and is bound into the signed
  stream token (:mod:`gateway.stream_token`): a ``start`` claiming another route than the webhook
  chose is refused like a forged token. Without an auth token nothing is signed, so the parameter
  is taken as sent (local use only, like everything else then).
* A plan is kept by the process that answered the webhook. Twilio's media socket may reach another
  process (several instances behind one balancer): :meth:`CallRouter.prepare` runs when the
  socket's ``start`` was accepted, and when this process kept no plan for the call and its route
  has a configuration webhook, it asks the webhook itself, with the ``from`` / ``to``
  ``<Parameter>`` values (absent with ``twilio.pass_caller_numbers = false``). That call's
  greeting waits for the answer (at most the webhook's timeout), and the webhook is asked twice
  for one call.
* :meth:`CallRouter.plan_for` runs when the socket's call is built: the plan kept for this CallSid
  (taken once; with an auth token the route parameter is bound to the same route), else the plan
  of the route the parameter names. Plans are kept at most ``keep_s`` (the stream token's
  lifetime: a stream starting later is refused anyway) and at most ``max_plans`` at once (the
  oldest is forgotten first).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Final, Protocol, Self, final, runtime_checkable

import anyio
import structlog

from gateway.call_webhook import CallFacts, WebhookFailure, ask_call_webhook
from gateway.routes import DEFAULT_ROUTE, RouteTable
from gateway.twiml import PARAM_FROM, PARAM_ROUTE, PARAM_TO

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import httpx

    from actors.call.ports import CallIdentity
    from gateway.config import GatewayConfig
    from gateway.routes import CallPlan

__all__ = ["CallRouter", "RoutedFactory"]

_log = structlog.get_logger(__name__)
_MAX_PLANS: Final = 10_000


@runtime_checkable
class RoutedFactory(Protocol):
    """A call factory that builds calls from the plans of a router (``gateway.wiring.CallBuilder``);
    the app's voice webhook then routes through the same router."""

    @property
    def router(self) -> CallRouter:
        """The router whose plans the factory reads."""
        ...


@final
class CallRouter:
    """Chooses each call's route and keeps webhook plans until the call's socket starts.

    Args:
        table: the routes (:meth:`RouteTable.build`).
        http: the process's HTTP client for configuration webhooks; None: webhooks are not asked
            (each call that would ask one gets its route, with a WARNING
            ``call_webhook.failed``, reason ``no_client``).
        keep_s: how long a plan waits for its socket.
        max_plans: most plans kept at once.
        clock: seconds on a monotonic clock (anyio's by default; tests pass their own).
    """

    __slots__ = ("_clock", "_http", "_keep_s", "_max_plans", "_plans", "table")

    def __init__(
        self,
        table: RouteTable,
        *,
        http: httpx.AsyncClient | None = None,
        keep_s: float = 60.0,
        max_plans: int = _MAX_PLANS,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        if keep_s <= 0 or max_plans < 1:
            raise ValueError("keep_s must be positive and max_plans at least 1")
        self.table = table
        self._http = http
        self._keep_s = keep_s
        self._max_plans = max_plans
        self._clock = clock
        # CallSid -> (plan, forget after), oldest first.
        self._plans: collections.OrderedDict[str, tuple[CallPlan, float]] = (
            collections.OrderedDict()
        )

    @classmethod
    def from_config(cls, config: GatewayConfig, *, http: httpx.AsyncClient | None = None) -> Self:
        """The router of ``config``'s routes and webhooks (plans kept for the token's lifetime)."""
        table = RouteTable.build(
            config.routes,
            tool_names=[t.name for t in config.tools],
            intent_names=[i.name for i in config.intents],
            webhook=config.call_webhook,
        )
        return cls(table, http=http, keep_s=config.twilio.stream_token_ttl_s)

    @property
    def kept(self) -> int:
        """Plans waiting for their socket now."""
        return len(self._plans)

    async def route_call(self, form: Mapping[str, str]) -> str:
        """Choose the route of the call the webhook's ``form`` describes; ask its configuration
        webhook (bounded by its timeout); keep the plan. Returns the route's name.

        Blocks (asynchronously) while the configuration webhook answers; raises only on
        cancellation.
        """
        call_sid = form["CallSid"]
        route = self.table.choose(form.get("To"))
        if self.table.webhook(route) is None:
            return route
        facts = CallFacts(
            call_sid=call_sid,
            account_sid=form.get("AccountSid", ""),
            from_=form.get("From"),
            to=form.get("To"),
            route=route,
        )
        plan = await self._ask(facts, stage="webhook")
        self._keep(call_sid, plan)
        return plan.route

    async def prepare(self, identity: CallIdentity) -> None:
        """Before the call of a started socket is built: ask the route's configuration webhook
        when this process kept no plan for the call (its webhook went to another process).

        Blocks (asynchronously) at most the webhook's timeout; returns at once otherwise; raises
        only on cancellation.
        """
        self._prune(self._clock())
        if identity.call_sid in self._plans:
            return
        custom = identity.custom_parameters
        route = custom.get(PARAM_ROUTE, DEFAULT_ROUTE)
        if route not in self.table.routes or self.table.webhook(route) is None:
            return
        facts = CallFacts(
            call_sid=identity.call_sid,
            account_sid=identity.account_sid,
            from_=custom.get(PARAM_FROM),
            to=custom.get(PARAM_TO),
            route=route,
        )
        self._keep(identity.call_sid, await self._ask(facts, stage="socket"))

    async def _ask(self, facts: CallFacts, *, stage: str) -> CallPlan:
        """The plan from the route's webhook's answer, or the route's (WARNING) when it failed."""
        route, call_sid = facts.route, facts.call_sid
        webhook = self.table.webhook(route)
        assert webhook is not None
        if self._http is None:
            _log.warning(
                "call_webhook.failed",
                reason="no_client",
                route=route,
                stage=stage,
                call_sid=call_sid,
            )
            return self.table.plan(route)
        started = self._clock()
        answer = await ask_call_webhook(self._http, webhook, facts, self.table)
        ms = round((self._clock() - started) * 1000.0, 1)
        if isinstance(answer, WebhookFailure):
            _log.warning(
                "call_webhook.failed",
                reason=answer.reason,
                status=answer.status,
                detail=answer.detail,
                route=route,
                stage=stage,
                call_sid=call_sid,
                ms=ms,
            )
            return self.table.plan(route)
        plan = self.table.plan(route, answer)
        _log.info(
            "call_webhook.answered",
            route=plan.route,
            overrides=[k for k in answer.__struct_fields__ if getattr(answer, k) is not None],
            stage=stage,
            call_sid=call_sid,
            ms=ms,
        )
        return plan

    def plan_for(self, identity: CallIdentity) -> CallPlan:
        """The plan of the call whose socket just started (see the module docstring). Never
        blocks."""
        self._prune(self._clock())
        route = identity.custom_parameters.get(PARAM_ROUTE, DEFAULT_ROUTE)
        kept = self._plans.pop(identity.call_sid, None)
        if kept is not None:  # this process answered the webhook: its plan is the truth
            return kept[0]
        if route not in self.table.routes:
            # Another process's config (a rolling deploy) or, without an auth token, a made-up
            # name: the default route, said out loud.
            _log.warning("call.route_unknown", route=route[:64])
            return self.table.plan(DEFAULT_ROUTE)
        if self.table.webhook(route) is not None:
            # prepare() was not run for this socket (a factory used without the app's socket
            # endpoint) or the plan was forgotten (max_plans): the route without overrides.
            _log.warning("call.plan_missing", route=route)
        return self.table.plan(route)

    def _keep(self, call_sid: str, plan: CallPlan) -> None:
        now = self._clock()
        self._prune(now)
        self._plans.pop(call_sid, None)
        while len(self._plans) >= self._max_plans:
            self._plans.popitem(last=False)
        self._plans[call_sid] = (plan, now + self._keep_s)

    def _prune(self, now: float) -> None:
        while self._plans:
            call_sid, (_, forget_at) = next(iter(self._plans.items()))
            if now < forget_at:
                return
            del self._plans[call_sid]
