"""Followers: reading leaders' notification logs and processing their events exactly once
(the private part of ``eventsourcing.system``)."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from uuid import UUID

from eventsourcing._deadletters import DeadLetter
from eventsourcing._layout import Carried
from eventsourcing._parking import ParkedBehind, Parking
from eventsourcing.application import (
    Application,
    LRUCache,
    NotificationLog,
    ProcessingEvent,
    Repository,
    events_read_back_as_saved,
    events_replay_as_triggered,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    CIPHER_KEY,
    CIPHER_TOPIC,
    COMPRESSOR_TOPIC,
    MAPPER_TOPIC,
    IntegrityError,
    Mapper,
    Notification,
    ProcessRecorder,
    Recording,
    Tracking,
    TrackingConflictError,
    new_tracking,
)
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import Environment, EventSourcingError

# Batches processed, at DEBUG.
debug = logging.getLogger("eventsourcing.follower.activity")


class RunnerAlreadyStartedError(EventSourcingError):
    """``start()`` was called on a runner that is already running."""


class NotificationPullingError(EventSourcingError):
    """A follower could not read a leader's notification log."""


class NotificationConvertingError(EventSourcingError):
    """A notification could not be turned back into a domain event."""


class EventProcessingError(EventSourcingError):
    """A follower's policy raised while processing an event (the cause is attached)."""


# ---------------------------------------------------------------------------
# Reading notification logs.


class NotificationLogReader:
    """Reads a notification log in order, section by section."""

    DEFAULT_SECTION_SIZE = 10

    def __init__(self, notification_log: NotificationLog, section_size: int = DEFAULT_SECTION_SIZE):
        if isinstance(section_size, bool) or not isinstance(section_size, int) or section_size < 1:
            raise ValueError(
                f"A notification log reader's section_size must be a positive integer, "
                f"not {section_size!r}"
            )
        self.notification_log = notification_log
        self.section_size = section_size

    def read(self, *, start: int = 1) -> Iterator[Notification]:
        """Yield every notification from ``start`` on, following the log's sections."""
        section_id: str | None = f"{start},{start + self.section_size - 1}"
        while section_id is not None:
            section = self.notification_log[section_id]
            yield from section.items
            section_id = section.next_id

    def select(
        self,
        *,
        start: int | None = None,
        stop: int | None = None,
        topics: Sequence[str] = (),
        inclusive_of_start: bool = True,
    ) -> Iterator[list[Notification]]:
        """Yield lists of up to ``section_size`` notifications, in order, from ``start``
        (or after it, unless ``inclusive_of_start``; from the first if None) up to
        ``stop``, of the given ``topics`` only (all if none are given)."""
        inclusive = inclusive_of_start
        while True:
            batch = self.notification_log.select(
                start, self.section_size, stop=stop, topics=topics, inclusive_of_start=inclusive
            )
            if batch:
                yield batch
            if len(batch) < self.section_size:
                return  # the end of the log (or of the range) when it was read
            start, inclusive = batch[-1].id, False


# ---------------------------------------------------------------------------
# Leaders and followers.


class RecordingEvent:
    """Tells a follower that a leader recorded new events."""

    def __init__(self, application_name: str, recordings: Sequence[Recording[Any]]):
        self.application_name = application_name
        self.recordings = recordings


class Leader(Application):
    """An application whose followers are told when it records new events."""

    def __init__(self, env: Mapping[str, str] | None = None):
        super().__init__(env)
        self.followers: list[Follower] = []

    def lead(self, follower: Follower) -> None:
        self.followers.append(follower)

    def _is_followed(self) -> bool:
        return bool(self.followers)

    def _notify(self, recordings: Sequence[Recording[Any]]) -> None:
        if self.notify_topics and recordings:
            topics = self.notify_topics
            recordings = [r for r in recordings if r.notification.topic in topics]
        if not recordings or not self.followers:
            return
        recording_event = RecordingEvent(self.name, recordings)
        for follower in self.followers:
            follower.receive_recording_event(recording_event)


