"""The ``sonic-gateway`` command line (also ``python -m gateway``).

Sub-commands: ``serve`` (the service), ``emulator`` (the local Nova Sonic emulator on its own),
``replay SCENARIO...`` (scripted calls through a simulated Twilio peer), ``demo`` (emulator +
gateway + bundled scenarios) and ``prompts render`` (the five prompts synthesised by Amazon Polly
into ``prompts.cache_dir``). Heavy modules (the AWS SDK, the emulator, the replay runner) are
imported inside the command that needs them, so ``--help`` is instant.

Configuration for ``serve``: defaults, then ``--config FILE`` (TOML), then ``SONIC_GATEWAY_*``
environment variables, then the command-line flags. A bad value exits with status 2 and a message
naming the key (or flag) and the expected form. ``serve`` also refuses (status 2) to answer with
the default emulator backend when the config looks like production (a Twilio auth token, or an
``https`` public URL): pass ``--backend bedrock``, or ``--backend emulator`` on purpose.

``serve`` exits 0 after a SIGTERM/SIGINT drain (see :mod:`gateway.drain`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio

from actors.errors import ConfigError
from gateway.config import (
    ENV_PREFIX,
    GatewayConfig,
    LoggingConfig,
    backend_chosen,
    check_emulator_not_production,
    load_config,
)
from gateway.logs import configure_logging
from gateway.version import VERSION

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

# serve's flags, as the environment variables they override (so one validator checks both).
_FLAG_TO_ENV: Final = {
    "host": ENV_PREFIX + "SERVER__HOST",
    "port": ENV_PREFIX + "SERVER__PORT",
    "public_url": ENV_PREFIX + "SERVER__PUBLIC_URL",
    "backend": ENV_PREFIX + "BACKEND",
}
_ENV_TO_FLAG: Final = {env: "--" + flag.replace("_", "-") for flag, env in _FLAG_TO_ENV.items()}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="sonic-gateway",
        description="Telephony gateway: Twilio Media Streams <-> Amazon Nova Sonic.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gateway service",
        description=(
            "Serve POST /twilio/voice, WS /twilio/media, GET /healthz, GET /readyz and GET "
            "/debug/actors. SIGTERM/SIGINT drain live calls first (limits.drain_timeout_s). "
            "Settings come from --config FILE, then SONIC_GATEWAY_<SECTION>__<KEY> environment "
            "variables, then these flags. With --backend emulator (the default) a local Nova "
            "Sonic emulator runs in-process and the real SDK client talks to it; with bedrock "
            "the AWS credential chain and the regional endpoint are used."
        ),
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port to bind (default 8080)")
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="public https:// origin Twilio dials, e.g. https://voice.example.com",
    )
    serve.add_argument(
        "--backend", choices=["emulator", "bedrock"], help="Nova Sonic backend (default emulator)"
    )

    emulator = commands.add_parser(
        "emulator",
        help="run the local Nova Sonic emulator on its own",
        description=(
            "Run the Bedrock-compatible Nova Sonic emulator (HTTP/2 + TLS with a certificate made "
            "at start) until interrupted; prints its endpoint and the CA file to trust for it."
        ),
    )
    emulator.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    emulator.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    emulator.add_argument(
        "--realtime-factor",
        type=float,
        default=4.0,
        metavar="F",
        help="reply audio goes out F times faster than real time (default 4; 1 = real time; "
        "0 = as fast as the stream takes it)",
    )
    emulator.add_argument(
        "--vad-block-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="analyse caller audio in blocks of MS ms: cheaper per event for load tests, but turn "
        "ends and barge-ins are decided up to MS ms later (default 0: every audioInput as it "
        "arrives)",
    )
    emulator.add_argument(
        "--end-of-turn-silence-ms",
        type=float,
        default=None,
        metavar="MS",
        help="caller silence that ends a turn, for every session (default: each session's "
        "endpointingSensitivity as Nova 2 Sonic documents it: 1500 HIGH, 1750 MEDIUM, 2000 LOW)",
    )
    emulator.add_argument(
        "--think-ms",
        type=int,
        default=200,
        metavar="MS",
        help="mean time from the end of a turn to the reply (default 200; not measured)",
    )
    emulator.add_argument(
        "--think-jitter-ms",
        type=int,
        default=50,
        metavar="MS",
        help="each reply's think time is drawn uniformly from --think-ms +/- MS (default 50)",
    )
    emulator.add_argument(
        "--region",
        default="us-east-1",
        help="the region requests must be SigV4-signed for (default us-east-1); the keys are "
        "the test keys AKIDEXAMPLE / dummy",
    )
    emulator.add_argument(
        "--no-verify-signatures",
        action="store_true",
        help="accept any Authorization header and event signatures (load drivers sending "
        "pre-built frames); by default both are checked as Bedrock does",
    )
    emulator.add_argument(
        "--stats-file",
        type=Path,
        metavar="PATH",
        help="write the emulator's statistics to PATH as one JSON object every second (the file "
        "is replaced whole each time): session and connection counts, and reply_lateness_ms "
        "(how late paced reply audio went out: count, p50, p99, max, cumulative buckets)",
    )

    replay = commands.add_parser(
        "replay",
        help="run scripted call scenarios",
        description=(
            "Run each SCENARIO file through a simulated Twilio peer against an in-process "
            "gateway and emulator; print a per-call report; exit non-zero on any failure."
        ),
    )
    replay.add_argument("scenarios", nargs="+", type=Path, metavar="SCENARIO")

    commands.add_parser(
        "demo",
        help="run the bundled scenarios end to end",
        description=(
            "Start the emulator and the gateway on free local ports, run the bundled scenarios "
            "through the simulated Twilio peer, print each report and a summary. No AWS "
            "credentials or network needed."
        ),
    )
    prompts = commands.add_parser(
        "prompts",
        help="manage the prompt clips",
        description="Manage the prompt clips the gateway plays (greeting, hold, transferring, "
        "goodbye, sorry).",
    )
    prompt_commands = prompts.add_subparsers(
        dest="prompts_command", required=True, metavar="ACTION"
    )
    render = prompt_commands.add_parser(
        "render",
        help="synthesise the prompts with Amazon Polly",
        description=(
            "Ask Amazon Polly (AWS credential chain) to say each prompts.<name>_text and write "
            "<out>/<name>.ulaw (8 kHz μ-law), the files the gateway loads from prompts.cache_dir."
        ),
    )
    render.add_argument(
        "--voice", required=True, metavar="VOICE_ID", help="Polly voice, e.g. Joanna"
    )
    render.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    render.add_argument("--region", help="AWS region (default: sonic.region of the config)")
    render.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML file with [prompts] texts"
    )
    render.add_argument(
        "--engine",
        choices=["neural", "standard"],
        help="Polly engine (default: neural when the voice has it, else standard)",
    )
    return parser


def _cmd_prompts(args: argparse.Namespace, client: object = None) -> int:
    config = load_config(args.config, dict(os.environ))
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from actors.call import PROMPT_NAMES
    from gateway.prompt_render import PromptRenderError, render_prompts

    if client is None:
        client = boto3.client("polly", region_name=args.region or config.sonic.region)
    texts = {name: config.prompts.text(name) for name in PROMPT_NAMES}
    try:
        written = render_prompts(
            client, voice_id=args.voice, texts=texts, out_dir=args.out, engine=args.engine
        )
    except (BotoCoreError, ClientError, PromptRenderError, OSError) as exc:
        print(f"sonic-gateway: prompts render: {exc}", file=sys.stderr)
        return 1
    for name, path in written.items():
        print(f"{name}: {path} ({path.stat().st_size // 8} ms)")
    return 0


def _serve_config(args: argparse.Namespace, environ: dict[str, str]) -> GatewayConfig:
    overlay = dict(environ)
    for flag, env in _FLAG_TO_ENV.items():
        value = getattr(args, flag)
        if value is not None:
            overlay[env] = str(value)
    try:
        config = load_config(args.config, overlay)
    except ConfigError as exc:
        if exc.key in _ENV_TO_FLAG and exc.key not in environ:
            raise ConfigError(_ENV_TO_FLAG[exc.key], exc.expected, exc.got) from exc
        raise
    check_emulator_not_production(config, backend_chosen=backend_chosen(args.config, overlay))
    return config


def _cmd_serve(args: argparse.Namespace) -> int:
    config = _serve_config(args, dict(os.environ))
    configure_logging(config.logging)  # serve_gateway warns when signature checks are off
    from gateway.wiring import serve_command

    anyio.run(serve_command, config, backend_options=_loop_options(config.server.uvloop))
    return 0


def _loop_options(uvloop: bool) -> dict[str, bool]:
    """anyio's asyncio backend options: uvloop when asked for and installed."""
    return {"use_uvloop": uvloop and importlib.util.find_spec("uvloop") is not None}


