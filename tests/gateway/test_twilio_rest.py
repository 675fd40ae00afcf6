"""The Twilio REST client against a fake Twilio REST API on a real loopback socket.

:class:`~gateway.replay.fake_twilio.FakeTwilioRest` (the replays' fake) is an ASGI app served by
uvicorn on 127.0.0.1. It checks what Twilio would (the path, HTTP basic auth, the form fields,
TwiML that parses), records every request, and answers from a script: success, 404/20404,
400/21220, 500, or a dropped connection.
"""

from __future__ import annotations

import base64
import socket
import xml.etree.ElementTree as ET

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import ConfigError, GatewayError, LocalProtocolError
from gateway.config import GatewayConfig, TwilioConfig
from gateway.replay.fake_twilio import FakeTwilioRest, RestAnswer
from gateway.twilio_rest import (
    DEFAULT_BASE_URL,
    CallAlreadyEnded,
    CallUpdated,
    TwilioApiError,
    TwilioConnectionError,
    TwilioRestSettings,
    basic_authorization,
    complete_call_request,
    interpret_response,
    open_twilio_rest,
    rest_base_url,
    update_call_twiml_request,
)
from gateway.twiml import dial_number_twiml, dial_sip_twiml

pytestmark = pytest.mark.anyio

ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "1" * 32
TOKEN = "auth-token-s3cret-value"
KEY_SID = "SK" + "2" * 32
KEY_SECRET = "api-key-s3cret-value"


def fake_for(
    username: str, password: str, *, script: list[RestAnswer] | None = None
) -> FakeTwilioRest:
    """Twilio's Call resource for ACCOUNT, with CALL in progress."""
    return FakeTwilioRest(
        account_sid=ACCOUNT,
        username=username,
        password=password,
        live_calls={CALL},
        script=list(script or ()),
    )


def settings(base_url: str, *, username: str = ACCOUNT, secret: str = TOKEN) -> TwilioRestSettings:
    return TwilioRestSettings(
        account_sid=ACCOUNT,
        username=username,
        secret=secret,
        base_url=base_url,
        timeout_s=5.0,
        connect_retries=2,
        retry_backoff_s=0.01,
    )


# ---------------------------------------------------------------- over the loopback


async def test_transfer_to_a_number_sends_dial_twiml() -> None:
    fake = fake_for(ACCOUNT, TOKEN)
    async with fake.serving() as url, open_twilio_rest(settings(url)) as client:
        result = await client.update_call_twiml(CALL, dial_number_twiml("+15551234567"))
    assert result == CallUpdated(call_sid=CALL, status="in-progress")
    [request] = fake.requests
    assert request.method == "POST"
    assert (request.problem, request.authorized, request.dial) == (None, True, "+15551234567")
    dial = ET.fromstring(request.form["Twiml"][0]).find("Dial")
    assert dial is not None
    assert [(child.tag, child.text) for child in dial] == [("Number", "+15551234567")]


async def test_transfer_to_a_sip_uri_escapes_it() -> None:
    fake = fake_for(ACCOUNT, TOKEN)
    uri = "sip:agent@pbx.example.com;transport=tls?X-Ref=a&X-Note=<b>"
    async with fake.serving() as url, open_twilio_rest(settings(url)) as client:
        await client.update_call_twiml(CALL, dial_sip_twiml(uri, timeout_s=20))
    twiml = fake.requests[0].form["Twiml"][0]
    assert (fake.requests[0].problem, fake.requests[0].dial) == (None, uri)
    assert "&amp;" in twiml
    assert "&lt;b&gt;" in twiml
    dial = ET.fromstring(twiml).find("Dial")
    assert dial is not None
    assert dial.get("timeout") == "20"
    sip = dial.find("Sip")
    assert sip is not None
    assert sip.text == uri


async def test_complete_call_posts_status_completed() -> None:
    fake = fake_for(ACCOUNT, TOKEN)
    async with fake.serving() as url, open_twilio_rest(settings(url)) as client:
        result = await client.complete_call(CALL)
    assert result == CallUpdated(call_sid=CALL, status="completed")
    assert fake.requests[0].form == {"Status": ["completed"]}
    assert (fake.requests[0].action, fake.requests[0].problem) == ("complete", None)


@pytest.mark.parametrize(("answer", "code"), [("not_found", 20404), ("invalid_state", 21220)])
async def test_a_call_that_already_ended_is_a_result(answer: RestAnswer, code: int) -> None:
    fake = fake_for(ACCOUNT, TOKEN, script=[answer, answer])
    async with fake.serving() as url, open_twilio_rest(settings(url)) as client:
        assert await client.complete_call(CALL) == CallAlreadyEnded(call_sid=CALL, code=code)
        updated = await client.update_call_twiml(CALL, dial_number_twiml("+15551234567"))
        assert updated == CallAlreadyEnded(call_sid=CALL, code=code)
    assert len(fake.requests) == 2