class _FollowerRepository(Repository):
    """The repository of a follower: batch-aware, and keeping what it wrote in memory.

    Inside a batch (in the processing thread only), ``get`` returns first the
    batch's uncommitted aggregates, so a later event sees what an earlier one
    changed, then the aggregates this follower committed before, without a
    read. Trusting those is safe: a follower is normally their only writer, and
    if another process wrote one first, the commit fails on its version, the
    memory is cleared and the batch is processed again. Queries from other
    threads read committed state from the store, as usual.
    """

    def __init__(self, *args: Any, written_maxsize: int = 10_000, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._local = threading.local()
        self._written = LRUCache(written_maxsize)

    def get(
        self,
        aggregate_id: Any,
        version: int | None = None,
        projector_func: Any = None,
        fastforward_skipping: bool = False,  # (positional defaults cost less per call)
        deepcopy_from_cache: bool = True,
    ) -> Any:
        if type(aggregate_id) is not self.id_type:
            aggregate_id = self.store_id(aggregate_id)
        local = self._local
        aggregates: dict[Any, Any] | None = getattr(local, "aggregates", None)
        if aggregates is not None and version is None:
            # (With a projector too: what the batch holds is the latest state.)
            aggregate = aggregates.get(aggregate_id)
            if aggregate is None:
                aggregate = self._written.get(aggregate_id)
                if aggregate is not None:
                    local.taken_from_memory.add(aggregate_id)
            if aggregate is not None:
                return aggregate
        return super().get(
            aggregate_id,
            version=version,
            projector_func=projector_func,
            deepcopy_from_cache=deepcopy_from_cache,
        )

    def begin_batch(self, aggregates: dict[UUID, Any]) -> None:
        """Start processing a batch (in this thread) whose collected aggregates are
        ``aggregates``; ``end_batch`` must follow, whatever happens."""
        local = self._local
        local.aggregates = aggregates
        local.taken_from_memory = set()

    def end_batch(self, recorded: bool, events: Sequence[Any] = ()) -> None:
        """Keep in memory what the batch recorded (if its ``events`` read back as they
        were recorded, so that what is kept is what a replay would make); forget
        what it changed otherwise."""
        local = self._local
        aggregates: dict[UUID, Any] = local.aggregates
        taken_from_memory: set[UUID] = local.taken_from_memory
        local.aggregates = None
        if recorded and not (
            self.checks_read_back
            and events_read_back_as_saved(events)
            and events_replay_as_triggered(events)
        ):
            recorded = False  # (forgotten like a failed batch's: read again when next needed)
        if not recorded:
            for aggregate_id in taken_from_memory | aggregates.keys():
                self._written.discard(aggregate_id)
            return
        for aggregate_id in taken_from_memory:
            if aggregate_id not in aggregates:
                self._written.discard(aggregate_id)  # changed but not collected: unsure
        for aggregate_id, aggregate in aggregates.items():
            if not _has_pending_events(aggregate):
                self._written.put(aggregate_id, aggregate)

    def cache_saved(self, aggregates: Mapping[UUID, Any], events: Sequence[Any] = ()) -> None:
        """Nothing: what a follower writes is kept in its own memory (see ``end_batch``)."""

    def clear_cache(self) -> None:
        super().clear_cache()
        self._written.clear()


def _has_pending_events(aggregate: Any) -> bool:
    """Whether an aggregate changed after it was collected (so it is not to be kept).

    An aggregate not of our classes is asked for its public ``pending_events``; one
    without them (an immutable aggregate) cannot have changed.
    """
    if isinstance(aggregate, Aggregate):
        return bool(aggregate._pending_events)
    return bool(getattr(aggregate, "pending_events", None))


class _Handover:
    """Recordings that leaders in this process handed to a follower, by notification id.

    They spare the follower reading and decoding the events it was just told of.
    Only a run of ids that continues the follower's position is taken from here;
    anything else (a gap, events that other processes wrote, recordings dropped
    because the follower fell far behind) is read from the leader's log as usual.
    """

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._held: dict[str, dict[int, Recording[Any]]] = {}

    def put(self, leader_name: str, recordings: Sequence[Recording[Any]]) -> None:
        with self._lock:
            held = self._held.setdefault(leader_name, {})
            for recording in recordings:
                held[recording.notification.id] = recording
            while len(held) > self.maxsize:
                del held[next(iter(held))]  # the oldest: the log still has it

    def take(
        self,
        leader_name: str,
        first: int,
        limit: int,
        stop: int | None,
        topics: Sequence[str] = (),
    ) -> tuple[list[Notification], list[Any]]:
        """The notifications and domain events of up to ``limit`` recordings with ids
        ``first``, ``first + 1``, ... (to ``stop``); of ``topics`` only, if given (the
        others are passed over)."""
        notifications: list[Notification] = []
        domain_events: list[Any] = []
        with self._lock:
            held = self._held.get(leader_name)
            if not held:
                return notifications, domain_events
            while held and next(iter(held)) < first:
                del held[next(iter(held))]  # processed already (read from the log)
            notification_id = first
            while len(notifications) < limit and (stop is None or notification_id <= stop):
                recording = held.pop(notification_id, None)
                if recording is None:
                    break
                notification_id += 1
                if topics and recording.notification.topic not in topics:
                    continue
                notifications.append(recording.notification)
                domain_events.append(recording.domain_event)
            return notifications, domain_events


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count``: the share of upstream events one process handles.

    Events are routed by originator id, so one partition sees all the events of an
    aggregate, in order. Each partition keeps its own tracking position.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"Partition {self}: the count of partitions must be at least 1")
        if not 0 <= self.index < self.count:
            raise ValueError(f"Partition {self}: the index must be from 0 to {self.count - 1}")

    @classmethod
    def parse(cls, text: str) -> Partition:
        """Read ``"K/N"``."""
        index, sep, count = text.partition("/")
        if not (sep and index.strip().isdigit() and count.strip().isdigit()):
            raise ValueError(f"Partition {text!r} is not of the form K/N, like 0/2")
        return cls(int(index), int(count))

    def owns(self, originator_id: UUID) -> bool:
        return originator_id.int % self.count == self.index

    def tracking_name(self, leader_name: str) -> str:
        return f"{leader_name}[{self.index}/{self.count}]"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


