"""Generic actor runtime: bounded mailboxes, actors, OTP-style supervisors, snapshots, events.

It knows nothing about calls. See docs/runtime.md for how to write an actor and a supervisor.
Import from here only; ``actors.runtime.testing`` holds test helpers.
"""

from __future__ import annotations

from actors.runtime.actor import Actor, ActorSnapshot
from actors.runtime.events import (
    AutoShutdownTriggered,
    ChildExited,
    ChildKilled,
    ChildRestarted,
    ChildStarted,
    ExitReason,
    IntensityExceeded,
    StopRequested,
    SupervisorEvent,
)
from actors.runtime.intensity import RestartIntensity
from actors.runtime.mailbox import Mailbox, MailboxStats, Overflow, Receiver, receive_either
from actors.runtime.supervisor import (
    AutoShutdown,
    Child,
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorSnapshot,
)

__all__ = [
    "Actor",
    "ActorSnapshot",
    "AutoShutdown",
    "AutoShutdownTriggered",
    "Child",
    "ChildExited",
    "ChildKilled",
    "ChildRestarted",
    "ChildSpec",
    "ChildStarted",
    "ExitReason",
    "IntensityExceeded",
    "Mailbox",
    "MailboxStats",
    "Overflow",
    "Receiver",
    "Restart",
    "RestartIntensity",
    "StopRequested",
    "Strategy",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorSnapshot",
    "receive_either",
]
