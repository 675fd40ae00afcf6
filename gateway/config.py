"""The gateway's one configuration object, built and validated once at start.

Theory of operation:

* :class:`GatewayConfig` is a frozen attrs object made of frozen sections (``server``, ``twilio``,
  ``limits``, ``debug``, ``logging``, ``sonic``, ``call``, ``prompts``, ``call_webhook``) plus the
  top-level ``backend``, ``tools`` (``[[tools]]`` entries, :mod:`gateway.tools`), ``intents``
  (``[[intents]]`` entries, :mod:`gateway.intents`) and ``routes`` (``[[routes]]`` entries,
  :mod:`gateway.routes`); the last three in TOML only. Defaults live on the attrs fields and
  nowhere else.
* Sources, in increasing precedence: the defaults, a TOML file (:meth:`GatewayConfig.from_toml`),
  then ``SONIC_GATEWAY_*`` environment variables (:meth:`GatewayConfig.from_env`);
  :func:`load_config` combines both. The environment convention is
  ``SONIC_GATEWAY_<SECTION>__<KEY>`` (section and key joined by a *double* underscore, because keys
  contain single ones), e.g. ``SONIC_GATEWAY_TWILIO__AUTH_TOKEN``; top-level keys have no section:
  ``SONIC_GATEWAY_BACKEND``. An empty value for an optional key means "not set".
* Raw values are checked for unknown keys against the attrs fields, then converted with
  ``msgspec.convert`` (types, ``Literal`` choices and ``msgspec.Meta`` bounds), then cross-checked.
  Every failure raises :class:`actors.errors.ConfigError` naming the key exactly as the user wrote
  it (the dotted TOML key, or the environment variable) and the expected form.
* Relative paths in a TOML file are resolved against the file's directory; in the environment,
  against the working directory.

Actors never read the environment: the gateway passes the relevant section down.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
import typing
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, get_type_hints

import attrs
import msgspec

from actors.call import MIN_BARGE_IN_SPEECH_MS
from actors.errors import ConfigError
from actors.wire import EndpointingSensitivity
from gateway.intents import IntentConfig, check_intents
from gateway.routes import CallWebhookConfig, RouteConfig, check_call_webhook, check_routes
from gateway.tools import (
    ToolConfig,
    TransferTarget,
    check_builtin_tools,
    check_tools,
    fallback_transfer,
)

if TYPE_CHECKING:
    # Imported lazily at run time: actors.sonic pulls in the AWS SDK, which the config layer
    # (and commands like ``emulator``) should not pay for.
    from collections.abc import Sequence

    from actors.sonic import PoolSettings, SonicSettings, SonicTool

__all__ = [
    "ENV_PREFIX",
    "MEDIA_PATH",
    "VOICE_PATH",
    "Backend",
    "CallConfig",
    "CallWebhookConfig",
    "DebugConfig",
    "EndpointingSensitivity",
    "GatewayConfig",
    "IntentConfig",
    "LimitsConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "PoolLevel",
    "PromptsConfig",
    "RouteConfig",
    "SampleRate",
    "ServerConfig",
    "SonicConfig",
    "ToolConfig",
    "TwilioConfig",
    "backend_chosen",
    "check_emulator_not_production",
    "config_from_mapping",
    "load_config",
]

ENV_PREFIX: Final = "SONIC_GATEWAY_"
VOICE_PATH: Final = "/twilio/voice"
MEDIA_PATH: Final = "/twilio/media"

Backend = Literal["emulator", "bedrock"]
LogFormat = Literal["json", "console", "auto"]
LogLevel = Literal["debug", "info", "warning", "error"]
PoolLevel = Literal["connect", "stream"]
SampleRate = Literal[8000, 16000, 24000]

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]

_DEFAULT_SYSTEM_PROMPT: Final = "You are a helpful, concise voice assistant on a phone call."


@attrs.frozen
class ServerConfig:
    """Where the HTTP/WebSocket edge listens and how Twilio reaches it.

    Attributes:
        host: interface to bind (loopback by default; a proxy or tunnel fronts it).
        port: TCP port to bind (0 picks a free one).
        public_url: the public ``https://host[:port][/prefix]`` origin Twilio dials. The media
            stream URL ``wss://host[:port][/prefix]/twilio/media`` and the webhook URL used for
            signature checks are rebuilt from it, never from request headers.
        uvloop: run ``serve`` on uvloop's event loop when it is installed (it is, with uvicorn's
            standard extra, on Linux and macOS); docs/performance.md compares the two loops.
    """

    host: NonEmptyStr = "127.0.0.1"
    port: Port = 8080
    public_url: str | None = None
    uvloop: bool = True

    def public_voice_url(self) -> str | None:
        """The webhook URL Twilio signs (``https://.../twilio/voice``), or None without a public URL."""
        if self.public_url is None:
            return None
        return self.public_url + VOICE_PATH

    def public_media_url(self) -> str | None:
        """The ``wss://.../twilio/media`` URL put in ``<Stream url>`` and signed on the upgrade."""
        if self.public_url is None:
            return None
        parts = urllib.parse.urlsplit(self.public_url)
        scheme = "ws" if parts.scheme in ("http", "ws") else "wss"
        return f"{scheme}://{parts.netloc}{parts.path}{MEDIA_PATH}"


@attrs.frozen
class TwilioConfig:
    """Twilio account settings.

    Attributes:
        auth_token: the account's primary Auth Token; when set, every webhook and WebSocket upgrade
            must carry a valid ``X-Twilio-Signature``. Without it the check is off (warned at start).
        stream_name: the ``name`` attribute of ``<Stream>``.
        pass_caller_numbers: put the caller's ``From``/``To`` numbers in ``<Parameter>``s (they
            then reach the call as ``custom_parameters["from"]``/``["to"]``; PII).
        account_sid: when set, webhooks for another ``AccountSid`` are refused (403) and so are
            streams whose ``start.accountSid`` differs.
        stream_token_key: the key of the per-call stream tokens (HMAC-SHA256) that tie a media
            socket to a call the signed webhook answered (:mod:`gateway.stream_token`); unset:
            derived from ``auth_token``. Set the same key on every instance behind one number.
        stream_token_ttl_s: how long after the webhook answered its stream may start.
        api_key_sid / api_key_secret: an API key (``SK...``) for the REST client
            (:mod:`gateway.twilio_rest`); without one the client authenticates with ``account_sid``
            and ``auth_token``. Set both or neither.
        region / edge: the Twilio Region (``ie1``) and edge location (``dublin``) REST requests go
            to, ``https://api.<edge>.<region>.twilio.com``; unset: ``https://api.twilio.com``. An
            edge alone means region ``us1``; a region needs an edge.
        api_base_url: overrides the REST base URL entirely (tests point it at a local fake).
        rest_timeout_s: the REST client's timeout for each of connect, write, read and pool wait.
    """

    auth_token: str | None = None
    stream_name: NonEmptyStr = "sonic"
    pass_caller_numbers: bool = True
    account_sid: Annotated[str, msgspec.Meta(pattern=r"^AC[0-9a-fA-F]{32}$")] | None = None
    stream_token_key: str | None = None
    stream_token_ttl_s: Annotated[float, msgspec.Meta(ge=5.0, le=3600.0)] = 60.0
    api_key_sid: Annotated[str, msgspec.Meta(pattern=r"^SK[0-9a-fA-F]{32}$")] | None = None
    api_key_secret: str | None = None
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}[0-9]$")] | None = None
    edge: Annotated[str, msgspec.Meta(pattern=r"^[a-z]+(-[a-z]+)*$")] | None = None
    api_base_url: str | None = None
    rest_timeout_s: Annotated[float, msgspec.Meta(ge=0.1, le=120.0)] = 10.0

    @property
    def rest_configured(self) -> bool:
        """The REST client has credentials: ``account_sid`` with an auth token or an API key."""
        return self.account_sid is not None and (
            self.auth_token is not None or self.api_key_secret is not None
        )