async def test_a_server_error_raises_with_its_code_and_is_not_retried() -> None:
    fake = fake_for(ACCOUNT, TOKEN, script=["error"])
    async with fake.serving() as url, open_twilio_rest(settings(url)) as client:
        with pytest.raises(TwilioApiError) as caught:
            await client.complete_call(CALL)
    assert (caught.value.status, caught.value.code) == (500, 20500)
    assert caught.value.twilio_message == "Internal Server Error"
    assert isinstance(caught.value, GatewayError)
    assert len(fake.requests) == 1


async def test_connection_refused_is_retried_a_bounded_number_of_times() -> None:
    with socket.socket() as free:  # a port nobody listens on once this socket closes
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    async with open_twilio_rest(settings(f"http://127.0.0.1:{port}")) as client:
        with pytest.raises(TwilioConnectionError) as caught:
            await client.update_call_twiml(CALL, dial_number_twiml("+15551234567"))
    assert caught.value.attempts == 3  # 1 + connect_retries
    assert caught.value.cause == "ConnectError"


async def test_a_dropped_connection_fails_an_update_but_a_hang_up_is_retried() -> None:
    fake = fake_for(ACCOUNT, TOKEN, script=["drop", "drop"])
    async with fake.serving() as url, open_twilio_rest(settings(url)) as client:
        # The TwiML may have run: sending it again could dial the target twice.
        with pytest.raises(TwilioConnectionError) as caught:
            await client.update_call_twiml(CALL, dial_number_twiml("+15551234567"))
        assert caught.value.attempts == 1
        # Hanging up twice is harmless: the second drop is retried, the third request succeeds.
        assert await client.complete_call(CALL) == CallUpdated(call_sid=CALL, status="completed")
    assert len(fake.requests) == 3


async def test_api_key_auth_uses_the_key_sid_as_user() -> None:
    fake = fake_for(KEY_SID, KEY_SECRET)
    twilio = TwilioConfig(
        account_sid=ACCOUNT, auth_token=TOKEN, api_key_sid=KEY_SID, api_key_secret=KEY_SECRET
    )
    async with fake.serving() as url:
        rest = attrs.evolve(TwilioRestSettings.from_config(twilio), base_url=url)
        async with open_twilio_rest(rest) as client:
            assert isinstance(await client.complete_call(CALL), CallUpdated)
    assert (fake.requests[0].username, fake.requests[0].authorized) == (KEY_SID, True)


async def test_no_secret_in_errors_or_reprs() -> None:
    fake = fake_for(ACCOUNT, "another-token-entirely")  # our credentials are refused
    rest = settings("", secret=TOKEN)
    async with fake.serving() as url, open_twilio_rest(attrs.evolve(rest, base_url=url)) as client:
        with pytest.raises(TwilioApiError) as caught:
            await client.complete_call(CALL)
        texts = [str(caught.value), repr(caught.value), repr(client), repr(rest)]
    assert caught.value.code == 20003
    assert caught.value.__cause__ is None
    encoded = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    for text in texts:
        assert TOKEN not in text
        assert encoded not in text


# ---------------------------------------------------------------- sans-I/O core


def test_requests_are_built_without_a_network() -> None:
    update = update_call_twiml_request(ACCOUNT, CALL, b"<Response><Hangup/></Response>")
    assert update.method == "POST"
    assert update.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert update.form == (("Twiml", "<Response><Hangup/></Response>"),)
    assert update.body() == b"Twiml=%3CResponse%3E%3CHangup%2F%3E%3C%2FResponse%3E"
    assert ("Content-Type", "application/x-www-form-urlencoded") in update.headers
    complete = complete_call_request(ACCOUNT, CALL)
    assert complete.body() == b"Status=completed"
    assert all(name != "Authorization" for name, _ in complete.headers)
    assert basic_authorization("user", "pass") == "Basic dXNlcjpwYXNz"


@pytest.mark.parametrize(
    ("account", "call", "twiml"),
    [
        (ACCOUNT, "CA../../Accounts/x", "<Response/>"),
        ("AC123", CALL, "<Response/>"),
        (ACCOUNT, CALL, "<Response>" + "x" * 4000 + "</Response>"),
    ],
)
def test_malformed_requests_are_refused_locally(account: str, call: str, twiml: str) -> None:
    with pytest.raises(LocalProtocolError):
        update_call_twiml_request(account, call, twiml)


def test_responses_are_classified() -> None:
    def interpret(status: int, body: bytes) -> object:
        return interpret_response(status, body, operation="complete_call", call_sid=CALL)

    assert interpret(204, b"") == CallUpdated(call_sid=CALL, status=None)
    assert interpret(404, b'{"code": 20404}') == CallAlreadyEnded(call_sid=CALL, code=20404)
    with pytest.raises(TwilioApiError) as caught:
        interpret(404, b"<html>not json</html>")  # a 404 without Twilio's code: a wrong URL
    assert (caught.value.status, caught.value.code) == (404, None)
    with pytest.raises(TwilioApiError):
        interpret(500, b'{"code": 21220}')  # 21220 only counts as a client error


