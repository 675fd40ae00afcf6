"""structlog configuration for the gateway process: one pipeline for our logs and uvicorn's.

Rules:

* Event names are static dotted strings (``"call.refused"``); everything variable goes in keys.
* Per-call context (``call_sid``, ``stream_sid``) lives in contextvars via :func:`bind_call`; anyio
  tasks started inside inherit it. Each actor's lines are told apart by their logger name
  (``actors.call.twilio_ingress``...); supervisors bind ``supervisor`` to theirs.
* Values under any key with a ``pii`` segment (``pii_from``, ``caller.pii_digits``...) are masked by
  :func:`redact_pii` unless ``logging.log_pii`` is set. Nested mappings are walked.
* Nothing logs per audio frame; one summary line per call is the caller's job.
* Tracebacks (server faults only; a peer's fault is a WARNING without one) never show locals.
* Output: JSON lines (``format = "json"``), a readable console rendering (``"console"``), or
  ``"auto"``: console when the stream is a TTY. uvicorn's stdlib loggers are routed through the same
  formatter; its access log is off unless ``logging.access_log`` is set.

:func:`configure_logging` mutates process-wide state (structlog and the stdlib root logger): call it
once from the command line, never from :func:`gateway.app.create_app`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final, TextIO

import msgspec
import structlog

if TYPE_CHECKING:
    from gateway.config import LoggingConfig

__all__ = ["REDACTED", "bind_call", "configure_logging", "has_pii_segment", "redact_pii"]

REDACTED: Final = "[redacted]"

_HANDLER_NAME: Final = "sonic-gateway"
_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_DICT_TRACEBACKS: Final = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def has_pii_segment(key: str) -> bool:
    """True when ``key`` has a segment ``pii`` (segments split on ``_``, ``.`` and ``-``)."""
    lowered = key.lower()
    if "pii" not in lowered:  # fast path: almost every key
        return False
    for sep in (".", "-"):
        lowered = lowered.replace(sep, "_")
    return "pii" in lowered.split("_")


def _redact_value(value: object) -> object:
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and has_pii_segment(k) else _redact_value(v))
            for k, v in value.items()
        }
    return value


def redact_pii(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask values under ``pii`` keys, at any mapping depth."""
    del logger, method_name
    for key in list(event_dict):
        value = event_dict[key]
        if has_pii_segment(key):
            event_dict[key] = REDACTED
        elif isinstance(value, Mapping):
            event_dict[key] = _redact_value(value)
    return event_dict


def _json_serializer(obj: object, **kwargs: object) -> str:
    del kwargs
    return msgspec.json.encode(obj, enc_hook=repr).decode()


def configure_logging(config: LoggingConfig, *, stream: TextIO | None = None) -> None:
    """Install the structlog pipeline and route the stdlib root logger (uvicorn) through it.

    Idempotent: a second call replaces the handler the first one installed.

    Args:
        config: the ``[logging]`` section.
        stream: where to write (default: ``sys.stderr``).
    """
    out = sys.stderr if stream is None else stream
    level = _LEVELS[config.level]
    console = config.format == "console" or (config.format == "auto" and out.isatty())

    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not config.log_pii:
        shared.append(redact_pii)
    final: list[structlog.typing.Processor]
    # Tracebacks never carry locals: a frame's locals hold raw peer frames and caller identity,
    # which would bypass redact_pii (structlog's dict tracebacks and rich show them by default).
    if console:
        renderer: structlog.typing.Processor = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_json_serializer)
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _DICT_TRACEBACKS,
            renderer,
        ]

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    # uvicorn installs no handlers when given log_config=None; make sure its loggers propagate to
    # ours, and keep the per-request access log off unless asked for.
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
        uv.setLevel(level)
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = True
    access.disabled = not config.access_log


@contextlib.contextmanager
def bind_call(call_sid: str, stream_sid: str) -> Iterator[None]:
    """Bind ``call_sid`` and ``stream_sid`` to every log line in this context (and its tasks).

    The previous values are restored on exit.
    """
    with structlog.contextvars.bound_contextvars(call_sid=call_sid, stream_sid=stream_sid):
        yield