@attrs.frozen
class LimitsConfig:
    """Protective limits of the edge.

    Attributes:
        max_concurrent_calls: calls beyond this are answered ``<Reject reason="busy"/>`` on the
            webhook and refused on the WebSocket. The default met the load benchmark's service level in every
            run on the project's 2-core machine (docs/performance.md); measure yours with
            ``scripts/bench_load.py --search``.
        ws_max_message_bytes: largest incoming WebSocket message; a bigger one ends that call.
        handshake_timeout_s: time allowed for ``connected`` + ``start`` after the socket opens
            (Twilio sends both at once; a socket still silent after this is not a call).
        max_pending_sockets: most sockets accepted but not yet past a valid ``start``; they hold
            no call slot, so they never reduce ``max_concurrent_calls``.
        admission_loop_lag_ms: while the event loop's recent lag (90th percentile of the last
            2 s, sampled every 25 ms) exceeds this, new calls are refused like at the call limit;
            None turns the check off. Live calls are never touched by it.
        drain_timeout_s: on SIGTERM/SIGINT, how long live calls may go on before each remaining
            one hears the goodbye prompt and is closed (1001); no new call is taken meanwhile.
    """

    max_concurrent_calls: PositiveInt = 60
    ws_max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 65536
    handshake_timeout_s: PositiveSeconds = 5.0
    max_pending_sockets: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 20
    admission_loop_lag_ms: Annotated[float, msgspec.Meta(gt=0)] | None = 25.0
    drain_timeout_s: PositiveSeconds = 30.0


@attrs.frozen
class DebugConfig:
    """The ``GET /debug/actors`` endpoint.

    Attributes:
        enabled: serve the endpoint at all (404 otherwise).
        bearer_token: when set, requests need ``Authorization: Bearer <token>`` (401 otherwise).
    """

    enabled: bool = False
    bearer_token: str | None = None


