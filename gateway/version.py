"""The installed distribution's version (``sonic-gateway``), read once at import."""

from __future__ import annotations

from importlib import metadata
from typing import Final

__all__ = ["VERSION"]


def _version() -> str:
    try:
        return metadata.version("sonic-gateway")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


VERSION: Final = _version()
