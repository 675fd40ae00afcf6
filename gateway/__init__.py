"""The service edge: HTTP/WebSocket, CLI, configuration, logging, the Nova Sonic emulator."""

from __future__ import annotations
