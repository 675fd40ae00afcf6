"""G.711 μ-law, streaming resampling, framing and voice activity detection.

Synchronous, sans-I/O, numpy only: nothing here awaits or imports anyio.
"""

from __future__ import annotations
