"""Logging: PII redaction, JSON lines with per-call context, uvicorn routed through structlog."""

from __future__ import annotations

import io
import logging

import msgspec
import pytest
import structlog

from gateway.config import LoggingConfig
from gateway.logs import REDACTED, bind_call, configure_logging, has_pii_segment, redact_pii


@pytest.fixture(autouse=True)
def _restore_logging(restore_logging: None) -> None:
    """Every test here reconfigures logging; the shared fixture puts it back."""


@pytest.mark.parametrize(
    ("key", "pii"),
    [
        ("pii_from", True),
        ("pii_digits", True),
        ("caller.pii_transcript", True),
        ("pii", True),
        ("PII-number", True),
        ("pipeline", False),
        ("api_key_pii2", False),
        ("call_sid", False),
    ],
)
def test_pii_segment(key: str, pii: bool) -> None:
    assert has_pii_segment(key) is pii


def test_redact_processor_masks_nested_pii() -> None:
    event = {"event": "x", "pii_from": "+15551234567", "meta": {"pii_digits": "1234", "n": 1}}
    out = redact_pii(None, "info", event)
    assert out == {"event": "x", "pii_from": REDACTED, "meta": {"pii_digits": REDACTED, "n": 1}}


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [msgspec.json.decode(line) for line in stream.getvalue().splitlines() if line]


def test_json_lines_with_call_context_and_redaction() -> None:
    stream = io.StringIO()
    configure_logging(LoggingConfig(format="json", level="info"), stream=stream)
    log = structlog.get_logger("test")
    with bind_call("CA1", "MZ1"):
        log.info("call.started", pii_from="+15551234567")
    log.debug("hidden.below_level")
    log.info("outside.call")
    first, second = _lines(stream)
    assert first["event"] == "call.started"
    assert (first["call_sid"], first["stream_sid"]) == ("CA1", "MZ1")
    assert first["pii_from"] == REDACTED
    assert "call_sid" not in second


def test_log_pii_shows_values() -> None:
    stream = io.StringIO()
    configure_logging(LoggingConfig(format="json", log_pii=True), stream=stream)
    structlog.get_logger("test").info("dtmf.received", pii_digits="42")
    assert _lines(stream)[0]["pii_digits"] == "42"


def test_uvicorn_logs_routed_and_access_log_off() -> None:
    stream = io.StringIO()
    configure_logging(LoggingConfig(format="json"), stream=stream)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    logging.getLogger("uvicorn.access").info("GET / 200")
    lines = _lines(stream)
    assert [line["event"] for line in lines] == ["Started server process [1]"]


def test_console_format_is_readable() -> None:
    stream = io.StringIO()
    configure_logging(LoggingConfig(format="console"), stream=stream)
    structlog.get_logger("test").info("call.ended", outcome="completed")
    text = stream.getvalue()
    assert "call.ended" in text
    assert "outcome" in text
    assert not text.lstrip().startswith("{")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_never_show_locals(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging(LoggingConfig(format=fmt, level="info"), stream=stream)  # type: ignore[arg-type]
    raw_frame = '{"event": "start", "from": "+15550009999"}'
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("test").error("call.failed", exc_info=True)
    text = stream.getvalue()
    assert "ValueError" in text  # the traceback is there ...
    assert "+15550009999" not in text  # ... without the frame's locals
    assert raw_frame not in text
