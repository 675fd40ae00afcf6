"""TwiML answers (parsed back) and Twilio signatures (vectors computed here with hmac)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import xml.etree.ElementTree as ET

import pytest

from gateway.signature import (
    compute_signature,
    signature_url_variants,
    validate_webhook_signature,
    validate_websocket_signature,
)
from gateway.twiml import reject_twiml, stream_parameters, stream_twiml

TOKEN = "12345678abcdef"


def reference_signature(token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


# ---------------------------------------------------------------- TwiML


def test_stream_twiml_round_trips_with_hostile_values() -> None:
    hostile = '"/><Hangup/><Parameter name="x" value="<&>\'\x00\x07'
    xml = stream_twiml(
        "wss://voice.example.com/twilio/media",
        name="sonic",
        parameters={"callSid": "CA1", "from": hostile},
    )
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    (connect,) = root
    assert connect.tag == "Connect"
    (stream,) = connect
    assert stream.attrib == {"url": "wss://voice.example.com/twilio/media", "name": "sonic"}
    params = {p.attrib["name"]: p.attrib["value"] for p in stream}
    assert params == {"callSid": "CA1", "from": '"/><Hangup/><Parameter name="x" value="<&>\''}
    assert root.find(".//Hangup") is None


def test_stream_parameters_pick_identity() -> None:
    form = {"CallSid": "CA1", "AccountSid": "AC1", "From": "+1555", "To": "+1666", "Foo": "x"}
    assert stream_parameters(form, pass_caller_numbers=True) == {
        "callSid": "CA1",
        "accountSid": "AC1",
        "from": "+1555",
        "to": "+1666",
    }
    assert stream_parameters(form, pass_caller_numbers=False) == {
        "callSid": "CA1",
        "accountSid": "AC1",
    }


def test_reject_twiml() -> None:
    root = ET.fromstring(reject_twiml())
    (reject,) = root
    assert (root.tag, reject.tag, reject.attrib) == ("Response", "Reject", {"reason": "busy"})


# ---------------------------------------------------------------- signatures


def test_compute_signature_matches_reference() -> None:
    url = "https://voice.example.com/twilio/voice?x=1"
    params = {"CallSid": "CA1", "From": "+15551234567", "To": "+1", "AccountSid": "AC1"}
    assert compute_signature(TOKEN, url, params) == reference_signature(TOKEN, url, params)


def test_twilio_documented_vector() -> None:
    # From Twilio's security documentation.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert compute_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_webhook_validation() -> None:
    url = "https://voice.example.com/twilio/voice"
    params = {"CallSid": "CA1", "From": "+1555"}
    good = reference_signature(TOKEN, url, params)
    assert validate_webhook_signature(TOKEN, url, params, good)
    assert not validate_webhook_signature(TOKEN, url, {**params, "From": "+1666"}, good)
    assert not validate_webhook_signature("other-token", url, params, good)
    assert not validate_webhook_signature(TOKEN, url, params, None)
    assert not validate_webhook_signature(TOKEN, url, params, "")
    assert not validate_webhook_signature(TOKEN, url, params, "ü-not-ascii")


@pytest.mark.parametrize(
    ("signed", "checked"),
    [
        ("https://voice.example.com/v", "https://voice.example.com:443/v"),  # Twilio strips it
        ("https://voice.example.com:443/v", "https://voice.example.com/v"),
        ("http://localhost:8080/v", "http://localhost:8080/v"),  # kept for http
    ],
)
def test_webhook_port_variants(signed: str, checked: str) -> None:
    signature = reference_signature(TOKEN, signed, {"a": "b"})
    assert validate_webhook_signature(TOKEN, checked, {"a": "b"}, signature)


def test_url_variants() -> None:
    assert signature_url_variants("https://h/p") == ("https://h/p", "https://h:443/p")
    assert signature_url_variants("wss://h:8443/p") == ("wss://h:8443/p", "wss://h/p")


def test_json_body_uses_body_sha256() -> None:
    body = b'{"CallSid":"CA1"}'
    url = "https://h/v?bodySHA256=" + hashlib.sha256(body).hexdigest()
    signature = reference_signature(TOKEN, url, {})
    assert validate_webhook_signature(TOKEN, url, [], signature, body=body)
    assert not validate_webhook_signature(TOKEN, url, [], signature, body=body + b" ")


@pytest.mark.parametrize(
    "signed_url",
    ["wss://voice.example.com/twilio/media", "wss://voice.example.com/twilio/media/"],
)
@pytest.mark.parametrize(
    "configured",
    ["wss://voice.example.com/twilio/media", "wss://voice.example.com/twilio/media/"],
)
def test_websocket_with_and_without_trailing_slash(signed_url: str, configured: str) -> None:
    signature = reference_signature(TOKEN, signed_url, {})
    assert validate_websocket_signature(TOKEN, configured, signature)


def test_websocket_rejects_https_scheme_and_wrong_token() -> None:
    wss = "wss://voice.example.com/twilio/media"
    assert not validate_websocket_signature(
        TOKEN, wss, reference_signature(TOKEN, "https://voice.example.com/twilio/media", {})
    )
    assert not validate_websocket_signature(TOKEN, wss, reference_signature("other", wss, {}))
    assert not validate_websocket_signature(TOKEN, wss, None)
