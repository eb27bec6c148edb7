"""An asyncio API over the same stores: ``AsyncApplication`` and its parts.

Aggregates, events, topics, transcoding, the mapper and ciphers are the sync
API's own; applications, repositories, notification logs, recorders and the
runner of followers are awaited. The same settings open the same tables: data
written by one API is read by the other.
"""

from __future__ import annotations

from eventsourcing.asyncio._application import (
    AsyncApplication,
    AsyncEventStore,
    AsyncNotificationLog,
    AsyncRepository,
)
from eventsourcing.asyncio._factory import AsyncFactory
from eventsourcing.asyncio._projection import AsyncProjectionRunner
from eventsourcing.asyncio._recorders import (
    AsyncAggregateRecorder,
    AsyncApplicationRecorder,
    AsyncProcessRecorder,
    AsyncSubscription,
    SyncRecorderFacade,
)
from eventsourcing.asyncio._runner import AsyncRunner, AsyncRunnerError

__all__ = [
    "AsyncAggregateRecorder",
    "AsyncApplication",
    "AsyncApplicationRecorder",
    "AsyncEventStore",
    "AsyncFactory",
    "AsyncNotificationLog",
    "AsyncProcessRecorder",
    "AsyncProjectionRunner",
    "AsyncRepository",
    "AsyncRunner",
    "AsyncRunnerError",
    "AsyncSubscription",
    "SyncRecorderFacade",
]
