"""Configured tools: the ``[[tools]]`` entries of the config, checked, and what they become.

Theory of operation: each ``[[tools]]`` table is one :class:`ToolConfig` (a field of
:class:`gateway.config.GatewayConfig`, converted with the rest of the config). After conversion
:func:`check_tools` cross-checks them (distinct names, the input schema is a JSON object schema,
the URL; a built-in's targets) and :func:`check_builtin_tools` refuses the built-ins
(``end_call``, ``transfer_call``) without Twilio REST credentials. At start the gateway turns them into two things: :func:`sonic_tools`, the specs Sonic
sees in ``promptStart`` (name, description, input schema), and :func:`build_toolbox`, the
executable tools over the ONE ``httpx.AsyncClient`` the process opens with
:func:`open_tool_client`. Nothing here runs a tool; :mod:`actors.tools` does.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import attrs
import httpx
import msgspec

from actors.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from actors.sonic import SonicTool
    from actors.tools import Toolbox

__all__ = [
    "BUILTIN_KINDS",
    "ToolConfig",
    "ToolKind",
    "TransferTarget",
    "build_toolbox",
    "check_builtin_tools",
    "check_http_url",
    "check_tools",
    "fallback_transfer",
    "open_tool_client",
    "sonic_tools",
]

ToolKind = Literal["http", "end_call", "transfer_call"]
BUILTIN_KINDS: Final = ("end_call", "transfer_call")
_NAME: Final = r"^[A-Za-z0-9_-]{1,64}$"
_SECRET_MIN: Final = 8


def _empty_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


@attrs.frozen
class TransferTarget:
    """One allowed ``transfer_call`` target (``[[tools.targets]]``): the model picks it by name.

    Attributes:
        name: what the model calls it (letters, digits, ``_``, ``-``; at most 64).
        number: a phone number to dial (``+`` and digits); PII, never logged.
        sip: a ``sip:`` / ``sips:`` URI to dial instead of a number.
        timeout_s: how long the target may ring (5 to 600; Twilio's default 30 when unset).
        caller_id: the caller id the target sees (a number or SIP URI the account may use).
    """

    name: Annotated[str, msgspec.Meta(pattern=_NAME)]
    number: str | None = attrs.field(default=None, repr=False)
    sip: str | None = attrs.field(default=None, repr=False)
    timeout_s: int | None = None
    caller_id: str | None = attrs.field(default=None, repr=False)

    def twiml(self) -> bytes:
        """The transfer ``<Dial>`` document.

        Raises:
            ValueError: neither or both of ``number`` / ``sip``, or a malformed value.
        """
        from gateway.twiml import dial_number_twiml, dial_sip_twiml

        if (self.number is None) == (self.sip is None):
            raise ValueError("exactly one of number and sip")
        if self.number is not None:
            return dial_number_twiml(
                self.number, timeout_s=self.timeout_s, caller_id=self.caller_id
            )
        assert self.sip is not None
        return dial_sip_twiml(self.sip, timeout_s=self.timeout_s, caller_id=self.caller_id)


@attrs.frozen
class ToolConfig:
    """One ``[[tools]]`` entry: a tool the model may call.

    Attributes:
        name: the name the model calls it by (letters, digits, ``_``, ``-``; at most 64).
        description: what it does and when to use it, for the model.
        input_schema: the JSON Schema of its input, a TOML table or a JSON string; must describe
            an object (``"type": "object"``). Default: an object with no properties.
        kind: ``http``: POST the input to ``url``, answer with the JSON returned;
            ``end_call`` / ``transfer_call``: the built-ins (no ``url``, no ``input_schema``: the
            gateway makes it; Twilio REST credentials required; docs/tools.md).
        url: the ``http://`` or ``https://`` URL the input is POSTed to (``http`` only).
        targets: ``transfer_call`` only: the allowed targets, at least one.
        bearer_token: sent as ``Authorization: Bearer`` (secret; at least 8 characters).
        hmac_key: signs each body, ``X-Sonic-Gateway-Signature: sha256=<hex>`` (secret; at least
            8 characters).
        timeout_s: bound on one tool call, retries included; past it the model gets
            ``{"error": "timeout"}``.
        max_retries: extra attempts after a failure to connect (nothing else is retried).
    """

    name: Annotated[str, msgspec.Meta(pattern=_NAME)]
    description: Annotated[str, msgspec.Meta(min_length=1)]
    input_schema: dict[str, Any] | str = attrs.field(factory=_empty_schema)
    kind: ToolKind = "http"
    url: str | None = None
    bearer_token: str | None = attrs.field(default=None, repr=False)
    hmac_key: str | None = attrs.field(default=None, repr=False)
    timeout_s: Annotated[float, msgspec.Meta(gt=0.0, le=60.0)] = 5.0
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    targets: tuple[TransferTarget, ...] = ()

    def schema_json(self) -> str:
        """The input schema as a compact JSON string (what Sonic's ``inputSchema.json`` takes).

        Raises:
            ValueError: a string schema that is not JSON.
        """
        schema: object = self.input_schema
        if self.kind == "end_call":
            schema = _empty_schema()
        elif self.kind == "transfer_call":
            names = [t.name for t in self.targets]
            schema = {
                "type": "object",
                "properties": {
                    "target": {
                        "type": "string",
                        "enum": names,
                        "description": "who to transfer the caller to: one of " + ", ".join(names),
                    }
                },
                "required": ["target"],
            }
        elif isinstance(schema, str):
            try:
                schema = msgspec.json.decode(schema)
            except msgspec.DecodeError as exc:
                raise ValueError(str(exc)) from None
        return msgspec.json.encode(schema).decode()


def check_tools(tools: Sequence[ToolConfig]) -> None:
    """Cross-check converted ``[[tools]]`` entries.

    Raises:
        ConfigError: naming ``tools[i].<key>`` and the expected form.
    """
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        key = f"tools[{i}]"
        if tool.name in seen:
            raise ConfigError(f"{key}.name", "a name no other tool has", tool.name)
        seen.add(tool.name)
        if tool.kind in BUILTIN_KINDS:
            _check_builtin(tool, key)
            continue
        if tool.targets:
            raise ConfigError(f"{key}.targets", 'unset (only for kind = "transfer_call")')
        try:
            schema = msgspec.json.decode(tool.schema_json())
        except ValueError:
            raise ConfigError(
                f"{key}.input_schema", "a JSON Schema (table or JSON string)", tool.input_schema
            ) from None
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise ConfigError(
                f"{key}.input_schema",
                'a JSON Schema object describing an object ("type": "object")',
                tool.input_schema,
            )
        if not isinstance(schema.get("properties", {}), dict):
            raise ConfigError(f"{key}.input_schema", '"properties" as an object', tool.input_schema)
        if tool.url is None:
            raise ConfigError(f"{key}.url", f'set for kind = "{tool.kind}"')
        check_http_url(tool.url, f"{key}.url")
        for secret, field in ((tool.bearer_token, "bearer_token"), (tool.hmac_key, "hmac_key")):
            if secret is not None and (len(secret) < _SECRET_MIN or secret.strip() != secret):
                raise ConfigError(f"{key}.{field}", "a secret of at least 8 characters, no spaces")


def _check_builtin(tool: ToolConfig, key: str) -> None:
    if tool.url is not None:
        raise ConfigError(f"{key}.url", f'unset for kind = "{tool.kind}"')
    if tool.input_schema != _empty_schema():
        raise ConfigError(f"{key}.input_schema", f'unset for kind = "{tool.kind}" (it is built in)')
    if tool.kind == "end_call":
        if tool.targets:
            raise ConfigError(f"{key}.targets", 'unset (only for kind = "transfer_call")')
        return
    if not tool.targets:
        raise ConfigError(f"{key}.targets", "at least one [[tools.targets]] table")
    names: set[str] = set()
    for j, target in enumerate(tool.targets):
        tkey = f"{key}.targets[{j}]"
        if target.name in names:
            raise ConfigError(f"{tkey}.name", "a name no other target has", target.name)
        names.add(target.name)
        try:
            target.twiml()
        except ValueError as exc:
            # The message names the field and never repeats the value (a number is PII).
            raise ConfigError(tkey, str(exc)) from None


def check_builtin_tools(tools: Sequence[ToolConfig], *, rest_configured: bool) -> None:
    """A built-in tool needs Twilio's REST API: refuse one without its credentials.

    Raises:
        ConfigError: naming the first built-in tool's ``kind``.
    """
    for i, tool in enumerate(tools):
        if tool.kind in BUILTIN_KINDS and not rest_configured:
            raise ConfigError(
                f"tools[{i}].kind",
                "twilio.account_sid with twilio.auth_token or an API key (Twilio REST credentials)"
                f' for kind = "{tool.kind}"',
            )


def check_http_url(url: str, key: str) -> None:
    """Refuse anything but an absolute http(s) URL without credentials or fragment (``key``
    names the setting in the error)."""
    expected = "an absolute http:// or https:// URL without credentials or fragment"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        raise ConfigError(key, expected, url) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(key, expected, url)


def fallback_transfer(
    tools: Sequence[ToolConfig], target: str, *, key: str = "call.fallback_target"
) -> bytes:
    """The transfer TwiML of ``target``, a target of a configured ``transfer_call`` tool: where a
    call goes when Sonic fails for good (``call.fallback_target``).

    Raises:
        ConfigError: no ``transfer_call`` tool has a target of that name (names ``key``).
    """
    names: list[str] = []
    for tool in tools:
        if tool.kind != "transfer_call":
            continue
        for candidate in tool.targets:
            if candidate.name == target:
                return candidate.twiml()
            names.append(candidate.name)
    expected = (
        "the name of a transfer_call target (" + ", ".join(names) + ")"
        if names
        else "the name of a [[tools.targets]] entry of a transfer_call tool (none is configured)"
    )
    raise ConfigError(key, expected, target)


def sonic_tools(tools: Sequence[ToolConfig]) -> tuple[SonicTool, ...]:
    """What Sonic is told about the tools (``promptStart``'s tool configuration)."""
    from actors.sonic import SonicTool

    return tuple(
        SonicTool(name=t.name, description=t.description, input_schema_json=t.schema_json())
        for t in tools
    )


def build_toolbox(
    tools: Sequence[ToolConfig], client: httpx.AsyncClient, *, max_in_flight: int = 4
) -> Toolbox:
    """The executable tools over the process's shared HTTP client (built-ins need none)."""
    from actors.tools import EndCallTool, HttpTool, HttpToolSpec, Tool, Toolbox, TransferCallTool

    built: list[Tool] = []
    for t in tools:
        if t.kind == "end_call":
            built.append(EndCallTool(t.name))
            continue
        if t.kind == "transfer_call":
            built.append(TransferCallTool({x.name: x.twiml() for x in t.targets}, t.name))
            continue
        assert t.url is not None  # check_tools ran at load
        spec = HttpToolSpec(
            name=t.name,
            url=t.url,
            bearer_token=t.bearer_token,
            hmac_key=t.hmac_key,
            timeout_s=t.timeout_s,
            max_retries=t.max_retries,
        )
        built.append(HttpTool(spec, client))
    return Toolbox(built, max_in_flight=max_in_flight)


@contextlib.asynccontextmanager
async def open_tool_client() -> AsyncIterator[httpx.AsyncClient]:
    """The process's one HTTP client for tools (connection reuse across calls), for the block.

    Redirects are not followed (a tool answers where it is configured); per-request timeouts
    come from each tool.
    """
    async with httpx.AsyncClient(
        follow_redirects=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    ) as client:
        yield client