# The settings that decide how stored events are decoded.
_MAPPER_SETTINGS = (MAPPER_TOPIC, CIPHER_TOPIC, CIPHER_KEY, COMPRESSOR_TOPIC)

# A follower's batch delay: seconds, or AUTO.
AUTO: Literal["auto"] = "auto"
BatchDelay = float | Literal["auto"]
# An "auto" batch delay is this fraction of a follower's typical batch (a moving
# average of its batches' durations, each counting for BATCH_SMOOTHING of it): the
# threaded seed system measured best with a gather of about one commit, and a steady
# gather (averaged) beat one that followed each batch's duration. On PostgreSQL with a
# 1 ms flush, 0.8 settled at a gather of ~1.4 ms (one commit) and ran 7% more commands
# than 0.6 (0.84 ms; medians of 4 interleaved rounds: 563 vs 525/s); on SQLite and a
# fast PostgreSQL the two measured alike. A batch long in processing (a backlog, a slow
# policy) says nothing of how long a commit takes: the wait is AUTO_GATHER_LIMIT at most.
AUTO_GATHER_FRACTION = 0.8
BATCH_SMOOTHING = 0.1
AUTO_GATHER_LIMIT = 0.005


def typical_batch_seconds(typical: float, latest: float) -> float:
    """The moving average of a follower's batch durations, given its latest batch."""
    return typical + BATCH_SMOOTHING * (latest - typical)


def gather_seconds(batch_delay: BatchDelay | None, typical_batch: float) -> float:
    """How long a follower woken while busy waits before its next batch: its batch
    delay, or under "auto" a part of its typical batch (see AUTO_GATHER_FRACTION), for
    events queue anyway while a commit is made: the next commit then serves all of
    them, and a result waits at most about one batch more."""
    if batch_delay == AUTO:
        return min(typical_batch * AUTO_GATHER_FRACTION, AUTO_GATHER_LIMIT)
    return batch_delay or 0.0