@attrs.frozen
class LoggingConfig:
    """structlog output.

    Attributes:
        format: ``json`` lines, ``console`` (readable), or ``auto`` (console when stderr is a TTY).
        level: minimum level.
        log_pii: show values under ``pii`` keys instead of masking them (never in production).
        access_log: emit uvicorn's per-request access log.
    """

    format: LogFormat = "auto"
    level: LogLevel = "info"
    log_pii: bool = False
    access_log: bool = False


@attrs.frozen
class SonicConfig:
    """Nova Sonic client settings; :meth:`to_sonic_settings` / :meth:`to_pool_settings` turn them
    into the Sonic client's objects (same names and bounds as :class:`actors.sonic.SonicSettings`).

    Attributes:
        region: AWS region of the Bedrock runtime endpoint.
        model_id: Bedrock model id.
        voice_id: output voice.
        system_prompt: the system prompt sent as the first TEXT block.
        max_tokens, top_p, temperature: inference configuration.
        endpointing_sensitivity: turn detection: ``HIGH`` answers soonest, ``LOW`` waits longest.
        input_rate: caller audio rate sent to Sonic (Hz).
        output_rate: assistant audio rate asked of Sonic (Hz).
        endpoint_uri: endpoint override (a proxy); None for the regional endpoint. With
            ``backend = "emulator"`` the gateway points the client at the emulator itself.
        ca_bundle: PEM file trusted for ``endpoint_uri`` only.
        audio_batch_ms: milliseconds of caller audio per ``audioInput`` event (multiple of 20).
        quiet_batch_ms: caller audio the local VAD hears as quiet is written to Sonic this much
            at a time (several events per write); sound goes as it arrives. At most
            ``audio_batch_ms`` writes every event as soon as it is complete.
        speech_batch_ms: caller speech in the caller's own turn (no answer playing) is written
            this much at a time; onsets and speech over an answer (barge-in) go at once. 20 = off.
        handover_after_s: open the next session and hand over after this long.
        stall_timeout_s: a Sonic stream that gives no output for this long after a caller turn
            (or a USER text) is stalled: it is replaced by a new session with the history. 0
            turns the check off.
        pool_size: warm entries kept ahead of calls (0 disables the pool).
        pool_level: what the pool pre-opens: ``connect`` (TLS + HTTP/2, safe default) or
            ``stream`` (also the Bedrock stream).
        pool_max_idle_s: pooled streams older than this are recycled.
        pool_streams_per_connection: most Sonic streams on one HTTP/2 connection (also kept
            under the server's SETTINGS_MAX_CONCURRENT_STREAMS).
        pool_max_connections: most HTTP/2 connections taking new streams.
    """

    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]+$")] = "us-east-1"
    model_id: NonEmptyStr = "amazon.nova-2-sonic-v1:0"
    voice_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9]+$")] = "matthew"
    system_prompt: NonEmptyStr = _DEFAULT_SYSTEM_PROMPT
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1024
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.9
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.7
    endpointing_sensitivity: EndpointingSensitivity = "MEDIUM"
    input_rate: SampleRate = 16000
    output_rate: SampleRate = 24000
    endpoint_uri: str | None = None
    ca_bundle: Path | None = None
    audio_batch_ms: Annotated[int, msgspec.Meta(ge=20, le=200, multiple_of=20)] = 20
    quiet_batch_ms: Annotated[int, msgspec.Meta(ge=20, le=400, multiple_of=20)] = 200
    speech_batch_ms: Annotated[int, msgspec.Meta(ge=20, le=100, multiple_of=20)] = 100
    handover_after_s: Annotated[float, msgspec.Meta(ge=1.0, le=470.0)] = 360.0
    stall_timeout_s: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 10.0
    pool_size: Annotated[int, msgspec.Meta(ge=0, le=64)] = 2
    pool_level: PoolLevel = "connect"
    pool_max_idle_s: Annotated[float, msgspec.Meta(ge=1.0, le=420.0)] = 60.0
    pool_streams_per_connection: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    pool_max_connections: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8

    def to_sonic_settings(
        self,
        *,
        endpoint_uri: str | None = None,
        ca_bundle: Path | None = None,
        tools: Sequence[SonicTool] = (),
        system_prompt: str | None = None,
    ) -> SonicSettings:
        """The Sonic client's per-conversation settings.

        Args:
            endpoint_uri: overrides ``endpoint_uri`` (the in-process emulator's endpoint).
            ca_bundle: overrides ``ca_bundle`` (the emulator's CA).
            tools: the tools offered to the model (``gateway.tools.sonic_tools``).
            system_prompt: overrides ``system_prompt`` (:meth:`GatewayConfig.system_prompt`: it
                with what the caller heard before the model spoke).
        """
        from actors.sonic import SonicSettings

        return SonicSettings(
            region=self.region,
            model_id=self.model_id,
            voice_id=self.voice_id,
            system_prompt=self.system_prompt if system_prompt is None else system_prompt,
            max_tokens=self.max_tokens,
            top_p=self.top_p,
            temperature=self.temperature,
            endpointing_sensitivity=self.endpointing_sensitivity,
            input_rate=self.input_rate,
            output_rate=self.output_rate,
            endpoint_uri=self.endpoint_uri if endpoint_uri is None else endpoint_uri,
            ca_bundle=self.ca_bundle if ca_bundle is None else ca_bundle,
            audio_batch_ms=self.audio_batch_ms,
            quiet_batch_ms=self.quiet_batch_ms,
            speech_batch_ms=self.speech_batch_ms,
            handover_after_s=self.handover_after_s,
            stall_timeout_s=self.stall_timeout_s or None,
            tools=tuple(tools),
        )

    def to_pool_settings(self) -> PoolSettings:
        """The Sonic connector's warm-pool settings."""
        from actors.sonic import PoolSettings

        return PoolSettings(
            size=self.pool_size,
            level=self.pool_level,
            max_idle_s=self.pool_max_idle_s,
            streams_per_connection=self.pool_streams_per_connection,
            max_connections=self.pool_max_connections,
        )


