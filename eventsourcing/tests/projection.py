"""Projection test cases that extension projects subclass with their own view
classes (``construct_event_counters_view``, ``view_class``) and persistence
settings (``env``), and the example views and projections they run (the 9.x
``eventsourcing.tests.projection`` API)."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar
from unittest import TestCase
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.projection import (
    EventSourcedProjection,
    EventSourcedProjectionRunner,
    Projection,
    ProjectionRunner,
)
from eventsourcing.utils import get_topic

__all__ = [
    "AggregateEventCountersProjection",
    "AggregateEventCountersProjectionTestCase",
    "Counter",
    "Counters",
    "EventCountersInterface",
    "EventCountersView",
    "EventCountersViewTestCase",
    "EventSourcedProjectionTestCase",
    "SpannerThrown",
    "SpannerThrownError",
]


# -- an event-sourced projection: counts events by topic, in aggregates -------------


class Counter(Aggregate):
    """How many events of one topic a ``Counters`` projection has seen."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @classmethod
    def create_id(cls, name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/counters/{name}")

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class Counters(EventSourcedProjection[UUID]):
    """Counts the events it processes, one ``Counter`` per event topic."""

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        topic = get_topic(type(domain_event))
        try:
            counter: Counter = self.repository.get(Counter.create_id(topic))
        except AggregateNotFoundError:
            counter = Counter(topic)
        counter.increment()
        processing_event.collect_events(counter)

    def get_count(self, domain_event_class: type[Any]) -> int:
        topic = get_topic(domain_event_class)
        try:
            counter: Counter = self.repository.get(Counter.create_id(topic))
        except AggregateNotFoundError:
            return 0
        return counter.count


# -- a materialised view: counts "created" and subsequent events -------------------


class EventCountersView(TrackingRecorder):
    """A view that counts events: each increment is recorded with its tracking
    record, in one transaction (a tracking record seen before changes nothing)."""

    @abstractmethod
    def get_created_event_counter(self) -> int: ...

    @abstractmethod
    def get_subsequent_event_counter(self) -> int: ...

    @abstractmethod
    def incr_created_event_counter(self, tracking: Tracking) -> None: ...

    @abstractmethod
    def incr_subsequent_event_counter(self, tracking: Tracking) -> None: ...


class EventCountersInterface(EventCountersView, ABC):
    """The older name of ``EventCountersView`` (deprecated in 9.x)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        warnings.warn(
            "EventCountersInterface is deprecated, use EventCountersView instead",
            DeprecationWarning,
            stacklevel=2,
        )


class SpannerThrown(Aggregate.Event):
    """An event the example projections fail on."""


class SpannerThrownError(Exception):
    """What the example projections raise for a ``SpannerThrown`` event."""


class AggregateEventCountersProjection(Projection[EventCountersView]):
    """Counts aggregates' "created" and subsequent events into an ``EventCountersView``."""

    name = "eventcounters"
    topics: tuple[str, ...] = (
        get_topic(Aggregate.Created),
        get_topic(Aggregate.Event),
        get_topic(SpannerThrown),
    )

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def aggregate_created(self, _: Aggregate.Created, tracking: Tracking) -> None:
        self.view.incr_created_event_counter(tracking)

    @process_event.register
    def aggregate_event(self, _: Aggregate.Event, tracking: Tracking) -> None:
        self.view.incr_subsequent_event_counter(tracking)

    @process_event.register
    def spanner_thrown(self, _: SpannerThrown, __: Tracking) -> None:
        raise SpannerThrownError("A deliberate error, for the tests")


# -- the test cases ---------------------------------------------------------------


class EventCountersViewTestCase(TestCase):
    """A view's behaviour: override ``construct_event_counters_view`` (a new, empty view)."""

    def construct_event_counters_view(self) -> EventCountersView:
        raise NotImplementedError

    def test(self) -> None:
        view = self.construct_event_counters_view()
        self.assertIsInstance(view, TrackingRecorder)
        self.assertIsNone(view.max_tracking_id("upstream"))
        self.assertEqual((0, 0), self._counters(view))

        view.incr_created_event_counter(Tracking("upstream", 1))
        self.assertEqual((1, 0), self._counters(view))
        view.incr_subsequent_event_counter(Tracking("upstream", 2))
        self.assertEqual((1, 1), self._counters(view))
        view.incr_subsequent_event_counter(Tracking("upstream", 3))
        self.assertEqual((1, 2), self._counters(view))
        self.assertEqual(3, view.max_tracking_id("upstream"))

        # A position processed before is refused, and counts nothing (atomically).
        with self.assertRaises(IntegrityError):
            view.incr_created_event_counter(Tracking("upstream", 3))
        with self.assertRaises(IntegrityError):
            view.incr_subsequent_event_counter(Tracking("upstream", 3))
        self.assertEqual((1, 2), self._counters(view))

        # Waiting for a processed position returns; for a later one, times out.
        view.wait("upstream", 3)
        with self.assertRaises(TimeoutError):
            view.wait("upstream", 4, timeout=0.5)

    @staticmethod
    def _counters(view: EventCountersView) -> tuple[int, int]:
        return view.get_created_event_counter(), view.get_subsequent_event_counter()


class AggregateEventCountersProjectionTestCase(TestCase, ABC):
    """A view run by a ``ProjectionRunner``: set ``view_class``, and ``env`` (the
    settings of the application and of the view)."""

    view_class: type[EventCountersView]
    env: ClassVar[dict[str, str]] = {}

    def _runner(self) -> ProjectionRunner[Application[UUID], EventCountersView]:
        return ProjectionRunner(
            application_class=Application[UUID],
            projection_class=AggregateEventCountersProjection,
            view_class=self.view_class,
            env=self.env,
        )

    def test_event_counters_projection(self) -> None:
        with self._runner() as runner:
            app, view = runner.app, runner.projection.view
            for created, subsequent in ((1, 2), (2, 4)):
                aggregate = Aggregate()
                aggregate.trigger_event(Aggregate.Event)
                aggregate.trigger_event(Aggregate.Event)
                recordings = app.save(aggregate)
                view.wait(app.name, recordings[-1].notification.id)
                self.assertEqual(created, view.get_created_event_counter())
                self.assertEqual(subsequent, view.get_subsequent_event_counter())

    def test_run_forever_raises_projection_error(self) -> None:
        with self._runner() as runner:
            app, view = runner.app, runner.projection.view
            aggregate = Aggregate()
            aggregate.trigger_event(SpannerThrown)
            recordings = app.save(aggregate)

            # The projection's error stops the runner, and reaches run_forever.
            with self.assertRaises(SpannerThrownError):
                runner.run_forever(timeout=5)

            # The failing event was not recorded as processed.
            with self.assertRaises(TimeoutError):
                view.wait(app.name, recordings[-1].notification.id)


class EventSourcedProjectionTestCase(TestCase):
    """``Counters`` run by an ``EventSourcedProjectionRunner``: set ``env``."""

    env: ClassVar[dict[str, str]] = {}

    def test_event_sourced_projection(self) -> None:
        with EventSourcedProjectionRunner(
            application_class=Application, projection_class=Counters, env=self.env
        ) as runner:
            for created in (1, 2, 3):
                recordings = runner.app.save(Aggregate())
                runner.wait(recordings[-1].notification.id)
                self.assertEqual(created, runner.projection.get_count(Aggregate.Created))
                self.assertEqual(0, runner.projection.get_count(Aggregate.Event))

            aggregate = Aggregate()
            aggregate.trigger_event(Aggregate.Event)
            recordings = runner.app.save(aggregate)
            runner.wait(recordings[-1].notification.id)
            self.assertEqual(4, runner.projection.get_count(Aggregate.Created))
            self.assertEqual(1, runner.projection.get_count(Aggregate.Event))


# The DCB examples need the msgpack package (as eventsourcing.dcb.msgpack does).
try:
    from eventsourcing.tests._dcb_counters import (
        DCBSpannerThrown,
        TaggedDecisionCountersProjection,
        TaggedDecisionCountersProjectionTestCase,
        Thing,
    )
except ImportError:  # pragma: no cover
    pass
else:
    __all__ += [
        "DCBSpannerThrown",
        "TaggedDecisionCountersProjection",
        "TaggedDecisionCountersProjectionTestCase",
        "Thing",
    ]