def test_base_url_from_region_and_edge() -> None:
    assert rest_base_url(region=None, edge=None, override=None) == DEFAULT_BASE_URL
    assert (
        rest_base_url(region="ie1", edge="dublin", override=None)
        == "https://api.dublin.ie1.twilio.com"
    )
    assert rest_base_url(region=None, edge="sydney", override=None) == (
        "https://api.sydney.us1.twilio.com"
    )
    assert rest_base_url(region="ie1", edge="dublin", override="http://127.0.0.1:9/") == (
        "http://127.0.0.1:9"
    )
    with pytest.raises(ConfigError):
        rest_base_url(region="au1", edge=None, override=None)


def test_config_keys_for_the_rest_client() -> None:
    config = GatewayConfig.from_env(
        {
            "SONIC_GATEWAY_TWILIO__ACCOUNT_SID": ACCOUNT,
            "SONIC_GATEWAY_TWILIO__API_KEY_SID": KEY_SID,
            "SONIC_GATEWAY_TWILIO__API_KEY_SECRET": KEY_SECRET,
            "SONIC_GATEWAY_TWILIO__REGION": "au1",
            "SONIC_GATEWAY_TWILIO__EDGE": "sydney",
            "SONIC_GATEWAY_TWILIO__REST_TIMEOUT_S": "3",
        }
    )
    rest = TwilioRestSettings.from_config(config.twilio)
    assert (rest.username, rest.secret) == (KEY_SID, KEY_SECRET)
    assert rest.base_url == "https://api.sydney.au1.twilio.com"
    assert rest.timeout_s == 3.0


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"API_KEY_SID": KEY_SID, "ACCOUNT_SID": ACCOUNT}, "API_KEY_SECRET"),
        ({"API_KEY_SID": KEY_SID, "API_KEY_SECRET": KEY_SECRET}, "ACCOUNT_SID"),
        ({"API_KEY_SID": "SK1"}, "API_KEY_SID"),
        ({"REGION": "ie1"}, "EDGE"),
        ({"EDGE": "Dublin!"}, "EDGE"),
        ({"API_BASE_URL": "ftp://example.com"}, "API_BASE_URL"),
        ({"REST_TIMEOUT_S": "0"}, "REST_TIMEOUT_S"),
    ],
)
def test_bad_rest_config_names_the_key(env: dict[str, str], key: str) -> None:
    environ = {f"SONIC_GATEWAY_TWILIO__{name}": value for name, value in env.items()}
    with pytest.raises(ConfigError) as caught:
        GatewayConfig.from_env(environ)
    assert caught.value.key == f"SONIC_GATEWAY_TWILIO__{key}"


def test_settings_need_an_account_and_a_secret() -> None:
    with pytest.raises(ConfigError):
        TwilioRestSettings.from_config(TwilioConfig(auth_token=TOKEN))
    with pytest.raises(ConfigError):
        TwilioRestSettings.from_config(TwilioConfig(account_sid=ACCOUNT))


# ---------------------------------------------------------------- TwiML builder


@given(st.text(max_size=300))
def test_any_sip_uri_round_trips_or_is_refused(tail: str) -> None:
    uri = "sip:" + tail
    try:
        document = dial_sip_twiml(uri)
    except ValueError:
        return
    sip = ET.fromstring(document).find("Dial/Sip")
    assert sip is not None
    assert sip.text == uri


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=250
    )
)
def test_printable_sip_uris_are_never_refused(tail: str) -> None:
    uri = "sips:" + tail
    sip = ET.fromstring(dial_sip_twiml(uri)).find("Dial/Sip")
    assert sip is not None
    assert sip.text == uri


@pytest.mark.parametrize("number", ["5551234", "+1 555 123 4567", "+1555<x>", "", "+1" + "2" * 16])
def test_malformed_numbers_are_refused(number: str) -> None:
    if number == "5551234":
        assert ET.fromstring(dial_number_twiml(number)).find("Dial/Number") is not None
        return
    with pytest.raises(ValueError, match="number"):
        dial_number_twiml(number)


def test_dial_options_are_checked() -> None:
    dial = ET.fromstring(dial_number_twiml("+15551234567", caller_id="+15557654321")).find("Dial")
    assert dial is not None
    assert dial.get("callerId") == "+15557654321"
    with pytest.raises(ValueError, match="timeout_s"):
        dial_number_twiml("+15551234567", timeout_s=1)
    with pytest.raises(ValueError, match="caller_id"):
        dial_sip_twiml("sip:a@b", caller_id="not a number")