@attrs.frozen
class CallConfig:
    """Per-call behaviour.

    Attributes:
        greeting_wav: the older name of ``prompts.greeting_wav`` (still accepted; setting both is
            an error).
        playback_lead_ms: most assistant audio kept buffered at Twilio ahead of playback
            (multiple of 20). The part above one chunk is the cushion against network delay and
            jitter; a barge-in's ``clear`` drops whatever is buffered.
        playback_chunk_ms: assistant audio per ``media`` message, each followed by one ``mark``
            (multiple of 20, at most ``playback_lead_ms``). Fewer, larger messages cost less CPU;
            heard-audio accounting reads the playback clock between marks, so it does not get
            coarser with larger chunks.
        local_vad_barge_in: also barge in on local VAD, not only on Sonic's signal.
        min_barge_in_speech_ms: local VAD speech needed before a barge-in (guards coughs).
        dtmf_interdigit_ms: the caller's keypad entry ends this long after the last key.
        dtmf_terminator: the key that ends a keypad entry at once ("" for none).
        dtmf_max_digits: a keypad entry ends when it has this many keys.
        tools_max_in_flight: most tool calls running at once in one call; the model gets
            ``{"error": "busy"}`` for more.
        hold_after_ms: when a Sonic session is lost and no new one has taken over after this
            long, the caller hears the hold prompt (again every 4 s after it ends while the loss
            lasts). 0: never.
        fallback_target: when Sonic fails for good, the caller hears the sorry prompt and is
            transferred to this target: the name of a ``[[tools.targets]]`` entry of a
            ``transfer_call`` tool. Unset: the call is ended after the sorry prompt.
    """

    greeting_wav: Path | None = None
    playback_lead_ms: Annotated[int, msgspec.Meta(ge=20, le=2000, multiple_of=20)] = 200
    playback_chunk_ms: Annotated[int, msgspec.Meta(ge=20, le=1000, multiple_of=20)] = 100
    local_vad_barge_in: bool = False
    min_barge_in_speech_ms: Annotated[int, msgspec.Meta(ge=20, le=5000)] = int(
        MIN_BARGE_IN_SPEECH_MS
    )
    dtmf_interdigit_ms: Annotated[int, msgspec.Meta(ge=100, le=30_000)] = 2000
    dtmf_terminator: Annotated[str, msgspec.Meta(pattern=r"^[0-9*#A-D]?$")] = "#"
    dtmf_max_digits: Annotated[int, msgspec.Meta(ge=1, le=64)] = 20
    tools_max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=32)] = 4
    hold_after_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 1000
    fallback_target: str | None = None


@attrs.frozen
class PromptsConfig:
    """The named prompt clips (:mod:`actors.call.prompts`), loaded once at start.

    Each ``<name>_wav`` replaces one clip with a WAV file (integer PCM, 8/16/24/32-bit, any
    sample rate and channel count; mixed down and resampled to 8 kHz μ-law at start). Without
    it, ``<cache_dir>/<name>.ulaw`` is used when present (``sonic-gateway prompts render`` writes
    those), else the bundled clip. The ``<name>_text`` values are what ``prompts render`` asks
    Amazon Polly to say; they do not change a clip loaded from a file.

    Attributes:
        greeting_wav, hold_wav, transferring_wav, goodbye_wav, sorry_wav: WAV file per prompt.
        cache_dir: directory of rendered ``<name>.ulaw`` clips (raw 8 kHz μ-law).
        greeting_text, hold_text, transferring_text, goodbye_text, sorry_text: texts to render.
    """

    greeting_wav: Path | None = None
    hold_wav: Path | None = None
    transferring_wav: Path | None = None
    goodbye_wav: Path | None = None
    sorry_wav: Path | None = None
    cache_dir: Path | None = None
    greeting_text: NonEmptyStr = "Hello, how can I help?"
    hold_text: NonEmptyStr = "Please hold for a moment."
    transferring_text: NonEmptyStr = "Transferring your call now."
    goodbye_text: NonEmptyStr = "Sorry, we must end the call now. Goodbye."
    sorry_text: NonEmptyStr = "Sorry, something went wrong. Please try again."

    def wav(self, name: str) -> Path | None:
        """The WAV file configured for prompt ``name`` (None: none)."""
        value: Path | None = getattr(self, f"{name}_wav")
        return value

    def text(self, name: str) -> str:
        """The text ``prompts render`` synthesises for prompt ``name``."""
        value: str = getattr(self, f"{name}_text")
        return value


