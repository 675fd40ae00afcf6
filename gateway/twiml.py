"""TwiML answers to the voice webhook, sans-I/O.

Theory of operation (Twilio's Media Streams TwiML): the gateway always answers
``<Connect><Stream url="wss://.../twilio/media">`` (bidirectional; Twilio runs nothing after
``</Connect>`` until we close the socket). Per-call data travels as ``<Parameter>`` children, which
arrive in ``start.customParameters``; never in a query string (dropped by Twilio, or error 31920).

Parameters set here (``PARAM_*``): ``callSid`` and ``accountSid`` always; ``from`` and ``to`` (the
caller's and the dialled number, PII) only when ``twilio.pass_caller_numbers`` is on. The call must
log those under ``pii_*`` keys. The webhook adds ``route`` (:data:`PARAM_ROUTE`) for a call of a
``[[routes]]`` entry (:mod:`gateway.routing`).
With an auth token the webhook adds ``streamToken`` (:data:`gateway.stream_token.PARAM_STREAM_TOKEN`),
the one-use token the media socket must present in ``start``.

:func:`dial_number_twiml` and :func:`dial_sip_twiml` build the cold-transfer document
``<Response><Dial><Number>...`` / ``<Dial><Sip>...`` that :mod:`gateway.twilio_rest` hands to a live
call: Twilio stops the media stream, dials the target and ends the call when the ``<Dial>`` ends
(nothing follows it). Transfer targets are validated, never silently altered.

Documents are built with :mod:`xml.etree.ElementTree`, which escapes attribute values; characters
XML 1.0 cannot carry at all (most C0 controls) are dropped from untrusted values first.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "PARAM_ACCOUNT_SID",
    "PARAM_CALL_SID",
    "PARAM_FROM",
    "PARAM_ROUTE",
    "PARAM_TO",
    "RejectReason",
    "dial_number_twiml",
    "dial_sip_twiml",
    "reject_twiml",
    "stream_parameters",
    "stream_twiml",
]

PARAM_CALL_SID: Final = "callSid"
PARAM_ACCOUNT_SID: Final = "accountSid"
PARAM_FROM: Final = "from"
PARAM_TO: Final = "to"
PARAM_ROUTE: Final = "route"

RejectReason = Literal["busy", "rejected"]

# Characters outside XML 1.0's Char production (C0 controls except TAB/LF/CR, lone surrogates,
# U+FFFE/U+FFFF).
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# The longest value we forward; Twilio's own SIDs are 34 characters, numbers (or SIP URIs) short.
_MAX_VALUE_LEN: Final = 256


def _clean(value: str) -> str:
    return _NOT_XML_CHAR.sub("", value)[:_MAX_VALUE_LEN]


def stream_parameters(form: Mapping[str, str], *, pass_caller_numbers: bool) -> dict[str, str]:
    """Pick the call's identity out of the webhook's form fields, as ``<Parameter>`` values.

    Args:
        form: the webhook's form fields (``CallSid``, ``AccountSid``, ``From``, ``To``...).
        pass_caller_numbers: include ``From``/``To`` (PII).

    Returns:
        ``{"callSid": ..., "accountSid": ..., ["from": ..., "to": ...]}`` for the fields present.
    """
    wanted = [("CallSid", PARAM_CALL_SID), ("AccountSid", PARAM_ACCOUNT_SID)]
    if pass_caller_numbers:
        wanted += [("From", PARAM_FROM), ("To", PARAM_TO)]
    return {param: form[field] for field, param in wanted if form.get(field)}


def _document(root: ET.Element) -> bytes:
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def stream_twiml(stream_url: str, *, name: str, parameters: Mapping[str, str]) -> bytes:
    """``<Response><Connect><Stream url=... name=...><Parameter .../>...`` as UTF-8 XML.

    Args:
        stream_url: the public ``wss://`` URL of the media socket (no query string).
        name: the stream's name.
        parameters: ``<Parameter>`` names and values (untrusted values are escaped and cleaned).
    """
    root = ET.Element("Response")
    connect = ET.SubElement(root, "Connect")
    stream = ET.SubElement(connect, "Stream", url=stream_url, name=_clean(name))
    for key, value in parameters.items():
        ET.SubElement(stream, "Parameter", name=_clean(key), value=_clean(value))
    return _document(root)


def reject_twiml(reason: RejectReason = "busy") -> bytes:
    """``<Response><Reject reason="busy"/></Response>``: the caller hears a busy signal."""
    root = ET.Element("Response")
    ET.SubElement(root, "Reject", reason=reason)
    return _document(root)


# E.164 with its "+", or a national number or short code without it; no pauses ("w") or spaces.
_NUMBER: Final = re.compile(r"\+?[0-9]{3,15}")
# A SIP URI has no whitespace or control characters; anything else is escaped by ElementTree.
_SIP_URI: Final = re.compile(r"sips?:[^\x00-\x20\x7f]+", re.IGNORECASE)
_MAX_SIP_URI_LEN: Final = 255
_DIAL_TIMEOUT_S: Final = range(5, 601)


def _dial(timeout_s: int | None, caller_id: str | None) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("Response")
    dial = ET.SubElement(root, "Dial")
    if caller_id is not None:
        if _NUMBER.fullmatch(caller_id) is None and (
            _SIP_URI.fullmatch(caller_id) is None or _NOT_XML_CHAR.search(caller_id) is not None
        ):
            raise ValueError("caller_id: expected a phone number (+E.164) or a SIP URI")
        dial.set("callerId", caller_id)
    if timeout_s is not None:
        if timeout_s not in _DIAL_TIMEOUT_S:
            raise ValueError("timeout_s: expected 5 to 600 seconds")
        dial.set("timeout", str(timeout_s))
    return root, dial


def dial_number_twiml(
    number: str, *, timeout_s: int | None = None, caller_id: str | None = None
) -> bytes:
    """``<Response><Dial><Number>+15551234567</Number></Dial></Response>`` as UTF-8 XML.

    Args:
        number: the phone number to transfer to: an optional ``+`` and 3 to 15 digits (PII: log
            it only under a ``pii_*`` key).
        timeout_s: seconds the target may ring (Twilio's ``<Dial timeout>``, 5 to 600; Twilio's
            default 30 when None).
        caller_id: the ``callerId`` the target sees (a number or SIP URI the account may use).

    Raises:
        ValueError: a malformed number, caller id or timeout (the message never repeats the value).
    """
    if _NUMBER.fullmatch(number) is None:
        raise ValueError("number: expected an optional + and 3 to 15 digits")
    root, dial = _dial(timeout_s, caller_id)
    ET.SubElement(dial, "Number").text = number
    return _document(root)


def dial_sip_twiml(
    uri: str, *, timeout_s: int | None = None, caller_id: str | None = None
) -> bytes:
    """``<Response><Dial><Sip>sip:agent@pbx.example.com</Sip></Dial></Response>`` as UTF-8 XML.

    The URI is escaped, not interpreted: ``&``, ``<`` and quotes in URI parameters or headers
    (``sip:a@b?X-Ref=1&X-Queue=2``) arrive at Twilio exactly as given.

    Args:
        uri: a ``sip:`` or ``sips:`` URI, at most 255 characters, without whitespace, control
            characters or characters XML cannot carry.
        timeout_s: as for :func:`dial_number_twiml`.
        caller_id: as for :func:`dial_number_twiml`.

    Raises:
        ValueError: a malformed URI, caller id or timeout (the message never repeats the value).
    """
    if (
        len(uri) > _MAX_SIP_URI_LEN
        or _SIP_URI.fullmatch(uri) is None
        or _NOT_XML_CHAR.search(uri) is not None
    ):
        raise ValueError("uri: expected sip: or sips: and at most 255 characters, no whitespace")
    root, dial = _dial(timeout_s, caller_id)
    ET.SubElement(dial, "Sip").text = uri
    return _document(root)
