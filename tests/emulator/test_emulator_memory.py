"""Bounded memory: ended sessions kept in a bounded deque, input events run-length encoded."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from gateway.emulator import EmulatorSettings, EventLog, run_emulator

PATH = "/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"
HEADERS = {
    "content-type": "application/vnd.amazon.eventstream",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-EVENTS",
}


def test_event_log_reads_like_the_list_of_names() -> None:
    names = ["sessionStart", "promptStart", *["audioInput"] * 5, "textInput", "audioInput"]
    log = EventLog()
    for name in names:
        log.append(name)
    assert list(log) == names
    assert len(log) == len(names)
    assert log[:2] == names[:2]
    assert log[-2:] == names[-2:]
    assert log[3] == "audioInput"
    assert log.count("audioInput") == 6
    assert log.index("textInput") == 7
    with pytest.raises(ValueError, match="sessionEnd"):
        log.index("sessionEnd")
    # Five audioInput events in a row are one run: memory grows with runs, not events.
    assert log.runs() == [
        ("sessionStart", 1),
        ("promptStart", 1),
        ("audioInput", 5),
        ("textInput", 1),
        ("audioInput", 1),
    ]


def test_event_log_counts_what_it_no_longer_keeps() -> None:
    log = EventLog(max_runs=2)
    for name in ["a", "b", "b", "c", "d", "b"]:
        log.append(name)
    assert log.runs() == [("a", 1), ("b", 2)]
    assert (log.total, log.dropped, len(log)) == (6, 3, 3)


@pytest.mark.anyio
async def test_only_the_last_ended_sessions_are_kept(sign_headers: Any) -> None:
    settings = EmulatorSettings(finished_sessions_kept=2)
    async with run_emulator(settings) as emu:
        context = ssl.create_default_context(cafile=str(emu.ca_path))
        async with httpx.AsyncClient(verify=context, base_url=emu.endpoint_uri, http2=True) as http:
            for _ in range(5):
                # Each stream ends at once: a session that ended with its input.
                headers = sign_headers(emu.endpoint_uri + PATH, HEADERS)
                response = await http.post(PATH, content=b"", headers=headers)
                assert response.status_code == 200
        assert [s.number for s in emu.sessions] == [4, 5]
        stats = emu.statistics()
        assert stats["sessions"] == 5
        assert stats["ended_input_ended"] == 5
        assert stats["active"] == 0
        with pytest.raises(LookupError):
            emu.inject_connection_fault("drop", session=1)
        emu.inject_connection_fault("goaway", session=5)  # still known: acts on its connection
        assert emu.statistics()["goaways_sent"] == 1
