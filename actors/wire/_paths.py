"""Turn msgspec decode errors into dotted field paths for the project's protocol errors.

msgspec reports where validation failed as a JSONPath suffix (``... - at `$.event.promptStart```) and
names missing or unknown keys in the message itself (``Object missing required field `promptName```).
:func:`field_path` joins both into the dotted path that ``RemoteProtocolError.field`` carries
(``"event.promptStart.promptName"``), so a log line points at the offending key. Pure string work: no
I/O, no state.
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["field_path", "problem"]

# "<problem> - at `$.a.b[0]`": the location suffix msgspec appends to ValidationError messages.
_LOCATION = re.compile(r" - at `\$(?P<path>[^`]*)`$")
# Messages that name a key which is not (yet) part of the location.
_NAMED_KEY = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<key>[^`]+)`")


def field_path(exc: msgspec.DecodeError) -> str | None:
    """Return the dotted path of the field an error is about, or None for malformed JSON.

    Args:
        exc: a ``msgspec.ValidationError`` (wrong type, missing or unknown field, bad base64) or a
            plain ``msgspec.DecodeError`` (not JSON at all, truncated input).

    Returns:
        ``"media.payload"``-style path, ``"sequenceNumber"`` for a top-level key, or None when the
        input never got as far as a field (malformed JSON, wrong top-level type).
    """
    if not isinstance(exc, msgspec.ValidationError):
        return None
    text = str(exc)
    location = _LOCATION.search(text)
    path = location.group("path").lstrip(".") if location else ""
    named = _NAMED_KEY.match(text)
    if named:
        key = named.group("key")
        path = f"{path}.{key}" if path else key
    return path or None


def problem(exc: msgspec.DecodeError) -> str:
    """Return msgspec's description of the problem without the location suffix."""
    return _LOCATION.sub("", str(exc))
