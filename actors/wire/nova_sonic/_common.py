"""Pieces shared by the Nova Sonic codecs: the project error, one encoder, name and error helpers.

No I/O and no state beyond the reusable msgspec encoder (encoders are cheap to call, costly to build,
and safe to share because encoding is synchronous).
"""

from __future__ import annotations

from typing import Final

import msgspec

from actors.errors import RemoteProtocolError
from actors.wire._paths import DECODE_ERRORS, describe

__all__ = ["DECODE_ERRORS", "ENCODER", "SonicEventError", "camel", "event_error"]


class SonicEventError(RemoteProtocolError):
    """A Nova Sonic event (or its Bedrock payload part) is malformed; ``field`` names the path."""


ENCODER: Final = msgspec.json.Encoder()


def camel(attr: str) -> str:
    """Return the camelCase wire name of a snake_case attribute (msgspec's ``rename="camel"``)."""
    head, *rest = attr.split("_")
    return head + "".join(part.title() for part in rest)


def event_error(exc: Exception, what: str) -> SonicEventError:
    """Translate one of :data:`DECODE_ERRORS` into :class:`SonicEventError` naming the field path."""
    problem, field = describe(exc)
    return SonicEventError(f"malformed {what}: {problem}", field=field)
