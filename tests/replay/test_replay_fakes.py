"""The replays' local servers without a network: the fake Twilio REST API's decisions, the tool
receiver's scripted replies, and how the services wire themselves into the gateway's config.

(Over real sockets they are exercised by tests/gateway/test_twilio_rest.py,
tests/tools/test_http_tool_live.py and the full-stack replays.)
"""

from __future__ import annotations

import base64
import urllib.parse

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.replay import parse_scenario
from gateway.replay.fake_tools import ReceiverTool, ToolReceiver, ToolReply
from gateway.replay.fake_twilio import FakeTwilioRest, RestAnswer, dial_target
from gateway.replay.services import (
    REPLAY_API_KEY_SECRET,
    REPLAY_API_KEY_SID,
    REPLAY_TOOL_HMAC_KEY,
    ReplayServices,
)

ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "1" * 32
OTHER_CALL = "CA" + "2" * 32
USER = "SK" + "3" * 32
SECRET = "api-key-s3cret-value"
PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
DIAL = "<Response><Dial><Number>+15550100003</Number></Dial></Response>"


def headers(user: str = USER, secret: str = SECRET) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {
        "authorization": f"Basic {token}",
        "content-type": "application/x-www-form-urlencoded",
    }


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def twilio(*, script: list[RestAnswer] | None = None) -> tuple[FakeTwilioRest, list[str]]:
    ended: list[str] = []
    fake = FakeTwilioRest(
        account_sid=ACCOUNT,
        username=USER,
        password=SECRET,
        script=list(script or ()),
        on_stream_end=ended.append,
    )
    fake.call_started(CALL)
    return fake, ended


def test_a_transfer_is_recorded_and_ends_the_stream() -> None:
    fake, ended = twilio()
    request, answer = fake.decide("POST", PATH, headers(), form(Twiml=DIAL), 12.5)
    assert (request.action, request.dial, request.problem, request.at) == (
        "dial",
        "+15550100003",
        None,
        12.5,
    )
    assert (answer.status, request.status, request.code) == (200, 200, None)
    assert answer.body == {"sid": CALL, "account_sid": ACCOUNT, "status": "in-progress"}
    assert ended == [CALL]
    assert fake.requests == [request]


def test_a_hang_up_ends_the_call_and_later_requests_are_20404() -> None:
    fake, ended = twilio()
    first, _ = fake.decide("POST", PATH, headers(), form(Status="completed"), 1.0)
    again, answer = fake.decide("POST", PATH, headers(), form(Status="completed"), 2.0)
    assert (first.action, first.status) == ("complete", 200)
    assert (again.status, again.code) == (404, 20404)
    assert answer.body is not None
    assert answer.body["more_info"] == "https://www.twilio.com/docs/errors/20404"
    assert ended == [CALL]


def test_a_call_whose_caller_hung_up_or_that_was_never_placed_is_20404() -> None:
    fake, ended = twilio()
    other = PATH.replace(CALL, OTHER_CALL)
    assert fake.decide("POST", other, headers(), form(Twiml=DIAL), 1.0)[0].code == 20404
    fake.caller_hung_up(CALL)
    assert fake.decide("POST", PATH, headers(), form(Twiml=DIAL), 2.0)[0].code == 20404
    assert ended == []


@pytest.mark.parametrize(
    ("method", "path", "hdrs", "body", "status", "code"),
    [
        ("POST", PATH, headers(secret="wrong-secret-value"), form(Twiml=DIAL), 401, 20003),
        ("POST", PATH, {"content-type": "application/x-www-form-urlencoded"}, b"", 401, 20003),
        ("POST", PATH.replace(ACCOUNT, "AC" + "9" * 32), headers(), form(Twiml=DIAL), 404, 20404),
        ("POST", PATH.removesuffix(".json"), headers(), form(Twiml=DIAL), 404, 20404),
        ("GET", PATH, headers(), b"", 400, None),
        ("POST", PATH, {**headers(), "content-type": "application/json"}, b"{}", 400, None),
        ("POST", PATH, headers(), form(Twiml="<Response><Dial>"), 400, None),
        ("POST", PATH, headers(), form(Twiml="<Dial>+1555</Dial>"), 400, None),
        ("POST", PATH, headers(), form(Twiml="<Response/>" + " " * 4000), 400, None),
        ("POST", PATH, headers(), form(Status="canceled"), 400, None),
        ("POST", PATH, headers(), form(Twiml=DIAL, Status="completed"), 400, None),
        ("POST", PATH, headers(), form(Url="https://example.com/next"), 400, None),
    ],
)
def test_what_twilio_would_refuse_is_refused_and_recorded(
    method: str, path: str, hdrs: dict[str, str], body: bytes, status: int, code: int | None
) -> None:
    fake, ended = twilio()
    request, answer = fake.decide(method, path, hdrs, body, 1.0)
    assert (answer.status, request.status, request.code) == (status, status, code)
    if status == 400:
        assert request.problem is not None
        assert request.action is None
    assert ended == []
    assert CALL in fake.live_calls


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [("not_found", 404, 20404), ("invalid_state", 400, 21220), ("error", 500, 20500)],
)
def test_scripted_answers_come_first_then_the_calls_state(
    answer: RestAnswer, status: int, code: int
) -> None:
    fake, ended = twilio(script=[answer])
    scripted, _ = fake.decide("POST", PATH, headers(), form(Status="completed"), 1.0)
    after, _ = fake.decide("POST", PATH, headers(), form(Status="completed"), 2.0)
    assert (scripted.status, scripted.code) == (status, code)
    assert after.status == 200  # the call was still live
    assert ended == [CALL]


