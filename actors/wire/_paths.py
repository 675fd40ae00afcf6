"""Turn msgspec decode failures into a problem text and a dotted field path for protocol errors.

msgspec reports where validation failed as a JSONPath suffix (``... - at `$.event.promptStart```) and
names missing or unknown keys in the message itself (``Object missing required field `promptName```).
:func:`describe` joins both into the dotted path that ``RemoteProtocolError.field`` carries
(``"event.promptStart.promptName"``), so a log line points at the offending key.

Besides ``msgspec.DecodeError`` (and its subclass ``ValidationError``) a decoder can raise
``RecursionError`` on absurdly nested input and ``UnicodeEncodeError`` for a ``str`` holding lone
surrogates; :data:`DECODE_ERRORS` lists all three so every decoder turns each into its one project
error. Pure string work: no I/O, no state.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

__all__ = ["DECODE_ERRORS", "describe"]

DECODE_ERRORS: Final = (msgspec.DecodeError, RecursionError, UnicodeError)

# "<problem> - at `$.a.b[0]`": the location suffix msgspec appends to ValidationError messages.
_LOCATION: Final = re.compile(r" - at `\$(?P<path>[^`]*)`$")
# Messages that name a key which is not (yet) part of the location.
_NAMED_KEY: Final = re.compile(
    r"^Object (?:missing required|contains unknown) field `(?P<key>[^`]+)`"
)


def describe(exc: Exception) -> tuple[str, str | None]:
    """Return ``(problem, field)`` for a decode failure.

    Args:
        exc: one of :data:`DECODE_ERRORS`: a ``msgspec.ValidationError`` (wrong type, missing or
            unknown field, bad base64, bad tag), a plain ``msgspec.DecodeError`` (not JSON,
            truncated), ``RecursionError`` (nesting too deep) or ``UnicodeError`` (unencodable str).

    Returns:
        msgspec's description without the location suffix, and the dotted path of the field
        (``"media.payload"``, ``"sequenceNumber"``), or None when the input never got as far as a
        field (malformed JSON, wrong top-level type, too deep, bad text).
    """
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply", None
    if isinstance(exc, UnicodeError):
        return "text is not valid Unicode", None
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return text, None
    location = _LOCATION.search(text)
    path = location.group("path").lstrip(".") if location else ""
    named = _NAMED_KEY.match(text)
    if named:
        key = named.group("key")
        path = f"{path}.{key}" if path else key
    return _LOCATION.sub("", text), path or None
