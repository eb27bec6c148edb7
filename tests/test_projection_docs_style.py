"""User code shaped as the 9.x projection documentation shows it (our own words):
a view interface listed before the store's tracking recorder, a projection with
a singledispatchmethod and topics, run_forever stopped by a handler, and an
event-sourced projection parameterised by its id type, counting events by topic."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, DomainEventProtocol, event
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.projection import (
    ApplicationSubscription,
    EventSourcedProjection,
    EventSourcedProjectionRunner,
    Projection,
    ProjectionRunner,
)
from eventsourcing.utils import get_topic


class SeenEventsInterface(TrackingRecorder, ABC):
    @abstractmethod
    def saw(self, tracking: Tracking) -> None: ...

    @abstractmethod
    def seen(self) -> int: ...


class InMemorySeenEvents(SeenEventsInterface, POPOTrackingRecorder):
    def __init__(self) -> None:
        super().__init__()
        self._seen = 0

    def saw(self, tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            self._insert_tracking(tracking)
            self._seen += 1

    def seen(self) -> int:
        return self._seen


class SeeAggregateEvents(Projection["SeenEventsInterface"]):
    name = "seeing"
    topics = (get_topic(Aggregate.Created), get_topic(Aggregate.Event))

    @singledispatchmethod
    def process_event(self, domain_event: DomainEventProtocol[UUID], tracking: Tracking) -> None:
        pass

    @process_event.register
    def _(self, domain_event: Aggregate.Event, tracking: Tracking) -> None:
        self.view.saw(tracking)


def test_subscription_loop_as_documented() -> None:
    app = Application[UUID]()
    app.save(Aggregate())
    seen = []
    with ApplicationSubscription(app, gt=0, topics=()) as subscription:
        for domain_event, tracking in subscription:
            seen.append((type(domain_event), tracking.notification_id))
            subscription.stop()
    assert seen == [(Aggregate.Created, 1)]


def test_runner_as_documented_run_forever_until_stopped() -> None:
    with ProjectionRunner(
        application_class=Application,
        view_class=InMemorySeenEvents,
        projection_class=SeeAggregateEvents,
        env={},
    ) as projection_runner:
        aggregate = Aggregate()
        aggregate.trigger_event(Aggregate.Event)
        recordings = projection_runner.app.save(aggregate)
        projection_runner.wait(recordings[-1].notification.id)
        assert projection_runner.view.seen() == 2
        # (A signal handler would call stop(); a timer stands in for the signal.)
        threading.Timer(0.1, projection_runner.stop).start()
        projection_runner.run_forever()


class Counter(Aggregate):
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/counters/{name}")

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class Counters(EventSourcedProjection[UUID]):
    @singledispatchmethod
    def policy(
        self, domain_event: DomainEventProtocol[UUID], processing_event: ProcessingEvent[UUID]
    ) -> None:
        topic = get_topic(type(domain_event))
        try:
            counter: Counter = self.repository.get(Counter.create_id(topic))
        except AggregateNotFoundError:
            counter = Counter(topic)
        counter.increment()
        processing_event.collect_events(counter)

    def get_count(self, event_class: type) -> int:
        try:
            counter: Counter = self.repository.get(Counter.create_id(get_topic(event_class)))
        except AggregateNotFoundError:
            return 0
        return counter.count


def test_event_sourced_projection_as_documented() -> None:
    with EventSourcedProjectionRunner(
        application_class=Application,
        projection_class=Counters,
        env={
            "APPLICATION_PERSISTENCE_MODULE": "eventsourcing.popo",
            "COUNTERS_PERSISTENCE_MODULE": "eventsourcing.popo",
        },
    ) as runner:
        for expected in (1, 2):
            recordings = runner.app.save(Aggregate())
            runner.wait(recordings[-1].notification.id)
            assert runner.projection.get_count(Aggregate.Created) == expected
            assert runner.projection.get_count(Aggregate.Event) == 0
        aggregate = Aggregate()
        aggregate.trigger_event(Aggregate.Event)
        recordings = runner.app.save(aggregate)
        runner.wait(recordings[-1].notification.id)
        assert runner.projection.get_count(Aggregate.Created) == 3
        assert runner.projection.get_count(Aggregate.Event) == 1
