"""Restart intensity: at most N restarts in any window of T seconds (Erlang/OTP ``intensity``).

Sans-I/O: the caller passes the time (``anyio.current_time()`` in the supervisor, plain numbers in
tests), so the window logic is tested without an event loop or sleeps.

Semantics follow OTP: a restart at ``now`` is recorded; restarts older than ``period`` seconds
(``now - t > period``) are forgotten; if more than ``max_restarts`` remain, the intensity is
exceeded and the supervisor must give up. ``max_restarts=0`` means any restart gives up.
"""

from __future__ import annotations

from collections import deque
from typing import final

__all__ = ["RestartIntensity"]


@final
class RestartIntensity:
    """Sliding-window restart counter.

    Args:
        max_restarts: N, the most restarts allowed inside one window (>= 0).
        period: T, the window length in seconds (> 0).

    Raises:
        ValueError: on a negative N or a non-positive T.
    """

    __slots__ = ("_times", "max_restarts", "period")

    def __init__(self, max_restarts: int, period: float) -> None:
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        if not period > 0:
            raise ValueError(f"period must be > 0 seconds, got {period}")
        self.max_restarts = max_restarts
        self.period = period
        # Only the newest N+1 times can matter, so the deque is bounded.
        self._times: deque[float] = deque(maxlen=max_restarts + 1)

    def record(self, now: float) -> bool:
        """Record a restart at time ``now`` (non-decreasing across calls).

        Returns:
            True if the restart is allowed; False if it makes more than ``max_restarts``
            restarts within ``period`` seconds (the supervisor gives up).
        """
        times = self._times
        times.append(now)
        while times and now - times[0] > self.period:
            times.popleft()
        return len(times) <= self.max_restarts

    def recent(self, now: float) -> int:
        """Restarts recorded within ``period`` seconds before ``now``."""
        return sum(1 for t in self._times if now - t <= self.period)