def test_a_dropped_answer_has_no_status() -> None:
    fake, _ = twilio(script=["drop"])
    request, answer = fake.decide("POST", PATH, headers(), form(Twiml=DIAL), 1.0)
    assert answer.body is None
    assert request.status is None


@given(
    method=st.sampled_from(["POST", "GET", "DELETE"]),
    path=st.one_of(st.just(PATH), st.text(max_size=80)),
    body=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["Twiml", "Status", "Url"]), st.text(max_size=60), max_size=3
        ).map(lambda d: urllib.parse.urlencode(d).encode()),
    ),
)
def test_any_request_is_answered_and_recorded_never_raised(
    method: str, path: str, body: bytes
) -> None:
    fake, _ = twilio()
    request, answer = fake.decide(method, path, headers(), body, 1.0)
    assert fake.requests[-1] == request
    assert (request.problem is None) == (request.action is not None)
    if answer.status == 200:
        assert request.problem is None
        assert request.call_sid == CALL
    msgspec.json.encode(request)  # the report can always carry it


def test_dial_target_reads_numbers_and_sip_uris() -> None:
    assert dial_target(DIAL) == "+15550100003"
    assert dial_target("<Response><Dial><Sip>sip:a@b.example</Sip></Dial></Response>") == (
        "sip:a@b.example"
    )
    assert dial_target("<Response><Hangup/></Response>") is None
    assert dial_target("<Response") is None


# ------------------------------------------------------------------------------- tool receiver


def test_scripted_replies_are_used_in_order_and_the_last_repeats() -> None:
    first = ToolReply(tool="t", answer={"n": 1})
    last = ToolReply(tool="t", status=503, raw_body="down")
    receiver = ToolReceiver(tools={"t": ReceiverTool(replies=[first, last]), "u": ReceiverTool()})
    assert [receiver.next_reply("t") for _ in range(3)] == [first, last, last]
    assert receiver.next_reply("u").body() == b"{}"
    assert first.body() == b'{"n":1}'
    assert last.body() == b"down"


def test_a_reply_is_json_or_a_raw_body_not_both() -> None:
    with pytest.raises(ValueError, match="at most one"):
        ToolReply(tool="t", answer={}, raw_body="x")


# ------------------------------------------------------------------------------- wiring


SCENARIO = """
name = "wiring"

[twilio_rest]

[[gateway.tools]]
name = "lookup"
description = "Look up."

[[gateway.tools]]
name = "signed"
description = "Look up, signed with the scenario's own key."
hmac_key = "scenario-key-0123"

[[gateway.tools]]
name = "elsewhere"
description = "A tool at a URL of its own."
url = "http://127.0.0.1:9/x"
"""


def test_configure_points_the_gateway_at_the_servers_and_fills_in_credentials() -> None:
    scenario = parse_scenario(SCENARIO)
    services = ReplayServices(
        scenario, twilio_url="http://127.0.0.1:1111", tools_url="http://127.0.0.1:2222"
    )
    raw = {"tools": scenario.gateway["tools"]}
    out = services.configure(raw)
    assert out["twilio"] == {
        "api_base_url": "http://127.0.0.1:1111",
        "account_sid": scenario.peer.account_sid,
        "api_key_sid": REPLAY_API_KEY_SID,
        "api_key_secret": REPLAY_API_KEY_SECRET,
    }
    lookup, signed, elsewhere = out["tools"]
    assert (lookup["url"], lookup["hmac_key"]) == (
        "http://127.0.0.1:2222/tools/lookup",
        REPLAY_TOOL_HMAC_KEY,
    )
    assert (signed["url"], signed["hmac_key"]) == (
        "http://127.0.0.1:2222/tools/signed",
        "scenario-key-0123",
    )
    assert elsewhere == scenario.gateway["tools"][2]
    assert "url" not in raw["tools"][0]  # the scenario's own table is untouched


def test_configure_keeps_the_scenarios_own_twilio_credentials() -> None:
    scenario = parse_scenario(SCENARIO)
    services = ReplayServices(scenario, twilio_url="http://127.0.0.1:1111")
    mine = {"account_sid": "AC" + "4" * 32, "auth_token": "my-auth-token-value"}
    out = services.configure({"twilio": dict(mine)})
    assert out["twilio"] == {**mine, "api_base_url": "http://127.0.0.1:1111"}
