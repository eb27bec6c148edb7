"""Event-driven systems: applications wired into a graph, processed exactly once.

A *follower* reads the notification log of each application it follows (its
*leaders*), passes each event to its ``policy``, and records the new events the
policy collected together with its position in the leader's log, in one atomic
write. That write is what makes processing exactly-once: after a crash, the
follower resumes from the recorded position, and nothing is done twice.

A leader in the same process hands what it just recorded to its followers: the
events that continue a follower's position are processed as they are, without
reading or decoding them again; anything else is read from the log.

Runners decide who runs the processing loop and when:

- ``SingleThreadedRunner``: the thread that saved, before ``save()`` returns;
- ``MultiThreadedRunner``: one thread per follower, woken as soon as a leader records.
  While events stream in faster than it commits, a follower waits its
  ``batch_delay`` (``FOLLOWER_BATCH_DELAY``; on disk "auto": about one commit, a
  part of its typical batch, 5 ms at most) before each next batch, so that many events share
  one commit.

The code lives in private modules (``_follower``, ``_runners``, ``_workers``); this
module is their public face.
"""

from __future__ import annotations

from eventsourcing._follower import (
    EventProcessingError,
    Follower,
    Leader,
    NotificationConvertingError,
    NotificationLogReader,
    NotificationPullingError,
    Partition,
    ProcessApplication,
    RecordingEvent,
    RunnerAlreadyStartedError,
)
from eventsourcing._runners import (
    MultiThreadedRunner,
    NewMultiThreadedRunner,
    NewSingleThreadedRunner,
    Runner,
    SingleThreadedRunner,
    System,
    TApplication,  # noqa: F401 (imported from here by older code)
)
from eventsourcing._workers import MultiProcessRunner, WorkerRunner

# Application, NotificationLog, Section and the persistence names are not this module's
# API, but code has long reached them through it (as before the split): kept importable.
from eventsourcing.application import (  # noqa: F401
    Application,
    NotificationLog,
    ProcessingEvent,
    Section,
)
from eventsourcing.persistence import (  # noqa: F401
    Mapper,
    Notification,
    ProcessRecorder,
    Recording,
    Tracking,
)

__all__ = [
    "EventProcessingError",
    "Follower",
    "Leader",
    "MultiProcessRunner",
    "MultiThreadedRunner",
    "NewMultiThreadedRunner",
    "NewSingleThreadedRunner",
    "NotificationConvertingError",
    "NotificationLogReader",
    "NotificationPullingError",
    "Partition",
    "ProcessApplication",
    "ProcessingEvent",
    "RecordingEvent",
    "Runner",
    "RunnerAlreadyStartedError",
    "SingleThreadedRunner",
    "System",
    "WorkerRunner",
]

