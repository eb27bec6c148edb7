"""Projections: an application's events, processed into materialised views.

A view is a tracking recorder of a store (``POPOTrackingRecorder``,
``SQLiteTrackingRecorder``, ``PostgresTrackingRecorder``) extended with tables and
commands of its own; each command writes the view's rows and the tracking record
in one transaction, so every event changes the view exactly once. A
``Projection`` says which command each event calls; a ``ProjectionRunner``
subscribes to the application from the view's position and feeds the projection
in a thread. ``wait()`` returns as soon as the view has processed a position.

A projection of a ``DCBApplication`` works the same way: its events are the
application's tagged decisions (``DCBApplicationSubscription``), and a tracking
record's ``notification_id`` is a decision's position.

A projection may also define ``process_events(batch)``, taking a list of
``(domain_event, tracking)`` pairs and recording them, with the last tracking
record, in one transaction: a runner then hands it what is available in batches,
which catches up with a long log many times faster.
"""

from __future__ import annotations

import os
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from eventsourcing._protocols import TAggregateID
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.dcb.api import DCBQuery, DCBQueryItem, DCBSequencedEvent, DCBSubscription
from eventsourcing.dcb.application import DCBApplication
from eventsourcing.dcb.domain import Tagged
from eventsourcing.persistence import (
    InfrastructureFactory,
    ProcessRecorder,
    Subscription,
    Tracking,
    TrackingRecorder,
    WaitInterruptedError,
    new_tracking,
)
from eventsourcing.utils import Environment, get_topic

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "ApplicationSubscription",
    "BaseProjectionRunner",
    "DCBApplicationSubscription",
    "EventSourcedProjection",
    "EventSourcedProjectionRunner",
    "Projection",
    "ProjectionRunner",
    "TApplication",
    "TTrackingRecorder",
]

TTrackingRecorder = TypeVar("TTrackingRecorder", bound=TrackingRecorder)
# A runner follows an application, or a DCB application.
TApplication = TypeVar("TApplication", bound="Application[Any] | DCBApplication")
TEventSourcedProjection = TypeVar("TEventSourcedProjection", bound="EventSourcedProjection[Any]")

TPair = TypeVar("TPair")
TWrapped = TypeVar("TWrapped", bound="_WrappedSubscription[Any]")
TRunner = TypeVar("TRunner", bound="BaseProjectionRunner[Any]")

# How many events a projection that takes batches gets at most at once.
DEFAULT_BATCH_SIZE = 500


def topic_names(topics: Sequence[Any]) -> tuple[str, ...]:
    """Topics given as strings or as event classes, as strings."""
    return tuple(t if isinstance(t, str) else get_topic(t) for t in topics)


class _WrappedSubscription(Iterator[TPair]):
    """What the application subscriptions share: a store's subscription
    (``self.subscription``) that ``stop()`` and the context manager pass on to."""

    subscription: Subscription | DCBSubscription[Any]

    def __iter__(self: TWrapped) -> TWrapped:
        return self

    def stop(self) -> None:
        self.subscription.stop()

    def __enter__(self: TWrapped) -> TWrapped:
        self.subscription.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.subscription.__exit__(exc_type, exc_val, exc_tb)


class ApplicationSubscription(_WrappedSubscription[tuple[Any, Tracking]]):
    """An application's domain events after position ``gt`` (of ``topics``, if
    given), each with its tracking record, read back through the application's
    mapper (so decrypted, decompressed and upcast). Blocks when it has returned
    all there is; a context manager, and ``stop()`` ends it.
    """

    def __init__(self, app: Application[Any], gt: int | None = None, topics: Sequence[Any] = ()):
        self.name = app.name
        self.mapper = app.mapper
        self.subscription: Subscription = app.recorder.subscribe(gt=gt, topics=topic_names(topics))

    def __next__(self) -> tuple[Any, Tracking]:
        notification = next(self.subscription)
        tracking = new_tracking(self.name, notification.id, None)
        return self.mapper.to_domain_event(notification), tracking

    def next_batch(self, limit: int | None = None) -> list[tuple[Any, Tracking]]:
        """The next events available (at least one, at most ``limit``), waiting for
        one if there are none; ``[]`` once stopped."""
        to_domain_event = self.mapper.to_domain_event
        name = self.name
        return [
            (to_domain_event(n), new_tracking(name, n.id, None))
            for n in self.subscription.next_batch(limit)
        ]


