"""Twilio request signing as the simulated Twilio peer does it (twilio-media-streams.md §6).

Theory of operation. Twilio signs each request with HMAC-SHA1 keyed by the account's auth token over
the URL it requested followed by the sorted POST parameters (name then value, no separators); for
the Media Streams WebSocket upgrade the URL is the public ``wss://`` URL from ``<Stream url>`` and
there are no parameters. The result is base64 in ``X-Twilio-Signature``. Pure and synchronous.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["twilio_signature"]


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """Compute the ``X-Twilio-Signature`` value Twilio would send for ``url`` (and form ``params``)."""
    data = url + "".join(name + params[name] for name in sorted(params or {})) if params else url
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