_PROMPT_WAV_KEYS: Final = (
    "greeting_wav",
    "hold_wav",
    "transferring_wav",
    "goodbye_wav",
    "sorry_wav",
)


@attrs.frozen
class GatewayConfig:
    """Everything the gateway process is configured with; frozen and validated.

    Build it with :meth:`from_toml`, :meth:`from_env` or :func:`load_config`; the plain constructor
    takes already-typed sections (tests, embedding).
    """

    backend: Backend = "emulator"
    server: ServerConfig = attrs.field(factory=ServerConfig)
    twilio: TwilioConfig = attrs.field(factory=TwilioConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    debug: DebugConfig = attrs.field(factory=DebugConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
    sonic: SonicConfig = attrs.field(factory=SonicConfig)
    call: CallConfig = attrs.field(factory=CallConfig)
    prompts: PromptsConfig = attrs.field(factory=PromptsConfig)
    tools: tuple[ToolConfig, ...] = ()
    call_webhook: CallWebhookConfig = attrs.field(factory=CallWebhookConfig)
    routes: tuple[RouteConfig, ...] = ()
    intents: tuple[IntentConfig, ...] = ()

    def system_prompt(self, *, base: str | None = None, greeting: str | None = "greeting") -> str:
        """The system prompt a Sonic session gets: ``base`` (default ``sonic.system_prompt``),
        then what the caller heard before the model spoke (the words of the prompt played as the
        greeting, ``prompts.<greeting>_text``; None: no greeting played, nothing said) and, with
        ``[[intents]]``, what the notes about them are (``actors.call.intents``)."""
        from actors.call import greeting_system_note, intent_system_note

        parts = [self.sonic.system_prompt if base is None else base]
        if greeting is not None:
            parts.append(greeting_system_note(self.prompts.text(greeting)))
        if self.intents:
            parts.append(intent_system_note())
        return "\n\n".join(parts)

    @classmethod
    def from_toml(cls, path: Path) -> GatewayConfig:
        """Read a TOML file (defaults for missing keys). Blocks on file I/O.

        Raises:
            ConfigError: unreadable file, bad TOML, unknown key or bad value.
        """
        return load_config(path, {})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GatewayConfig:
        """Build from ``SONIC_GATEWAY_*`` variables in ``environ`` (defaults for the rest).

        Raises:
            ConfigError: unknown variable or bad value (named by the variable).
        """
        return load_config(None, environ)


def load_config(path: Path | None, environ: Mapping[str, str]) -> GatewayConfig:
    """Build the config from a TOML file (optional) overridden by ``SONIC_GATEWAY_*`` variables.

    Blocks on file I/O.

    Raises:
        ConfigError: naming the TOML key or environment variable at fault and the expected form.
    """
    raw: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}  # where a value came from: env var name
    base_dir = Path.cwd()
    if path is not None:
        raw = _read_toml(path)
        base_dir = path.parent
        _check_known_keys(raw, GatewayConfig, ())
    env_keys = _apply_env(raw, environ, origin)
    config = _convert(raw, origin)
    config = _normalise(config, base_dir, env_keys)
    _check_cross_fields(config, origin)
    return config


def config_from_mapping(raw: Mapping[str, Any], base_dir: Path) -> GatewayConfig:
    """Build the config from an already parsed TOML document, with every check :func:`load_config`
    makes (unknown keys, types and ranges, cross-field rules); relative paths resolve against
    ``base_dir``. No environment variables are read. Used by the call replays.

    Raises:
        ConfigError: naming the key at fault and the expected form.
    """
    document = dict(raw)
    _check_known_keys(document, GatewayConfig, ())
    config = _convert(document, {})
    config = _normalise(config, base_dir, set())
    _check_cross_fields(config, {})
    return config


def backend_chosen(path: Path | None, environ: Mapping[str, str]) -> bool:
    """True when ``backend`` was set on purpose: in the TOML file or the environment (where
    ``serve --backend`` lands too), not left at its default. Blocks on file I/O.

    Raises:
        ConfigError: the file cannot be read or parsed (as :func:`load_config`).
    """
    if _env_name(("backend",)) in environ:
        return True
    return path is not None and "backend" in _read_toml(path)


def check_emulator_not_production(config: GatewayConfig, *, backend_chosen: bool) -> None:
    """Refuse the emulator backend by default when the config looks like production.

    A Twilio auth token or an ``https`` public URL means real callers may dial in; the emulator
    (the default backend) would answer them with its canned persona. Choosing the emulator on
    purpose (``backend_chosen``) is allowed.

    Raises:
        ConfigError: naming ``backend`` and why the config looks like production.
    """
    if config.backend != "emulator" or backend_chosen:
        return
    public_url = config.server.public_url
    if config.twilio.auth_token is not None:
        why = "twilio.auth_token is set"
    elif public_url is not None and public_url.lower().startswith("https://"):
        why = "server.public_url is https"
    else:
        return
    raise ConfigError(
        "backend",
        f'"bedrock", or "emulator" chosen explicitly (--backend emulator, {_env_name(("backend",))}'
        f" or backend in the config file): {why}, so real callers could reach the default"
        " emulator backend",
    )


# ---------------------------------------------------------------- reading


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), "a readable TOML file", exc.strerror) from exc
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "valid UTF-8 TOML", str(exc)) from exc