class DCBApplicationSubscription(_WrappedSubscription[tuple[Tagged[Any], Tracking]]):
    """A DCB application's tagged decisions after position ``gt`` (of ``topics``,
    decision classes or their topics, if given), each with a tracking record of its
    position, read back through the application's mapper. Blocks when it has
    returned all there is; a context manager, and ``stop()`` ends it.
    """

    def __init__(self, app: DCBApplication, gt: int | None = None, topics: Sequence[Any] = ()):
        if not isinstance(app, DCBApplication):
            raise TypeError(f"DCBApplicationSubscription follows a DCBApplication, not {app!r}")
        self.name = app.name
        self.mapper = app.mapper  # (an AttributeError that says why, without MAPPER_TOPIC)
        self.recorder = app.recorder
        types = list(topic_names(topics))
        query = DCBQuery(items=[DCBQueryItem(types=types)] if types else [])
        self.subscription: DCBSubscription[Any] = self.recorder.subscribe(query=query, after=gt)

    def __next__(self) -> tuple[Tagged[Any], Tracking]:
        return self._decision_and_tracking(next(self.subscription))

    def next_batch(self, limit: int | None = None) -> list[tuple[Tagged[Any], Tracking]]:
        """The next decisions available (at least one, at most ``limit``), waiting for
        one if there are none; ``[]`` once stopped."""
        next_batch = getattr(self.subscription, "next_batch", None)
        if next_batch is not None:
            return [self._decision_and_tracking(e) for e in next_batch(limit)]
        # (A subscription that cannot tell what it holds: one decision at a time.)
        try:
            return [next(self)]
        except StopIteration:
            return []

    def _decision_and_tracking(self, sequenced: DCBSequencedEvent) -> tuple[Tagged[Any], Tracking]:
        tracking = new_tracking(self.name, sequenced.position, None)
        return self.mapper.to_domain_event(sequenced.event), tracking


class Projection(ABC, Generic[TTrackingRecorder]):
    """Processes an application's events into a materialised view (``view``).

    ``name`` (the class name unless given) prefixes the settings of the view
    (``<NAME>_PERSISTENCE_MODULE``...) and names its tracking table; ``topics``,
    if given, are the only events it is sent (filtered in the database).
    """

    name: str = ""
    topics: Sequence[Any] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def __init__(self, view: TTrackingRecorder):
        self._view = view

    @property
    def view(self) -> TTrackingRecorder:
        """The materialised view this projection writes to."""
        return self._view

    @abstractmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Change the view for ``domain_event``, recording ``tracking`` with the change
        (``self.view.insert_tracking(tracking)`` for an event that changes nothing)."""


class EventSourcedProjection(Application[TAggregateID], ABC):
    """An application whose ``policy`` processes another application's events into
    new events of its own, recorded atomically with their tracking record."""

    topics: Sequence[Any] = ()

    def __init__(self, env: Mapping[str, str] | None = None):
        super().__init__(env)
        self.recorder: ProcessRecorder
        self.processing_lock = threading.Lock()

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Call ``policy`` with the event and a processing event carrying ``tracking``,
        then record what the policy collected, with ``tracking``, in one write."""
        processing_event: ProcessingEvent[TAggregateID] = ProcessingEvent(tracking=tracking)
        with self.processing_lock:
            self.policy(domain_event, processing_event)
            recordings = self._record(processing_event)
            self._take_snapshots(processing_event)
        self.notify(processing_event.events)
        self._notify(recordings)

    @abstractmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[TAggregateID]) -> None:
        """Collect new events on ``processing_event`` (``collect_events``), never save."""


def _merged_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The process's environment, overridden by ``env``."""
    merged = dict(os.environ)
    if env is not None:
        merged.update(env)
    return merged


class _Processor:
    """What a runner feeds: one event at a time, or batches where it can take them."""

    def __init__(self, projection: Any, batch_size: int):
        self.process_event: Callable[[Any, Tracking], None] = projection.process_event
        self.process_events: Callable[[list[tuple[Any, Tracking]]], None] | None = getattr(
            projection, "process_events", None
        )
        self.batch_size = batch_size

    def run(self, subscription: ApplicationSubscription | DCBApplicationSubscription) -> None:
        if self.process_events is not None:
            while batch := subscription.next_batch(self.batch_size):
                self.process_events(batch)
        else:
            for domain_event, tracking in subscription:
                self.process_event(domain_event, tracking)


