"""CallJournal -> CallReport: offsets, heard-truncated transcript, barge-in stop times."""

from __future__ import annotations

import msgspec

from actors.call.protocol import PlaybackFinished
from actors.call.report import BargeInRecord, CallJournal, CallReport, truncate_to_heard


def test_truncate_to_heard_cuts_at_a_word_boundary() -> None:
    text = "Your order shipped yesterday and will arrive Friday."
    assert truncate_to_heard(text, 1000, 1000) == text
    assert truncate_to_heard(text, 0, 1000) == ""
    assert truncate_to_heard(text, 600, 1000) == "Your order shipped yesterday"
    assert truncate_to_heard(text, 100, 0) == text


def test_report_joins_barge_in_clear_and_heard() -> None:
    j = CallJournal(started_at=100.0)
    j.first_media_at = 100.012
    j.user_lines.append((101.0, "where is my order"))
    j.assistant_lines.append((102.5, 1, "Your order shipped yesterday and will arrive Friday."))
    j.barge_ins.append(
        BargeInRecord(source="sonic_marker", signal_at=102.0, turn_id=1, generation=1)
    )
    j.clears_sent[1] = 102.0004
    j.playbacks[1] = PlaybackFinished(
        turn_id=1, generation=0, position_ms=600, total_ms=1000, interrupted=True, at=102.0005
    )
    j.end("caller_hangup", 103.0)
    j.end("socket_closed", 103.1)
    r = j.report(call_sid="CA1", stream_sid="MZ1", now=104.0)
    assert r.end_reason == "caller_hangup"
    assert r.duration_ms == 3000.0
    assert r.greeting_ms == 12.0
    assert [line.role for line in r.transcript] == ["USER", "ASSISTANT"]
    assert r.transcript[1].text == "Your order shipped yesterday"
    assert r.transcript[1].truncated
    assert r.barge_ins[0].stop_ms == 0.4
    assert r.barge_ins[0].heard_ms == 600
    assert r.heard_ms == 600
    # The report crosses process boundaries as JSON.
    assert msgspec.json.decode(msgspec.json.encode(r), type=CallReport) == r