def _section_types() -> dict[str, type]:
    hints = get_type_hints(GatewayConfig)
    return {name: hint for name, hint in hints.items() if attrs.has(hint)}


def _check_known_keys(raw: Mapping[str, Any], cls: type, prefix: tuple[str, ...]) -> None:
    names = attrs.fields_dict(cls)
    hints = get_type_hints(cls)
    for key, value in raw.items():
        dotted = ".".join((*prefix, key))
        if key not in names:
            known = ", ".join(".".join((*prefix, n)) for n in names)
            raise ConfigError(dotted, f"a known key (one of: {known})", key)
        hint = hints[key]
        if key == "tools" and prefix == () and isinstance(value, list):
            for i, entry in enumerate(value):
                if not isinstance(entry, dict):
                    raise ConfigError(f"tools[{i}]", "a [[tools]] table", entry)
                _check_known_keys(entry, ToolConfig, (f"tools[{i}]",))
                targets = entry.get("targets")
                for j, target in enumerate(targets if isinstance(targets, list) else ()):
                    if isinstance(target, dict):
                        _check_known_keys(target, TransferTarget, (f"tools[{i}].targets[{j}]",))
        elif key == "routes" and prefix == () and isinstance(value, list):
            for i, entry in enumerate(value):
                if not isinstance(entry, dict):
                    raise ConfigError(f"routes[{i}]", "a [[routes]] table", entry)
                _check_known_keys(entry, RouteConfig, (f"routes[{i}]",))
        elif key == "intents" and prefix == () and isinstance(value, list):
            for i, entry in enumerate(value):
                if not isinstance(entry, dict):
                    raise ConfigError(f"intents[{i}]", "an [[intents]] table", entry)
                _check_known_keys(entry, IntentConfig, (f"intents[{i}]",))
        elif attrs.has(hint):
            if not isinstance(value, dict):
                raise ConfigError(dotted, f"a [{dotted}] table", value)
            _check_known_keys(value, hint, (*prefix, key))


def _env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def _apply_env(
    raw: dict[str, Any], environ: Mapping[str, str], origin: dict[tuple[str, ...], str]
) -> set[tuple[str, ...]]:
    """Overlay ``SONIC_GATEWAY_*`` values onto ``raw``, each converted to its field's type."""
    sections = _section_types()
    top_hints = get_type_hints(GatewayConfig, include_extras=True)
    applied: set[tuple[str, ...]] = set()
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 1 and parts[0] in top_hints and parts[0] not in sections:
            hint = top_hints[parts[0]]
            path: tuple[str, ...] = (parts[0],)
        elif len(parts) == 2 and parts[0] in sections:
            section_hints = get_type_hints(sections[parts[0]], include_extras=True)
            if parts[1] not in section_hints:
                raise ConfigError(name, _known_env_names(), name)
            hint = section_hints[parts[1]]
            path = (parts[0], parts[1])
        else:
            raise ConfigError(name, _known_env_names(), name)
        text = environ[name]
        value: Any
        if text == "" and _is_optional(hint):
            value = None
        else:
            try:
                value = msgspec.convert(text, hint, strict=False, dec_hook=_dec_hook)
            except msgspec.ValidationError as exc:
                raise ConfigError(name, _expected(exc, hint), text) from exc
        target = raw
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
        origin[path] = name
        applied.add(path)
    return applied


def _known_env_names() -> str:
    names = [
        _env_name(("backend",)),
        *(
            _env_name((section, field.name))
            for section, cls in _section_types().items()
            for field in attrs.fields(cls)
        ),
    ]
    return "a known variable, " + ENV_PREFIX + "<SECTION>__<KEY> (e.g. " + names[1] + ")"


