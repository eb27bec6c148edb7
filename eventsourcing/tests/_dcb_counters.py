"""The DCB examples of ``eventsourcing.tests.projection`` (apart: they need msgpack)."""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar
from unittest import TestCase

from eventsourcing.dcb.application import DCBApplication
from eventsourcing.dcb.domain import EnduringObject, Tagged
from eventsourcing.dcb.msgpack import Decision, InitialDecision
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.tests.projection import EventCountersView, SpannerThrownError
from eventsourcing.utils import get_topic


class DCBSpannerThrown(Decision):
    """A decision the example DCB projection fails on."""

    a: str  # (a decision with no field at all is best avoided with msgspec/3.13)


class Thing(EnduringObject[Decision, str]):
    """An enduring object that makes decisions for the DCB projection tests."""

    class Created(InitialDecision):
        thing_id: str


class TaggedDecisionCountersProjection(Projection[EventCountersView]):
    """Counts initial and subsequent decisions into an ``EventCountersView``."""

    name = "eventcounters"
    topics: tuple[str, ...] = (
        get_topic(Thing.Created),
        get_topic(Decision),
        get_topic(DCBSpannerThrown),
    )

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        tagged: Tagged[Decision] = domain_event
        self.process_decision(tagged.decision, tracking)

    @singledispatchmethod
    def process_decision(self, decision: Decision, tracking: Tracking) -> None:
        self.view.incr_subsequent_event_counter(tracking)

    @process_decision.register
    def initial(self, _: InitialDecision, tracking: Tracking) -> None:
        self.view.incr_created_event_counter(tracking)

    @process_decision.register
    def spanner_thrown(self, _: DCBSpannerThrown, __: Tracking) -> None:
        raise SpannerThrownError("A deliberate error, for the tests")


class TaggedDecisionCountersProjectionTestCase(TestCase, ABC):
    """A view run over a ``DCBApplication``: set ``view_class``, and ``env`` (with
    ``MAPPER_TOPIC``, as a DCB application needs)."""

    view_class: type[EventCountersView]
    env: ClassVar[dict[str, str]]

    def _runner(self) -> ProjectionRunner[DCBApplication, EventCountersView]:
        return ProjectionRunner(
            application_class=DCBApplication,
            projection_class=TaggedDecisionCountersProjection,
            view_class=self.view_class,
            env=self.env,
        )

    def test_event_counters_projection(self) -> None:
        with self._runner() as runner:
            app, view = runner.app, runner.projection.view
            for created, subsequent in ((1, 2), (2, 4)):
                thing = Thing()
                thing.trigger_event(Decision)
                thing.trigger_event(Decision)
                self.assertEqual(3, len(thing.new_decisions))
                position = app.repository.save(thing)
                view.wait(app.name, position)
                self.assertEqual(created, view.get_created_event_counter())
                self.assertEqual(subsequent, view.get_subsequent_event_counter())

    def test_run_forever_raises_projection_error(self) -> None:
        with self._runner() as runner:
            app, view = runner.app, runner.projection.view
            thing = Thing()
            thing.trigger_event(DCBSpannerThrown, a="")
            position = app.repository.save(thing)

            with self.assertRaises(SpannerThrownError):
                runner.run_forever(timeout=5)
            with self.assertRaises(TimeoutError):
                view.wait(app.name, position)
