"""Nova Sonic over the real AWS SDK (placeholder while the package is assembled)."""

from __future__ import annotations
