"""Per-number routes and the per-call configuration webhook: configuration and the choice. Sans-I/O.

Theory of operation:

* ``[[routes]]`` entries (:class:`RouteConfig`, a field of :class:`gateway.config.GatewayConfig`)
  each name the called numbers (Twilio's ``To``, E.164) they answer and what they change for a
  call: system prompt, voice, the subset of ``[[tools]]`` offered, the greeting (a prompt name of
  ``[prompts]``, or ``"none"``). Anything a route leaves unset is the top-level setting; a number
  no route names gets the *default route* (:data:`DEFAULT_ROUTE`), which is the top-level settings
  alone. :func:`check_routes` refuses unknown tool or prompt names, duplicate route names and a
  number named twice, at load.
* ``[call_webhook]`` (top level, every route) or a route's own ``[routes.webhook]``
  (:class:`CallWebhookConfig`) asks an HTTP endpoint, per call, for overrides of the same settings
  (:class:`CallOverrides`, checked by :func:`parse_overrides`); :mod:`gateway.call_webhook` sends
  the request, :mod:`gateway.routing` ties it to the call.
* :class:`RouteTable` picks a route for a called number and merges a route with a webhook's
  overrides into the call's :class:`CallPlan`: what the call is built from
  (:mod:`gateway.wiring`).

Called numbers are the business's own numbers, yet a ``To`` still reaches logs only under ``pii_*``
keys; errors about a number name its position (``routes[1].numbers[0]``), never the number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Final, Literal

import attrs
import msgspec

from actors.errors import ConfigError, RemoteProtocolError
from gateway.tools import check_http_url

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_ROUTE",
    "GREETING_NONE",
    "PROMPT_NAMES",
    "CallOverrides",
    "CallPlan",
    "CallWebhookConfig",
    "PlanSource",
    "RouteConfig",
    "RouteTable",
    "check_call_webhook",
    "check_routes",
    "parse_overrides",
]

DEFAULT_ROUTE: Final = "default"
"""The route of a number no ``[[routes]]`` entry names: the top-level settings."""
GREETING_NONE: Final = "none"
"""A route's (or webhook's) ``greeting`` that plays no greeting at all."""
PROMPT_NAMES: Final = ("greeting", "hold", "transferring", "goodbye", "sorry")
"""The prompt names of ``[prompts]`` (the same as ``actors.call.PROMPT_NAMES``, repeated here so
the config layer does not import the call's actors)."""

MAX_OVERRIDES_BYTES: Final = 64 * 1024
"""Largest webhook answer accepted (a system prompt is text, not a document store)."""

_NAME: Final = r"^[A-Za-z0-9_-]{1,64}$"
_VOICE: Final = r"^[A-Za-z0-9]+$"
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_SECRET_MIN: Final = 8
_MAX_PROMPT_CHARS: Final = 32 * 1024

PlanSource = Literal["route", "webhook"]


@attrs.frozen
class CallWebhookConfig:
    """``[call_webhook]`` (every route) or ``[routes.webhook]`` (one route): per-call overrides.

    Attributes:
        url: the ``http://`` or ``https://`` URL the call's facts are POSTed to; unset: no webhook.
        secret: signs each request body, ``X-Sonic-Gateway-Signature: sha256=<hex>``
            (HMAC-SHA256; required with ``url``; at least 8 characters).
        timeout_s: how long the answer may take, all of it; later, the route applies (WARNING).
    """

    url: str | None = None
    secret: str | None = attrs.field(default=None, repr=False)
    timeout_s: Annotated[float, msgspec.Meta(ge=0.1, le=10.0)] = 2.0

    @property
    def enabled(self) -> bool:
        """True when a URL is configured."""
        return self.url is not None


@attrs.frozen
class RouteConfig:
    """One ``[[routes]]`` entry: the numbers it answers and what it changes for their calls.

    Attributes:
        name: the route's name (letters, digits, ``_``, ``-``; at most 64; not ``default``); it
            appears in logs, the call report and the stream token.
        numbers: the called numbers (``To``) it answers, E.164 (``+`` and up to 15 digits); each
            number belongs to one route at most.
        system_prompt: the system prompt; unset: ``sonic.system_prompt``.
        voice_id: the voice; unset: ``sonic.voice_id``.
        tools: names of ``[[tools]]`` entries offered to the model (``[]``: none); unset: all.
        greeting: a prompt name of ``[prompts]`` played as the greeting, or ``"none"``; unset:
            ``greeting``.
        intents: names of ``[[intents]]`` entries its calls match (``[]``: none); unset: all.
        webhook: this route's own configuration webhook; unset (no ``url``): ``[call_webhook]``.
    """

    name: Annotated[str, msgspec.Meta(pattern=_NAME)]
    numbers: tuple[str, ...] = attrs.field(default=(), repr=False)
    system_prompt: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    voice_id: Annotated[str, msgspec.Meta(pattern=_VOICE)] | None = None
    tools: tuple[str, ...] | None = None
    greeting: str | None = None
    intents: tuple[str, ...] | None = None
    webhook: CallWebhookConfig = attrs.field(factory=CallWebhookConfig)


class CallOverrides(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A configuration webhook's answer: a JSON object, every key optional.

    Attributes:
        route: the name of a configured route to start from instead of the number's.
        system_prompt: replaces the route's system prompt.
        voice_id: replaces the route's voice.
        greeting: a prompt name of ``[prompts]``, or ``"none"``.
        tools: the names of the ``[[tools]]`` offered (``[]``: none).
        intents: the names of the ``[[intents]]`` the call matches (``[]``: none).
    """

    route: str | None = None
    system_prompt: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_PROMPT_CHARS)] | None
    ) = None
    voice_id: Annotated[str, msgspec.Meta(pattern=_VOICE, max_length=64)] | None = None
    greeting: str | None = None
    tools: tuple[str, ...] | None = None
    intents: tuple[str, ...] | None = None


@attrs.frozen
class CallPlan:
    """What one call is built from: its route merged with the webhook's overrides (if any).

    ``None`` fields mean the top-level setting. ``source`` is ``"webhook"`` when the webhook's
    answer was applied, else ``"route"``.
    """

    route: str
    system_prompt: str | None = attrs.field(default=None, repr=False)
    voice_id: str | None = None
    tools: tuple[str, ...] | None = None
    greeting: str | None = None
    intents: tuple[str, ...] | None = None
    source: PlanSource = "route"


_OVERRIDES: Final = msgspec.json.Decoder(CallOverrides)


@attrs.frozen
class RouteTable:
    """The routes by name and by called number (built once at start, shared by every call).

    Attributes:
        routes: route name -> its config; :data:`DEFAULT_ROUTE` is always present.
        by_number: called number -> route name.
        tool_names: every configured tool's name (what a webhook's ``tools`` may name).
        intent_names: every configured intent's name (what a webhook's ``intents`` may name).
        default_webhook: ``[call_webhook]``.
    """

    routes: Mapping[str, RouteConfig]
    by_number: Mapping[str, str] = attrs.field(repr=False)
    tool_names: frozenset[str] = frozenset()
    intent_names: frozenset[str] = frozenset()
    default_webhook: CallWebhookConfig = attrs.field(factory=CallWebhookConfig)

    @classmethod
    def build(
        cls,
        routes: Sequence[RouteConfig],
        *,
        tool_names: Sequence[str] = (),
        intent_names: Sequence[str] = (),
        webhook: CallWebhookConfig | None = None,
    ) -> RouteTable:
        """The table of already checked routes (:func:`check_routes`) plus the default route."""
        by_name: dict[str, RouteConfig] = {DEFAULT_ROUTE: RouteConfig(name=DEFAULT_ROUTE)}
        by_number: dict[str, str] = {}
        for route in routes:
            by_name[route.name] = route
            for number in route.numbers:
                by_number[number] = route.name
        return cls(
            routes=by_name,
            by_number=by_number,
            tool_names=frozenset(tool_names),
            intent_names=frozenset(intent_names),
            default_webhook=webhook if webhook is not None else CallWebhookConfig(),
        )

    def choose(self, called: str | None) -> str:
        """The route name for a called number (``To``); the default route for any other."""
        if called is None:
            return DEFAULT_ROUTE
        return self.by_number.get(called, DEFAULT_ROUTE)

    def webhook(self, route: str) -> CallWebhookConfig | None:
        """The configuration webhook asked for calls of ``route`` (its own, else the top-level
        one), or None."""
        config = self.routes.get(route)
        if config is not None and config.webhook.enabled:
            return config.webhook
        return self.default_webhook if self.default_webhook.enabled else None

    def plan(self, route: str, overrides: CallOverrides | None = None) -> CallPlan:
        """The call's plan: ``route`` (or the route the overrides name) with the overrides on top.

        An unknown ``route`` is the default route (a config changed between the webhook and the
        socket); :func:`parse_overrides` has checked the overrides' names.
        """
        if overrides is not None and overrides.route is not None:
            route = overrides.route
        config = self.routes.get(route) or self.routes[DEFAULT_ROUTE]
        plan = CallPlan(
            route=config.name,
            system_prompt=config.system_prompt,
            voice_id=config.voice_id,
            tools=config.tools,
            greeting=config.greeting,
            intents=config.intents,
        )
        if overrides is None:
            return plan
        return CallPlan(
            route=plan.route,
            system_prompt=_first(overrides.system_prompt, plan.system_prompt),
            voice_id=_first(overrides.voice_id, plan.voice_id),
            tools=overrides.tools if overrides.tools is not None else plan.tools,
            greeting=_first(overrides.greeting, plan.greeting),
            intents=overrides.intents if overrides.intents is not None else plan.intents,
            source="webhook",
        )


def _first(a: str | None, b: str | None) -> str | None:
    return a if a is not None else b


def parse_overrides(body: bytes, table: RouteTable) -> CallOverrides:
    """Decode and check a configuration webhook's answer (an empty body: no overrides).

    Raises:
        RemoteProtocolError: the answer is the webhook's fault; ``kind`` says how: ``too_large``,
            ``bad_json`` (not JSON, not an object, an unknown key or a value of the wrong form),
            ``unknown_route``, ``unknown_tool``, ``unknown_intent``, ``unknown_greeting``.
    """
    if len(body) > MAX_OVERRIDES_BYTES:
        raise RemoteProtocolError(f"answer of {len(body)} bytes", kind="too_large")
    if not body.strip():
        return CallOverrides()
    try:
        overrides = _OVERRIDES.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise RemoteProtocolError(str(exc), kind="bad_json") from None
    if overrides.route is not None and overrides.route not in table.routes:
        raise RemoteProtocolError(_shown(overrides.route), field="route", kind="unknown_route")
    for name in overrides.tools or ():
        if name not in table.tool_names:
            raise RemoteProtocolError(_shown(name), field="tools", kind="unknown_tool")
    for name in overrides.intents or ():
        if name not in table.intent_names:
            raise RemoteProtocolError(_shown(name), field="intents", kind="unknown_intent")
    if overrides.greeting is not None and overrides.greeting not in (*PROMPT_NAMES, GREETING_NONE):
        raise RemoteProtocolError(
            _shown(overrides.greeting), field="greeting", kind="unknown_greeting"
        )
    return overrides


def _shown(value: str) -> str:
    """A name from the webhook, bounded for the log line."""
    return repr(value[:64])


# ---------------------------------------------------------------- load-time checks


def check_call_webhook(webhook: CallWebhookConfig, key: Callable[[str], str]) -> None:
    """Check one webhook table; ``key(field)`` names a field as the user wrote it.

    Raises:
        ConfigError: a bad URL, a missing or short secret, a secret without a URL.
    """
    if webhook.url is None:
        if webhook.secret is not None:
            raise ConfigError(key("url"), "set when a secret is (the URL the webhook is POSTed to)")
        return
    check_http_url(webhook.url, key("url"))
    secret = webhook.secret
    if secret is None:
        raise ConfigError(key("secret"), "set with url: the HMAC-SHA256 key that signs requests")
    if len(secret) < _SECRET_MIN or secret.strip() != secret:
        raise ConfigError(key("secret"), "a secret of at least 8 characters, no spaces")


def check_routes(
    routes: Sequence[RouteConfig], tool_names: Sequence[str], intent_names: Sequence[str] = ()
) -> None:
    """Cross-check converted ``[[routes]]`` entries against each other and the ``[[tools]]``.

    Raises:
        ConfigError: naming ``routes[i].<key>`` (a number by its position, never its digits).
    """
    names: set[str] = set()
    numbers: dict[str, str] = {}  # number -> where it was first named
    tools = set(tool_names)
    for i, route in enumerate(routes):
        key = f"routes[{i}]"
        if route.name == DEFAULT_ROUTE:
            raise ConfigError(f"{key}.name", f"a name other than {DEFAULT_ROUTE!r} (reserved)")
        if route.name in names:
            raise ConfigError(f"{key}.name", "a name no other route has", route.name)
        names.add(route.name)
        if not route.numbers:
            raise ConfigError(f"{key}.numbers", "at least one called number (E.164, +15551234567)")
        for j, number in enumerate(route.numbers):
            where = f"{key}.numbers[{j}]"
            if _E164.fullmatch(number) is None:
                raise ConfigError(where, "an E.164 number: + then 2 to 15 digits, no spaces")
            if number in numbers:
                raise ConfigError(where, f"a number no other entry has ({numbers[number]} has it)")
            numbers[number] = where
        seen_tools: set[str] = set()
        for j, tool in enumerate(route.tools or ()):
            if tool not in tools:
                known = ", ".join(tool_names) or "none configured"
                raise ConfigError(
                    f"{key}.tools[{j}]", f"the name of a [[tools]] entry ({known})", tool
                )
            if tool in seen_tools:
                raise ConfigError(f"{key}.tools[{j}]", "a tool named once", tool)
            seen_tools.add(tool)
        seen_intents: set[str] = set()
        for j, intent in enumerate(route.intents or ()):
            if intent not in intent_names or intent in seen_intents:
                known = ", ".join(intent_names) or "none configured"
                raise ConfigError(
                    f"{key}.intents[{j}]",
                    f"the name of an [[intents]] entry, once ({known})",
                    intent,
                )
            seen_intents.add(intent)
        if route.greeting is not None and route.greeting not in (*PROMPT_NAMES, GREETING_NONE):
            raise ConfigError(
                f"{key}.greeting",
                "a prompt name (" + ", ".join(PROMPT_NAMES) + f") or {GREETING_NONE!r}",
                route.greeting,
            )
        check_call_webhook(route.webhook, f"{key}.webhook.".__add__)
