"""TwiML answers to the voice webhook, sans-I/O.

Theory of operation (twilio-media-streams.md §1): the gateway always answers
``<Connect><Stream url="wss://.../twilio/media">`` (bidirectional; Twilio runs nothing after
``</Connect>`` until we close the socket). Per-call data travels as ``<Parameter>`` children, which
arrive in ``start.customParameters``; never in a query string (dropped by Twilio, or error 31920).

Parameters set here (``PARAM_*``): ``callSid`` and ``accountSid`` always; ``from`` and ``to`` (the
caller's and the dialled number, PII) only when ``twilio.pass_caller_numbers`` is on. The call must
log those under ``pii_*`` keys.
With an auth token the webhook adds ``streamToken`` (:data:`gateway.stream_token.PARAM_STREAM_TOKEN`),
the one-use token the media socket must present in ``start``.

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
    "PARAM_TO",
    "RejectReason",
    "reject_twiml",
    "stream_parameters",
    "stream_twiml",
]

PARAM_CALL_SID: Final = "callSid"
PARAM_ACCOUNT_SID: Final = "accountSid"
PARAM_FROM: Final = "from"
PARAM_TO: Final = "to"

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
