"""Actor runtime, wire models, the Nova Sonic client and the per-call actors of sonic-gateway.

Layering: ``gateway`` → ``actors`` → ``audiocodec``; never upward. ``actors.wire`` imports no anyio.
"""

from __future__ import annotations
