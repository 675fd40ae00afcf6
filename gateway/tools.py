"""Configured tools: the ``[[tools]]`` entries of the config, checked, and what they become.

Theory of operation: each ``[[tools]]`` table is one :class:`ToolConfig` (a field of
:class:`gateway.config.GatewayConfig`, converted with the rest of the config). After conversion
:func:`check_tools` cross-checks them (distinct names, the input schema is a JSON object schema,
the URL). At start the gateway turns them into two things: :func:`sonic_tools`, the specs Sonic
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
    "ToolConfig",
    "ToolKind",
    "build_toolbox",
    "check_tools",
    "open_tool_client",
    "sonic_tools",
]

ToolKind = Literal["http"]
_NAME: Final = r"^[A-Za-z0-9_-]{1,64}$"
_SECRET_MIN: Final = 8


def _empty_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


@attrs.frozen
class ToolConfig:
    """One ``[[tools]]`` entry: a tool the model may call.

    Attributes:
        name: the name the model calls it by (letters, digits, ``_``, ``-``; at most 64).
        description: what it does and when to use it, for the model.
        input_schema: the JSON Schema of its input, a TOML table or a JSON string; must describe
            an object (``"type": "object"``). Default: an object with no properties.
        kind: ``http`` (the only kind): POST the input to ``url``, answer with the JSON returned.
        url: the ``http://`` or ``https://`` URL the input is POSTed to.
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

    def schema_json(self) -> str:
        """The input schema as a compact JSON string (what Sonic's ``inputSchema.json`` takes).

        Raises:
            ValueError: a string schema that is not JSON.
        """
        schema: object = self.input_schema
        if isinstance(schema, str):
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
        _check_url(tool.url, f"{key}.url")
        for secret, field in ((tool.bearer_token, "bearer_token"), (tool.hmac_key, "hmac_key")):
            if secret is not None and (len(secret) < _SECRET_MIN or secret.strip() != secret):
                raise ConfigError(f"{key}.{field}", "a secret of at least 8 characters, no spaces")


def _check_url(url: str, key: str) -> None:
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
    """The executable tools over the process's shared HTTP client."""
    from actors.tools import HttpTool, HttpToolSpec, Toolbox

    built = []
    for t in tools:
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