def _is_optional(hint: object) -> bool:
    return type(None) in typing.get_args(hint)


def _dec_hook(typ: type, obj: object) -> object:
    if typ is Path and isinstance(obj, str | Path):
        return Path(obj)
    raise ValueError(f"Expected `{getattr(typ, '__name__', typ)}`")


# ---------------------------------------------------------------- converting

_PATH_RE: Final = re.compile(r" - at `\$((?:\.[A-Za-z0-9_]+|\[[^\]]*\])*)`$")


def _convert(raw: dict[str, Any], origin: Mapping[tuple[str, ...], str]) -> GatewayConfig:
    try:
        return msgspec.convert(raw, GatewayConfig, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        path = _error_path(exc)
        raise ConfigError(
            origin.get(path, ".".join(path) or "<root>"),
            _expected(exc, _hint_at(path)),
            _lookup(raw, path),
        ) from exc


def _error_path(exc: msgspec.ValidationError) -> tuple[str, ...]:
    """The dotted path msgspec names; an entry of a list keeps its index (``tools[1]``)."""
    match = _PATH_RE.search(str(exc))
    if match is None:
        return ()
    parts: list[str] = []
    for name, index in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", match.group(1)):
        if name:
            parts.append(name)
        elif parts:
            parts[-1] += f"[{index}]"
    return tuple(parts)


def _split_index(part: str) -> tuple[str, int | None]:
    name, _, index = part.partition("[")
    return name, int(index.rstrip("]")) if index else None


def _hint_at(path: tuple[str, ...]) -> object:
    hint: object = GatewayConfig
    for part in path:
        if not (isinstance(hint, type) and attrs.has(hint)):
            return None
        name, index = _split_index(part)
        hint = get_type_hints(hint, include_extras=True).get(name)
        if index is not None:  # an entry of a ``tuple[X, ...]``
            args = typing.get_args(hint)
            hint = args[0] if args else None
    return hint


def _choices(hint: object) -> tuple[object, ...]:
    """The ``Literal`` values allowed by ``hint`` (through ``Annotated`` and ``| None``)."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) is Annotated:
        return _choices(typing.get_args(hint)[0])
    return tuple(c for arg in typing.get_args(hint) for c in _choices(arg))


def _expected(exc: msgspec.ValidationError, hint: object) -> str:
    """The expected form, in words, from msgspec's message (and the field's type for choices)."""
    text = _PATH_RE.sub("", str(exc))
    choices = _choices(hint)
    if choices:
        return "one of " + ", ".join(repr(c) for c in choices)
    text = re.sub(r", got `[^`]*`", "", text.removeprefix("Expected "))
    return text.replace("`", "")


def _lookup(raw: Mapping[str, Any], path: tuple[str, ...]) -> object:
    node: object = raw
    for part in path:
        name, index = _split_index(part)
        if not isinstance(node, Mapping) or name not in node:
            return None
        node = node[name]
        if index is not None:
            if not isinstance(node, list) or index >= len(node):
                return None
            node = node[index]
    return node


# ---------------------------------------------------------------- after conversion


def _normalise(
    config: GatewayConfig, base_dir: Path, env_keys: set[tuple[str, ...]]
) -> GatewayConfig:
    """Resolve relative paths and drop a trailing ``/`` from the public URL."""

    def resolve(path: Path | None, key: tuple[str, ...]) -> Path | None:
        if path is None or path.is_absolute():
            return path
        return (Path.cwd() if key in env_keys else base_dir) / path

    sonic = attrs.evolve(
        config.sonic, ca_bundle=resolve(config.sonic.ca_bundle, ("sonic", "ca_bundle"))
    )
    call = attrs.evolve(
        config.call, greeting_wav=resolve(config.call.greeting_wav, ("call", "greeting_wav"))
    )
    prompts = config.prompts
    prompts = attrs.evolve(
        prompts,
        greeting_wav=resolve(prompts.greeting_wav, ("prompts", "greeting_wav")),
        hold_wav=resolve(prompts.hold_wav, ("prompts", "hold_wav")),
        transferring_wav=resolve(prompts.transferring_wav, ("prompts", "transferring_wav")),
        goodbye_wav=resolve(prompts.goodbye_wav, ("prompts", "goodbye_wav")),
        sorry_wav=resolve(prompts.sorry_wav, ("prompts", "sorry_wav")),
        cache_dir=resolve(prompts.cache_dir, ("prompts", "cache_dir")),
    )
    server = config.server
    if server.public_url is not None and server.public_url.endswith("/"):
        server = attrs.evolve(server, public_url=server.public_url.rstrip("/"))
    return attrs.evolve(config, server=server, sonic=sonic, call=call, prompts=prompts)


def _check_cross_fields(config: GatewayConfig, origin: Mapping[tuple[str, ...], str]) -> None:
    def key(*path: str) -> str:
        return origin.get(path, ".".join(path))

    public_url = config.server.public_url
    if public_url is not None:
        _check_public_url(public_url, key("server", "public_url"))
    if config.twilio.auth_token is not None and public_url is None:
        via_env = ("twilio", "auth_token") in origin
        raise ConfigError(
            _env_name(("server", "public_url")) if via_env else "server.public_url",
            "the public https:// origin Twilio dials (required when twilio.auth_token is set)",
        )
    for value, path in (
        (config.twilio.auth_token, ("twilio", "auth_token")),
        (config.debug.bearer_token, ("debug", "bearer_token")),
        (config.twilio.stream_token_key, ("twilio", "stream_token_key")),
        (config.twilio.api_key_secret, ("twilio", "api_key_secret")),
    ):
        if value is not None and (len(value) < 8 or value.strip() != value):
            raise ConfigError(key(*path), "a secret of at least 8 characters, no spaces")
    _check_twilio_rest(config.twilio, origin)
    check_tools(config.tools)
    check_call_webhook(config.call_webhook, functools.partial(_webhook_key, origin))
    check_routes(config.routes, [t.name for t in config.tools], [i.name for i in config.intents])
    twilio = config.twilio
    check_builtin_tools(
        config.tools,
        rest_configured=twilio.account_sid is not None
        and (twilio.auth_token is not None or twilio.api_key_secret is not None),
    )
    check_intents(
        config.intents,
        config.tools,
        dtmf_terminator=config.call.dtmf_terminator,
        dtmf_max_digits=config.call.dtmf_max_digits,
    )
    if config.call.fallback_target is not None:
        fallback_transfer(
            config.tools, config.call.fallback_target, key=key("call", "fallback_target")
        )
    stall = config.sonic.stall_timeout_s
    if 0.0 < stall < 0.1:
        raise ConfigError(
            key("sonic", "stall_timeout_s"), "0 (off) or seconds from 0.1 to 600", str(stall)
        )
    if config.call.playback_chunk_ms > config.call.playback_lead_ms:
        raise ConfigError(
            key("call", "playback_chunk_ms"),
            f"at most call.playback_lead_ms ({config.call.playback_lead_ms})",
            str(config.call.playback_chunk_ms),
        )
    endpoint = config.sonic.endpoint_uri
    if endpoint is not None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(key("sonic", "endpoint_uri"), "an https://host[:port] URL", endpoint)
    for file, path in (
        (config.sonic.ca_bundle, ("sonic", "ca_bundle")),
        (config.call.greeting_wav, ("call", "greeting_wav")),
        *((config.prompts.wav(k[:-4]), ("prompts", k)) for k in _PROMPT_WAV_KEYS),
    ):
        if file is not None and not os.path.isfile(file):
            raise ConfigError(key(*path), "an existing file", str(file))
    if config.call.greeting_wav is not None and config.prompts.greeting_wav is not None:
        raise ConfigError(
            key("call", "greeting_wav"),
            f"unset when {key('prompts', 'greeting_wav')} is set (it is the older name of it)",
            str(config.call.greeting_wav),
        )
    cache_dir = config.prompts.cache_dir
    if cache_dir is not None and not os.path.isdir(cache_dir):
        raise ConfigError(key("prompts", "cache_dir"), "an existing directory", str(cache_dir))


def _webhook_key(origin: Mapping[tuple[str, ...], str], field: str) -> str:
    path = ("call_webhook", field)
    if path in origin:
        return origin[path]
    # A missing key is named the way the URL was given (environment or TOML).
    return _env_name(path) if ("call_webhook", "url") in origin else ".".join(path)


def _check_twilio_rest(twilio: TwilioConfig, origin: Mapping[tuple[str, ...], str]) -> None:
    def missing(name: str, because: str) -> str:
        # Name the missing key the way its partner was given (environment or TOML).
        path = ("twilio", name)
        return _env_name(path) if ("twilio", because) in origin else ".".join(path)

    if twilio.api_key_sid is not None and twilio.api_key_secret is None:
        raise ConfigError(missing("api_key_secret", "api_key_sid"), "set with twilio.api_key_sid")
    if twilio.api_key_secret is not None and twilio.api_key_sid is None:
        raise ConfigError(missing("api_key_sid", "api_key_secret"), "set with the API key secret")
    if twilio.api_key_sid is not None and twilio.account_sid is None:
        raise ConfigError(missing("account_sid", "api_key_sid"), "set when an API key is set")
    if twilio.region is not None and twilio.edge is None:
        raise ConfigError(missing("edge", "region"), "set when twilio.region is (e.g. dublin)")
    if twilio.api_base_url is not None:
        path = ("twilio", "api_base_url")
        _check_public_url(twilio.api_base_url, origin.get(path, ".".join(path)))


def _check_public_url(url: str, key: str) -> None:
    expected = "an absolute https://host[:port][/prefix] URL without query or fragment"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigError(key, expected, url) from exc
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(key, expected, url)
