"""Actor snapshots with per-actor counters, still decodable as plain runtime snapshots.

:class:`CallActorSnapshot` extends the runtime's ``ActorSnapshot`` with a flat ``counters`` map
(frames, bytes, drops, lateness...). It keeps the ``"actor"`` tag, so ``/debug/actors`` JSON shows
the counters and still decodes as the runtime's snapshot union (extra fields are ignored).
"""

from __future__ import annotations

import msgspec

from actors.runtime import ActorSnapshot

__all__ = ["CallActorSnapshot", "Counter", "with_counters"]

Counter = int | float | bool | str | None


class CallActorSnapshot(ActorSnapshot, frozen=True, kw_only=True, tag="actor", tag_field="type"):
    """A runtime actor snapshot plus the actor's own counters."""

    counters: dict[str, Counter] = msgspec.field(default_factory=dict)


def with_counters(base: ActorSnapshot, **counters: Counter) -> CallActorSnapshot:
    """Copy ``base`` and attach ``counters``."""
    fields = msgspec.structs.asdict(base)
    return CallActorSnapshot(**fields, counters=counters)