def _cmd_emulator(args: argparse.Namespace) -> int:
    configure_logging(LoggingConfig())
    from gateway.emulator import Emulator, EmulatorSettings, serve_forever

    def on_ready(emulator: Emulator) -> None:
        print(f"endpoint: {emulator.endpoint_uri}", flush=True)
        print(f"ca_bundle: {emulator.ca_path}", flush=True)

    settings = EmulatorSettings(
        host=args.host,
        port=args.port,
        realtime_factor=args.realtime_factor,
        vad_block_ms=args.vad_block_ms,
        end_of_turn_silence_ms=args.end_of_turn_silence_ms,
        think_ms=args.think_ms,
        think_jitter_ms=args.think_jitter_ms,
        region=args.region,
        verify_signatures=not args.no_verify_signatures,
    )
    anyio.run(lambda: serve_forever(settings, on_ready=on_ready, stats_file=args.stats_file))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    # Replays run gateways without a Twilio token on purpose: only errors are worth a log line
    # next to the reports.
    configure_logging(LoggingConfig(level="error"))
    from gateway.replay import main_replay

    return main_replay(list(args.scenarios))


def _cmd_demo(args: argparse.Namespace) -> int:
    del args
    configure_logging(LoggingConfig(level="error"))
    from gateway.replay import main_demo

    return main_demo()


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "serve": _cmd_serve,
    "emulator": _cmd_emulator,
    "replay": _cmd_replay,
    "demo": _cmd_demo,
    "prompts": _cmd_prompts,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"sonic-gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