class Follower(Application):
    """An application that processes the events of the applications it follows."""

    # How many upstream notifications are processed, and recorded, in one write.
    # (Catching up 10,000 events: 1,000 was 10-17% faster than 200 on SQLite and
    # PostgreSQL; a follower that keeps up takes what is there, usually a few.)
    batch_size = 1_000
    # How often a batch is read and processed again after a write conflict.
    max_conflict_retries = 100
    # How many recordings handed over by leaders in this process are held, per
    # leader, for a follower that is behind (past that, it reads the log).
    handover_maxsize = 1_000
    # Under the threaded runners, how many seconds to wait before the next batch when
    # events arrived during the last one (group commit): a number, or "auto" (a part
    # of its typical batch, see gather_seconds). None: the store's default
    # ("auto" on disk, 0 in memory). FOLLOWER_BATCH_DELAY overrides both.
    batch_delay: BatchDelay | None = None
    # The topics of the upstream events to process (all if empty): the others are
    # not even read, since the log is queried for these topics only.
    topics: Sequence[str] = ()
    # The size of the batches that ``pull_notifications`` yields.
    pull_section_size = 10

    FOLLOWER_BATCH_DELAY = "FOLLOWER_BATCH_DELAY"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "follow_topics" in cls.__dict__:  # the older name of ``topics``
            cls.topics = cls.__dict__["follow_topics"]

    def __init__(self, env: Mapping[str, str] | None = None):
        super().__init__(env)
        self.topics = self._checked_topics()
        self.batch_delay = self._batch_delay()
        self.readers: dict[str, NotificationLogReader] = {}
        self.mappers: dict[str, Mapper] = {}
        self._positions: dict[str, int] = {}
        self._leader_topics: dict[str, tuple[str, ...]] = {}
        self._upstream_listener: Callable[[str], None] | None = None
        self._processing_lock = threading.Lock()
        self._handover = _Handover(self.handover_maxsize)
        self.partition: Partition | None = None
        self._parking = Parking(self)
        # Positions of an earlier partition layout, per leader (see _layout).
        self.carried: dict[str, Carried] = {}
        self._policy = self.policy  # bound once (binding a dispatching policy costs calls)
        # Overridden pulling steps are used as they are, without the quick paths.
        cls = type(self)
        self._custom_pulling = any(
            getattr(cls, name) is not getattr(Follower, name)
            for name in ("pull_notifications", "filter_received_notifications")
        )
        self._custom_converting = cls.convert_notifications is not Follower.convert_notifications

    def _checked_topics(self) -> tuple[str, ...]:
        topics = self.topics
        if isinstance(topics, str) or not all(isinstance(topic, str) for topic in topics):
            raise TypeError(
                f"{type(self).__qualname__}.topics must be a list of topic strings "
                f"(get_topic(EventClass)), not {topics!r}"
            )
        return tuple(topics)

    def _batch_delay(self) -> BatchDelay:
        """Seconds to wait before the next batch when events arrived during the last
        one, or "auto" (see ``gather_seconds``).

        Used by the threaded runners (a single-threaded runner processes before
        ``save()`` returns): ``FOLLOWER_BATCH_DELAY``, else the class's ``batch_delay``,
        else the store's default.
        """
        setting = self.env.get(self.FOLLOWER_BATCH_DELAY)
        if setting in (None, ""):
            if type(self).batch_delay is None:
                return self.factory.follower_batch_delay
            setting = str(type(self).batch_delay)
        if setting.strip().lower() == AUTO:
            return AUTO
        try:
            delay = float(setting)
        except ValueError:
            delay = math.nan
        if not (math.isfinite(delay) and delay >= 0):
            raise ValueError(
                f"{self.name}: FOLLOWER_BATCH_DELAY (or the class's batch_delay) must be "
                f"a number of seconds, 0 or more, or 'auto', not {setting!r}"
            )
        return delay

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    def construct_repository(self) -> Repository:
        plain = super().construct_repository()
        return _FollowerRepository(
            event_store=plain.event_store,
            snapshot_store=plain.snapshot_store,
            cache_maxsize=plain.cache.maxsize if plain.cache is not None else None,
            fastforward=plain.fastforward,
            id_type=self._id_type(),
            fastforward_skipping=plain.fastforward_skipping,
            deepcopy_from_cache=plain.deepcopy_from_cache,
        )

    @property
    def process_recorder(self) -> ProcessRecorder:
        return cast(ProcessRecorder, self.recorder)

    def follow(self, name: str, log: NotificationLog, notify_topics: Sequence[str] = ()) -> None:
        """Follow the notification log of the application called ``name``: of its
        events, those of this follower's ``topics`` and of the leader's
        ``notify_topics`` (all, where neither has any)."""
        self.readers[name] = NotificationLogReader(log, section_size=self.pull_section_size)
        self.mappers[name] = self._leader_mapper(name)
        self._leader_topics[name] = _narrowed(self.topics, notify_topics)

    def topics_for(self, leader_name: str) -> tuple[str, ...]:
        """The topics of the events of ``leader_name`` this follower processes (all if
        none): its own ``topics``, narrowed to the leader's ``notify_topics``."""
        topics = self._leader_topics.get(leader_name)
        return tuple(self.topics) if topics is None else topics

    def _leader_mapper(self, leader_name: str) -> Mapper:
        """The mapper that decodes the stored events of ``leader_name``: this follower's,
        unless the settings differ for that application (``DOGSCHOOL_CIPHER_KEY``...)."""
        leader_env = Environment(leader_name, self.env)
        if all(leader_env.get(key) == self.env.get(key) for key in _MAPPER_SETTINGS):
            return self.mapper
        # A factory only to read the settings: the in-memory one opens nothing.
        return POPOFactory(leader_env).mapper(self.mapper.transcoder, type(self.mapper))

    def pull_notifications(
        self,
        leader_name: str,
        start: int | None,
        stop: int | None = None,
        *,
        inclusive_of_start: bool = True,
    ) -> Iterator[list[Notification]]:
        """Yield lists of the notifications of ``leader_name`` from ``start`` (after it,
        unless ``inclusive_of_start``) up to ``stop``, of this follower's ``topics``."""
        return self._reader(leader_name).select(
            start=start,
            stop=stop,
            topics=self.topics_for(leader_name),
            inclusive_of_start=inclusive_of_start,
        )

    def filter_received_notifications(
        self, notifications: Sequence[Notification]
    ) -> Sequence[Notification]:
        """The notifications of this follower's ``topics`` (all, if it has none)."""
        topics = self.topics
        if not topics:
            return notifications
        return [notification for notification in notifications if notification.topic in topics]

    def convert_notifications(
        self, leader_name: str, notifications: Iterable[Notification]
    ) -> list[tuple[Any, Tracking]]:
        """Each notification of ``leader_name`` as its domain event, with the tracking
        record of its position."""
        mapper = self.mappers.get(leader_name, self.mapper)
        jobs = []
        for notification in notifications:
            try:
                domain_event = mapper.to_domain_event(notification)
            except Exception as error:
                raise self._converting_error(leader_name, notification, error) from error
            jobs.append((domain_event, Tracking(self.tracking_name(leader_name), notification.id)))
        return jobs

    def _reader(self, leader_name: str) -> NotificationLogReader:
        try:
            return self.readers[leader_name]
        except KeyError:
            raise NotificationPullingError(
                f"{self.name} does not follow {leader_name!r} (follows: {sorted(self.readers)})"
            ) from None

    def _converting_error(
        self, leader_name: str, notification: Notification, error: Exception
    ) -> NotificationConvertingError:
        failure = NotificationConvertingError(
            f"{self.name} could not convert notification {notification.id} of "
            f"{leader_name} (topic {notification.topic!r}): {error}"
        )
        failure.__cause__ = error
        return failure

    def receive_recording_event(self, recording_event: RecordingEvent) -> None:
        """Called by a leader after it recorded; runners use it to schedule processing."""
        listener = self._upstream_listener
        if listener is None:
            return  # not run by a runner: nobody would take the recordings
        leader_name = recording_event.application_name
        if leader_name in self.readers:
            self._handover.put(leader_name, recording_event.recordings)
        listener(leader_name)

    def tracking_name(self, leader_name: str) -> str:
        """The name this follower's position in ``leader_name``'s log is recorded under."""
        if self.partition is None:
            return leader_name
        return self.partition.tracking_name(leader_name)

    def forget_positions(self) -> None:
        """Forget the positions and aggregates held in memory, so that they are read
        again from the store (after an error that left unsure what was recorded)."""
        with self._processing_lock:
            self._positions.clear()
            self.repository.clear_cache()

    def position(self, leader_name: str) -> int:
        """The last notification id of ``leader_name`` this follower has processed."""
        position = self._positions.get(leader_name)
        if position is None:
            tracking_name = self.tracking_name(leader_name)
            position = self.process_recorder.max_tracking_id(tracking_name) or 0
            self._positions[leader_name] = position
        return position

    def pull_and_process(
        self,
        leader_name: str,
        start: int | None = None,
        stop: int | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> None:
        """Process every notification of ``leader_name`` after this follower's position.

        Notifications are processed in batches: each batch's new events and its
        last notification id are recorded in one transaction. ``progress`` is
        called with the leader's name and the new position after each batch.
        Returns early, between batches, once the application is closing.

        ``start``: the first notification id to process, unless processed already;
        ``start`` below this follower's position asks to process again what it has
        processed, and is refused with ``TrackingConflictError`` (an
        ``IntegrityError``), as in 9.5 (``start`` at the position continues from it).
        """
        with self._processing_lock:
            if start is not None and (stop is None or stop > start):
                self._refuse_processing_again(leader_name, start)
            if leader_name not in self._parking.parked and self._parking.settings.parks:
                self._parking.load_parked(leader_name)
            conflicts = 0
            while not self.closing.is_set():
                position = self.position(leader_name)
                first = max(position + 1, start or 1)
                notifications, handed_events = self._handover.take(
                    leader_name, first, self.batch_size, stop, self.topics_for(leader_name)
                )
                domain_events: list[Any] | None = handed_events
                if not notifications or self._custom_pulling:
                    notifications = self._pull(leader_name, first, stop)
                    domain_events = None
                if self._custom_converting and notifications:
                    domain_events = self._converted(leader_name, notifications)
                if not notifications:
                    return
                try:
                    try:
                        recorded = self._process_and_record(
                            leader_name, notifications, domain_events, position
                        )
                    except _BatchItemError as failure:
                        # Nothing of the batch was recorded. Record the events before
                        # the failing one, so they are not held back with it (a conflict
                        # doing so is retried below), then retry and park the failing
                        # one, or report the failure.
                        if failure.index > 0:
                            end = failure.index
                            before = domain_events[:end] if domain_events is not None else None
                            self._process_and_record(
                                leader_name, notifications[:end], before, position
                            )
                        if not self._parking.parks(failure.error):
                            raise failure.error from failure.error.__cause__
                        self._parking.retry_or_park(
                            leader_name, notifications[failure.index], failure.error
                        )
                        continue
                    if debug.isEnabledFor(logging.DEBUG):
                        debug.debug(
                            "%s: processed %d notification(s) of %s, to %d",
                            self.name,
                            recorded,
                            leader_name,
                            notifications[recorded - 1].id,
                        )
                    if progress is not None:
                        progress(leader_name, notifications[recorded - 1].id)
                    if recorded < len(notifications):
                        continue  # the batch was cut short: the rest is processed next
                    if len(notifications) < self.batch_size:
                        return  # that was the end of the log (a leader signals news)
                except IntegrityError:
                    # Another process recorded first: our position or an aggregate we
                    # wrote is stale. Nothing of the batch was recorded; forget what
                    # we knew and read again.
                    conflicts += 1
                    if conflicts > self.max_conflict_retries:
                        raise
                    self._positions.pop(leader_name, None)
                    self.repository.clear_cache()
                    # Jitter, so two partitions writing one aggregate stop colliding.
                    time.sleep(random.uniform(0, 0.002 * min(conflicts, 50)))

    def _refuse_processing_again(self, leader_name: str, start: int) -> None:
        position = self.position(leader_name)
        if start < position:
            raise TrackingConflictError(
                f"{self.name} has processed the notifications of {leader_name} up to "
                f"{position}: pull_and_process(start={start}) asks to process some of them "
                f"again (start={position} continues after {position})"
            )

    def _pull(self, leader_name: str, first: int, stop: int | None) -> list[Notification]:
        """The next batch from ``first``: of this follower's topics, queried as such."""
        reader = self._reader(leader_name)
        try:
            if self._custom_pulling:
                return self._pull_with_overrides(leader_name, first, stop)
            return reader.notification_log.select(
                first, self.batch_size, stop=stop, topics=self.topics_for(leader_name)
            )
        except Exception as error:
            raise NotificationPullingError(
                f"{self.name} could not read the notification log of {leader_name}: {error}"
            ) from error

    def _pull_with_overrides(
        self, leader_name: str, first: int, stop: int | None
    ) -> list[Notification]:
        """The next batch, from the subclass's ``pull_notifications`` and
        ``filter_received_notifications``."""
        for batch in self.pull_notifications(leader_name, first, stop):
            notifications = list(self.filter_received_notifications(batch))
            if notifications:
                return notifications
        return []

    def _converted(self, leader_name: str, notifications: list[Notification]) -> list[Any]:
        """The domain events of ``notifications``, from the subclass's ``convert_notifications``."""
        jobs = self.convert_notifications(leader_name, notifications)
        if len(jobs) != len(notifications):
            raise NotificationConvertingError(
                f"{self.name}.convert_notifications() returned {len(jobs)} events for "
                f"{len(notifications)} notifications of {leader_name}"
            )
        return [domain_event for domain_event, _ in jobs]

    def _process_and_record(
        self,
        leader_name: str,
        notifications: list[Notification],
        domain_events: list[Any] | None,
        position: int,
    ) -> int:
        """Process ``notifications`` and record their effects in one transaction;
        return how many were recorded (all, unless the batch was cut short).

        A policy that gives keyword arguments for the recorder (``collect_events(...,
        **kwargs)``) ends its batch: the arguments of two upstream events would
        otherwise be merged into one set, and a recorder extension would see only
        the last of each name. So does one that collects an event whose class has its
        own ``mutate()`` (a "discarded" event may give None): the aggregate it held
        in the batch is not what a replay makes, so the next event is processed in
        a batch of its own, which reads that aggregate from the store.
        """
        tracking = new_tracking(self.tracking_name(leader_name), notifications[-1].id, position)
        processing_event: ProcessingEvent[Any] = ProcessingEvent(tracking)
        repository: _FollowerRepository = self.repository  # type: ignore[assignment]
        repository.begin_batch(processing_event.aggregates)
        mapper = self.mappers.get(leader_name, self.mapper)
        try:
            for index, notification in enumerate(notifications):
                domain_event = domain_events[index] if domain_events is not None else None
                collected = len(processing_event.events)
                self._process_notification(
                    leader_name, index, notification, domain_event, processing_event, mapper
                )
                if index + 1 < len(notifications) and (
                    processing_event.saved_kwargs
                    or not events_replay_as_triggered(processing_event.events[collected:])
                ):
                    notifications = notifications[: index + 1]
                    processing_event.tracking = new_tracking(
                        tracking.application_name, notification.id, position
                    )
                    break
            # Recordings only for followers of this one (a leader too): they cost
            # a notification per event.
            recordings = self._record(processing_event, make_recordings=self._is_followed())
        except BaseException:
            repository.end_batch(recorded=False)
            raise
        repository.end_batch(recorded=True, events=processing_event.events)
        self._positions[leader_name] = notifications[-1].id
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)
        return len(notifications)

    def _process_notification(
        self,
        leader_name: str,
        index: int,
        notification: Notification,
        domain_event: Any,
        processing_event: ProcessingEvent,
        mapper: Mapper,
    ) -> None:
        if self.partition is not None and not self.partition.owns(notification.originator_id):
            return
        carried = self.carried.get(leader_name)
        if (
            carried is not None
            and notification.id <= carried.until
            and carried.was_processed(notification.id, notification.originator_id)
        ):
            return  # processed under the earlier partition layout
        parked = self._parking.parked.get(leader_name)
        if parked and self._parking.is_parked_behind(leader_name, notification):
            behind = ParkedBehind(
                f"notification {notification.id} of {leader_name} is parked behind "
                f"notification {parked.get(str(notification.originator_id))} "
                f"of the same aggregate"
            )
            raise _BatchItemError(index, behind)
        try:
            if domain_event is None:
                domain_event = mapper.to_domain_event(notification)
        except Exception as error:
            failure: Exception = self._converting_error(leader_name, notification, error)
            raise _BatchItemError(index, failure) from error
        try:
            self._policy(domain_event, processing_event)
        except Exception as error:
            failure = EventProcessingError(
                f"{self.name} failed to process {type(domain_event).__qualname__} "
                f"(notification {notification.id} of {leader_name}, originator "
                f"{domain_event.originator_id} version {domain_event.originator_version}): "
                f"{type(error).__name__}: {error}"
            )
            failure.__cause__ = error
            raise _BatchItemError(index, failure) from error

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Process one upstream event and record its effects with ``tracking``."""
        processing_event: ProcessingEvent[Any] = ProcessingEvent(tracking=tracking)
        self.policy(domain_event, processing_event)
        recordings = self._record(processing_event, make_recordings=self._is_followed())
        self._positions[tracking.application_name] = tracking.notification_id
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)

    def retry_dead_letters(
        self, leader_name: str, letter_id: int | None = None
    ) -> tuple[list[DeadLetter], list[DeadLetter]]:
        """Process this follower's parked events of ``leader_name`` again (all, or the
        one of ``letter_id``), in order, each exactly once; return those processed and
        those that failed again (which keep the later events of their aggregate parked)."""
        return self._parking.retry_dead_letters(leader_name, letter_id)

    def skip_dead_letter(self, letter_id: int) -> DeadLetter:
        """Drop a parked event on purpose; it is kept, marked as skipped."""
        return self._parking.skip_dead_letter(letter_id)

    def dead_letters(self, leader_name: str | None = None) -> list[DeadLetter]:
        """This follower's dead letters (of ``leader_name``, if given), oldest first."""
        recorder = self._parking.dead_letters()
        return [] if recorder is None else recorder.select_dead_letters(leader_name)

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Override: respond to an upstream event, collecting new events in
        ``processing_event`` (``processing_event.collect_events(aggregate)``)."""


# A topic no event has: what a follower queries for when none of the topics it
# processes are among those its leader notifies (an empty list would mean all).
_NO_TOPIC = ""


def _narrowed(topics: Sequence[str], notify_topics: Sequence[str]) -> tuple[str, ...]:
    """``topics`` (all if empty) narrowed to ``notify_topics`` (all if empty)."""
    if not notify_topics:
        return tuple(topics)
    if not topics:
        return tuple(notify_topics)
    both = tuple(topic for topic in topics if topic in notify_topics)
    return both or (_NO_TOPIC,)


def _has_unprocessed(
    log: NotificationLog, position: int, recorded: int, topics: Sequence[str]
) -> bool:
    """Whether a follower at ``position`` of a log in which ``recorded`` is the last
    id has yet to process one of its notifications (of ``topics``, if any: the
    position of a follower of some topics stays at the last of those it processed)."""
    if position >= recorded:
        return False
    if not topics:
        return True
    after = log.select(position, 1, stop=recorded, topics=topics, inclusive_of_start=False)
    return bool(after)


class _BatchItemError(Exception):
    """Internal: the item at ``index`` of a batch failed with ``error``."""

    def __init__(self, index: int, error: Exception):
        super().__init__(str(error))
        self.index = index
        self.error = error


class ProcessApplication(Leader, Follower):
    """A follower whose own followers are told of what it records."""
