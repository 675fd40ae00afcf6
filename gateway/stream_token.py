"""Per-call media stream tokens: the webhook mints one, the media socket spends it once. Sans-I/O.

Why: Twilio signs the WebSocket upgrade over the fixed stream URL only, so a captured
``X-Twilio-Signature`` is valid for every later upgrade. Anyone holding one could open sockets with
made-up CallSids, each of which would open a paid Sonic session. The token ties a socket to a call
the signed voice webhook answered:

* :meth:`StreamTokens.mint` (webhook): ``<expiry>.<base64url HMAC-SHA256>``, the MAC taken over
  ``CallSid``, ``AccountSid``, the expiry (whole Unix seconds) and the call's route name
  (:mod:`gateway.routing`; the default route adds nothing, so its tokens are the same as before
  routes existed). It travels to Twilio in a ``<Stream><Parameter>`` and comes back in
  ``start.customParameters``, next to the ``route`` parameter.
* :meth:`StreamTokens.verify` (socket, at ``start``): the MAC must match the ``start``'s own
  ``callSid`` and ``accountSid`` and its ``route`` parameter (constant-time compare: a stream
  cannot claim another number's route), the expiry must not have passed, and the
  token must not have been spent before. Each token is accepted ONCE: spent tokens are remembered
  until they expire (after that, the expiry check refuses them anyway), in a set bounded by
  ``max_seen``; when the set is full of unexpired tokens a new one is refused (``"replay_cache_full"``)
  rather than forgetting one that could then be replayed.
* The key is ``twilio.stream_token_key`` when configured, else derived from the auth token by
  HMAC-SHA256 with a fixed label, so the MAC key is never the auth token itself.

The clock is wall-clock time because Twilio and the gateway must agree on when a token expires
across the webhook and the socket (possibly different processes behind a balancer with a shared
key); it is injected as a callable so tests control it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Final, Literal, final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PARAM_STREAM_TOKEN", "StreamTokens", "TokenRefusal", "derive_key"]

PARAM_STREAM_TOKEN: Final = "streamToken"
"""The ``<Parameter>`` name (and ``start.customParameters`` key) carrying the token."""

TokenRefusal = Literal[
    "bad_stream_token", "expired_stream_token", "replayed_stream_token", "replay_cache_full"
]

_DERIVE_LABEL: Final = b"sonic-gateway stream token v1"
# Tokens are short ASCII; anything longer is not one of ours (bounds the work done on junk).
_MAX_TOKEN_LEN: Final = 128
_MAC_LEN: Final = 32


def derive_key(auth_token: str) -> bytes:
    """The MAC key derived from the Twilio auth token (used when no key is configured)."""
    return hmac.new(auth_token.encode("utf-8"), _DERIVE_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, call_sid: str, account_sid: str, expiry: int, route: str) -> bytes:
    # NUL separators: SIDs are ASCII without NUL and the expiry is digits, so no two inputs share
    # a message; no route (the default) leaves the message as it was before routes.
    text = f"{call_sid}\x00{account_sid}\x00{expiry}" + (f"\x00{route}" if route else "")
    message = text.encode("utf-8", "surrogateescape")
    return hmac.new(key, message, hashlib.sha256).digest()


@final
class StreamTokens:
    """Mints and verifies stream tokens; holds the spent-token set (one per app).

    Args:
        key: the MAC key (:func:`derive_key` or the configured ``twilio.stream_token_key``).
        ttl_s: how long after minting a token may still start a stream.
        clock: wall-clock seconds (``time.time`` by default; tests pass their own).
        max_seen: most spent, unexpired tokens remembered.
    """

    __slots__ = ("_clock", "_key", "_max_seen", "_seen", "_ttl")

    def __init__(
        self,
        key: bytes,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        max_seen: int = 10_000,
    ) -> None:
        if ttl_s <= 0 or max_seen < 1:
            raise ValueError("ttl_s must be positive and max_seen at least 1")
        self._key = key
        self._ttl = ttl_s
        self._clock = clock
        self._max_seen = max_seen
        # token -> expiry, in the order tokens were spent.
        self._seen: dict[str, int] = {}

    @property
    def seen_count(self) -> int:
        """Spent tokens remembered now."""
        return len(self._seen)

    def mint(self, call_sid: str, account_sid: str, route: str = "") -> str:
        """A token for this call (and its route; "" for the default), valid for ``ttl_s``."""
        expiry = int(self._clock() + self._ttl) + 1  # round up: never shorter than ttl_s
        mac = _mac(self._key, call_sid, account_sid, expiry, route)
        return f"{expiry}.{base64.urlsafe_b64encode(mac).decode('ascii').rstrip('=')}"

    def verify(
        self, token: str | None, call_sid: str, account_sid: str, route: str = ""
    ) -> TokenRefusal | None:
        """Check ``token`` against the ``start``'s identity and route and spend it; None when
        accepted.

        Returns:
            None (accepted, now spent), or the refusal reason: ``"bad_stream_token"`` (missing,
            malformed, or not minted for this call, account and route), ``"expired_stream_token"``,
            ``"replayed_stream_token"`` (spent before), ``"replay_cache_full"``.
        """
        if token is None or len(token) > _MAX_TOKEN_LEN:
            return "bad_stream_token"
        expiry_text, dot, mac_text = token.partition(".")
        if not dot or not expiry_text.isascii() or not expiry_text.isdigit():
            return "bad_stream_token"
        try:
            got = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
        except ValueError:
            return "bad_stream_token"
        expiry = int(expiry_text)
        expected = _mac(self._key, call_sid, account_sid, expiry, route)
        # Canonical form only: one MAC has one spelling, so the spent set cannot be dodged.
        if len(got) != _MAC_LEN or not hmac.compare_digest(got, expected):
            return "bad_stream_token"
        canonical = base64.urlsafe_b64encode(expected).decode("ascii").rstrip("=")
        if not hmac.compare_digest(mac_text.encode("ascii", "replace"), canonical.encode()):
            return "bad_stream_token"
        now = self._clock()
        if now >= expiry:
            return "expired_stream_token"
        self._prune(now)
        if token in self._seen:
            return "replayed_stream_token"
        if len(self._seen) >= self._max_seen:
            return "replay_cache_full"
        self._seen[token] = expiry
        return None

    def _prune(self, now: float) -> None:
        """Forget spent tokens that have expired (they fail the expiry check from now on)."""
        # Front to back, stopping at the first live one: entries are added in expiry order unless
        # the clock stepped back, and then a stale entry only lingers until a later prune.
        while self._seen:
            token, expiry = next(iter(self._seen.items()))
            if now < expiry:
                return
            del self._seen[token]
