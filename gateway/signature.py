"""Twilio request signatures (``X-Twilio-Signature``), sans-I/O.

Theory of operation (Twilio's request validation, as its helper libraries do it):

* Webhook: HMAC-SHA1, keyed with the account's primary Auth Token, over the exact URL Twilio
  requested (query string included) followed by every form parameter as ``name + value``, names
  sorted in code-point (= UTF-8 byte) order; base64 of the digest. Repeated names contribute each
  distinct value in sorted order (as twilio-python does). For a JSON body the URL carries
  ``bodySHA256`` (hex SHA-256 of the raw body) and no parameters are appended.
* Ports: Twilio strips the port of HTTPS URLs before signing and keeps it for HTTP, so a URL is
  tried as given, without its port, and with its scheme's default port.
* WebSocket upgrade: the same HMAC over the PUBLIC ``wss://`` URL that ``<Stream url>`` named (never
  the URL the app server sees behind a proxy), no parameters; tried with and without a trailing
  ``/``.
* Comparisons are constant-time (:func:`hmac.compare_digest` over bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = [
    "compute_signature",
    "signature_url_variants",
    "validate_webhook_signature",
    "validate_websocket_signature",
]

_DEFAULT_PORTS: Final = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def _pairs(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    return sorted(set(items))


def compute_signature(
    auth_token: str, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]] = ()
) -> str:
    """Return the base64 HMAC-SHA1 signature Twilio sends for ``url`` and form ``params``.

    Args:
        auth_token: the account's primary Auth Token.
        url: the full URL, query string included.
        params: form fields (a mapping, or ``(name, value)`` pairs when names repeat).
    """
    data = url + "".join(name + value for name, value in _pairs(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_url_variants(url: str) -> tuple[str, ...]:
    """``url`` as given, without its port, and with its scheme's default port (deduplicated)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    bare_host = host
    if parts.port is not None:
        bare_host = host[: host.rfind(":")]
    variants = [url, parts._replace(netloc=bare_host).geturl()]
    default = _DEFAULT_PORTS.get(parts.scheme)
    if parts.port is None and default is not None:
        variants.append(parts._replace(netloc=f"{bare_host}:{default}").geturl())
    return tuple(dict.fromkeys(variants))


def _matches(auth_token: str, urls: Iterable[str], params: list[tuple[str, str]], got: str) -> bool:
    got_bytes = got.encode("utf-8", "surrogateescape")
    ok = False
    for url in urls:
        expected = compute_signature(auth_token, url, params).encode("ascii")
        # No early exit: every variant is computed and compared in constant time.
        ok |= hmac.compare_digest(expected, got_bytes)
    return ok


def validate_webhook_signature(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    signature: str | None,
    *,
    body: bytes | None = None,
) -> bool:
    """Check a webhook's ``X-Twilio-Signature``.

    Args:
        auth_token: the account's primary Auth Token.
        url: the public URL Twilio requested, query string included.
        params: the form fields (ignored when the URL carries ``bodySHA256``).
        signature: the header's value (None when absent: never valid).
        body: the raw body; required for the ``bodySHA256`` (JSON body) variant.
    """
    if not signature:
        return False
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    body_hashes = query.get("bodySHA256")
    if body_hashes is not None:
        if body is None or len(body_hashes) != 1:
            return False
        expected_hash = hashlib.sha256(body).hexdigest().encode()
        if not hmac.compare_digest(expected_hash, body_hashes[0].lower().encode()):
            return False
        pairs: list[tuple[str, str]] = []
    else:
        pairs = _pairs(params)
    return _matches(auth_token, signature_url_variants(url), pairs, signature)


def validate_websocket_signature(auth_token: str, public_url: str, signature: str | None) -> bool:
    """Check the ``X-Twilio-Signature`` of a Media Streams WebSocket upgrade.

    Args:
        auth_token: the account's primary Auth Token.
        public_url: the public ``wss://`` URL put in ``<Stream url>``.
        signature: the header's value (None when absent: never valid).
    """
    if not signature:
        return False
    base = public_url.rstrip("/")
    urls = [*signature_url_variants(base), *signature_url_variants(base + "/")]
    return _matches(auth_token, urls, [], signature)