class BaseProjectionRunner(Generic[TApplication]):
    """Subscribes to an application from a tracking recorder's position, and feeds a
    projection in a thread; ``run_forever`` and ``wait`` re-raise its errors."""

    batch_size = DEFAULT_BATCH_SIZE

    def __init__(
        self,
        *,
        projection: Any,
        application_class: type[TApplication],
        tracking_recorder: TrackingRecorder,
        topics: Sequence[Any],
        env: Mapping[str, str] | None = None,
    ):
        self._projection = projection
        self._tracking_recorder = tracking_recorder
        self._is_interrupted = threading.Event()
        self._has_called_stop = False
        self._thread_error: BaseException | None = None
        self.app: TApplication = application_class(env)
        self.app_name = self.app.name
        try:
            self._subscription = self.subscribe(
                self.app, gt=tracking_recorder.max_tracking_id(self.app_name), topics=topics
            )
        except BaseException:
            self.app.close()  # (its connections are the runner's, which is not made)
            raise
        self._processing_thread = threading.Thread(
            target=_process_events,
            args=(
                _Processor(projection, self.batch_size),
                self._subscription,
                self._is_interrupted,
                weakref.ref(self),
            ),
            name=f"projection-{getattr(projection, 'name', type(projection).__name__)}",
            daemon=True,
        )
        self._processing_thread.start()

    def subscribe(self, app: Any, gt: int | None, topics: Sequence[Any]) -> Any:
        """The subscription that feeds the projection: an ``ApplicationSubscription``,
        or a ``DCBApplicationSubscription`` for a ``DCBApplication`` (another kind of
        application needs another kind of subscription, with its ``next_batch(limit)``,
        ``stop()`` and iteration of ``(event, tracking)`` pairs)."""
        if isinstance(app, DCBApplication):
            return DCBApplicationSubscription(app, gt=gt, topics=topics)
        return ApplicationSubscription(app, gt=gt, topics=topics)

    @property
    def is_interrupted(self) -> threading.Event:
        """Set when the runner stops, or its projection fails."""
        return self._is_interrupted

    def stop(self) -> None:
        """Stop processing (the thread ends after the event in hand), and stop the
        view's listening for ``wait()`` (a later ``wait()`` listens again)."""
        self._has_called_stop = True
        self._is_interrupted.set()
        self._subscription.stop()
        self._stop_waiting_on_view()

    def _stop_waiting_on_view(self) -> None:
        close = getattr(self._tracking_recorder, "close", None)
        if close is not None:
            close()  # (a view's listener for wait(); its tables stay readable)

    def run_forever(self, timeout: float | None = None) -> None:
        """Block until ``timeout``, or until the runner stops; re-raise the error that
        stopped the projection, if one did."""
        if self._is_interrupted.wait(timeout=timeout):
            self._raise_thread_error()

    def wait(self, notification_id: int | None, timeout: float = 1.0) -> None:
        """Return once the view has processed ``notification_id`` of the application
        (at once, where the store tells commits); ``TimeoutError`` after ``timeout``;
        the projection's error if it failed."""
        try:
            self._tracking_recorder.wait(
                self.app_name, notification_id, timeout=timeout, interrupt=self._is_interrupted
            )
        except WaitInterruptedError:
            self._raise_thread_error()
            if self._has_called_stop:
                return
            raise

    def _raise_thread_error(self) -> None:
        error, self._thread_error = self._thread_error, None
        if error is not None:
            raise error

    def __enter__(self: TRunner) -> TRunner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
            self._processing_thread.join()
            self.app.close()
            self._stop_waiting_on_view()
            self._raise_thread_error()
        finally:
            self._close_own()

    def _close_own(self) -> None:
        """Close what a subclass made for itself (a view's store, a projection)."""

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:  # noqa: S110 (nothing to report to at collection time)
            pass


def _process_events(
    processor: _Processor,
    subscription: ApplicationSubscription | DCBApplicationSubscription,
    is_interrupted: threading.Event,
    runner: weakref.ReferenceType[BaseProjectionRunner[Any]],
) -> None:
    """The runner's thread (holding no strong reference to the runner, so that a runner
    dropped without being stopped is collected, and stops)."""
    try:
        processor.run(subscription)
    except BaseException as error:
        owner = runner()
        if owner is not None:
            owner._thread_error = error
    finally:
        is_interrupted.set()
        subscription.stop()


class ProjectionRunner(
    BaseProjectionRunner[TApplication], Generic[TApplication, TTrackingRecorder]
):
    """Runs ``projection_class`` over the events of ``application_class``, into a view
    of ``view_class`` made by the store that settings prefixed with the projection's
    name select (``<NAME>_PERSISTENCE_MODULE``, ``<NAME>_SQLITE_DBNAME``...)."""

    def __init__(
        self,
        *,
        application_class: type[TApplication],
        projection_class: type[Projection[TTrackingRecorder]],
        view_class: type[TTrackingRecorder],
        env: Mapping[str, str] | None = None,
    ):
        view_env = Environment(projection_class.name, _merged_env(env))
        self.view_factory = InfrastructureFactory.construct(view_env)
        self.view: TTrackingRecorder = cast(
            TTrackingRecorder, self.view_factory.tracking_recorder(view_class)
        )
        self.projection = projection_class(view=self.view)
        super().__init__(
            projection=self.projection,
            application_class=application_class,
            tracking_recorder=self.view,
            topics=self.projection.topics,
            env=env,
        )

    def _close_own(self) -> None:
        # The view's connections (a pool of them on PostgreSQL) are the runner's.
        self.view_factory.close()


class EventSourcedProjectionRunner(
    BaseProjectionRunner[TApplication], Generic[TApplication, TEventSourcedProjection]
):
    """Runs an ``EventSourcedProjection`` (an application of its own) over the events
    of ``application_class``."""

    def __init__(
        self,
        *,
        application_class: type[TApplication],
        projection_class: type[TEventSourcedProjection],
        env: Mapping[str, str] | None = None,
    ):
        self.projection: TEventSourcedProjection = projection_class(env=_merged_env(env))
        super().__init__(
            projection=self.projection,
            application_class=application_class,
            tracking_recorder=self.projection.recorder,
            topics=self.projection.topics,
            env=env,
        )

    def _close_own(self) -> None:
        self.projection.close()
