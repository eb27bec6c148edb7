"""Projections of DCB applications on every store: DCBApplicationSubscription (tagged
decisions with tracking records of their positions) and a ProjectionRunner keeping
the students of each course of the course-booking application in a view, exactly
once, with wait() for read-your-writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from eventsourcing.application import Application
from eventsourcing.dcb.api import DCBSequencedEvent, DCBSubscription
from eventsourcing.dcb.application import DCBApplication
from eventsourcing.dcb.domain import Tagged
from eventsourcing.projection import DCBApplicationSubscription, ProjectionRunner
from eventsourcing.utils import get_topic
from tests.dcb_course_views import (
    VIEWS,
    Course,
    CourseBooking,
    JoinedInBatches,
    Student,
    StudentJoinedCourse,
    StudentsPerCourse,
    StudentsPerCourseProjection,
)

WAIT = 30.0  # seconds (generous: the machine is shared)


@pytest.fixture
def app(persistence_env: dict[str, str]) -> Iterator[CourseBooking]:
    with CourseBooking(env=persistence_env) as app:
        yield app


def stop_after(subscription: DCBApplicationSubscription, count: int) -> list[tuple]:
    """The first ``count`` items of the subscription, then stop it."""
    items = []
    for item in subscription:
        items.append(item)
        if len(items) == count:
            subscription.stop()
    return items


def test_subscription_gives_tagged_decisions_with_their_positions(app: CourseBooking) -> None:
    sara = app.register_student("Sara")
    maths, registered_at = app.register_course("Maths")
    joined_at = app.join_course(sara, maths)

    with DCBApplicationSubscription(app, gt=None) as subscription:
        items = stop_after(subscription, 3)
    assert [type(tagged) for tagged, _ in items] == [Tagged] * 3
    assert [type(tagged.decision) for tagged, _ in items] == [
        Student.Registered,
        Course.Registered,
        StudentJoinedCourse,
    ]
    assert items[2][0].tags == [sara, maths]
    assert [t.application_name for _, t in items] == ["CourseBooking"] * 3
    assert [t.notification_id for _, t in items] == [registered_at - 1, registered_at, joined_at]

    # After a position, and only the decisions of the topics asked for (classes or topics).
    for topics in [(StudentJoinedCourse,), (get_topic(StudentJoinedCourse),)]:
        with DCBApplicationSubscription(app, gt=1, topics=topics) as subscription:
            [(tagged, tracking)] = stop_after(subscription, 1)
        assert (type(tagged.decision), tracking.notification_id) == (StudentJoinedCourse, joined_at)


def test_subscription_waits_for_new_decisions_until_stopped(app: CourseBooking) -> None:
    subscription = DCBApplicationSubscription(app, topics=[Course.Registered])
    received: list[int] = []

    def consume() -> None:
        for _, tracking in subscription:
            received.append(tracking.notification_id)

    consumer = threading.Thread(target=consume)
    consumer.start()
    app.register_student("Sara")  # (not of its topics)
    _, position = app.register_course("Maths")
    try:
        for _ in range(int(WAIT / 0.01)):
            if received:
                break
            threading.Event().wait(0.01)
        assert received == [position]
    finally:
        subscription.stop()
        consumer.join(WAIT)
    assert not consumer.is_alive()


def test_subscription_gives_what_is_recorded_in_batches(app: CourseBooking) -> None:
    maths, _ = app.register_course("Maths")
    students = [app.register_student(f"S{i}") for i in range(5)]
    with DCBApplicationSubscription(app, gt=1) as subscription:
        first = subscription.next_batch(3)
        rest = subscription.next_batch()
        subscription.stop()
        assert subscription.next_batch() == []
    assert [t.notification_id for _, t in first + rest] == [2, 3, 4, 5, 6]
    assert [tagged.decision.student_id for tagged, _ in first + rest] == students


class OneAtATime(DCBSubscription[Any]):
    """A recorder's subscription that only iterates (no batches)."""

    def __init__(self, inner: DCBSubscription[Any]) -> None:
        super().__init__(recorder=None)
        self.inner = inner

    def __next__(self) -> DCBSequencedEvent:
        return next(self.inner)

    def stop(self) -> None:
        self.inner.stop()


def test_subscription_without_batches_gives_one_decision_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with CourseBooking() as app:
        subscribe = app.recorder.subscribe
        monkeypatch.setattr(app.recorder, "subscribe", lambda **kw: OneAtATime(subscribe(**kw)))
        app.register_student("Sara")
        app.register_student("Bob")
        subscription = DCBApplicationSubscription(app)
        assert [t.notification_id for _, t in subscription.next_batch(10)] == [1]
        assert [t.notification_id for _, t in subscription.next_batch(10)] == [2]
        subscription.stop()
        assert subscription.next_batch(10) == []


def test_subscription_refuses_what_is_not_a_dcb_application_with_a_mapper() -> None:
    with Application() as not_dcb, pytest.raises(TypeError, match="follows a DCBApplication"):
        DCBApplicationSubscription(not_dcb)  # type: ignore[arg-type]
    with DCBApplication() as no_mapper, pytest.raises(AttributeError, match="MAPPER_TOPIC"):
        DCBApplicationSubscription(no_mapper)


class NoMapper(DCBApplication):
    closed: list[DCBApplication] = []

    def close(self) -> None:
        type(self).closed.append(self)
        super().close()


def test_runner_says_a_dcb_application_needs_a_mapper_and_closes_it() -> None:
    with pytest.raises(AttributeError, match="MAPPER_TOPIC"):
        ProjectionRunner(
            application_class=NoMapper,
            projection_class=StudentsPerCourseProjection,
            view_class=VIEWS["eventsourcing.popo"],
        )
    assert len(NoMapper.closed) == 1


def runner_of(
    projection_class: type[StudentsPerCourseProjection] | type[JoinedInBatches],
    env: dict[str, str],
) -> ProjectionRunner[CourseBooking, StudentsPerCourse]:
    return ProjectionRunner(
        application_class=CourseBooking,
        projection_class=projection_class,
        view_class=VIEWS[env["PERSISTENCE_MODULE"]],
        env=env,
    )


def test_runner_keeps_the_students_of_each_course_read_your_writes(
    persistence_env: dict[str, str],
) -> None:
    with runner_of(StudentsPerCourseProjection, persistence_env) as runner:
        app = runner.app
        maths, position = app.register_course("Maths", max_students=2)
        runner.wait(position, timeout=WAIT)
        assert runner.view.course_name(maths) == "Maths"
        assert runner.view.students_of(maths) == []

        sara, bob = app.register_student("Sara"), app.register_student("Bob")
        runner.wait(app.join_course(sara, maths), timeout=WAIT)
        assert runner.view.students_of(maths) == [sara]
        runner.wait(app.join_course(bob, maths), timeout=WAIT)
        assert runner.view.students_of(maths) == [sara, bob]
        assert runner.view.max_tracking_id("CourseBooking") == app.recorder.read().head


def test_runner_resumes_from_the_view_each_decision_once(
    persistence_env: dict[str, str],
) -> None:
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        pytest.skip("an in-memory store ends with its application")
    with CourseBooking(env=persistence_env) as app:
        maths, _ = app.register_course("Maths")
        first = [app.register_student(f"S{i}") for i in range(3)]
        last = max(app.join_course(s, maths) for s in first)
    with runner_of(StudentsPerCourseProjection, persistence_env) as runner:
        runner.wait(last, timeout=WAIT)
        assert runner.view.students_of(maths) == first
    # Decisions made while no runner runs; the next one takes up where the view is.
    with CourseBooking(env=persistence_env) as app:
        later = [app.register_student(f"T{i}") for i in range(2)]
        last = max(app.join_course(s, maths) for s in later)
    with runner_of(StudentsPerCourseProjection, persistence_env) as runner:
        runner.wait(last, timeout=WAIT)
        assert runner.view.students_of(maths) == first + later
        assert runner.view.max_tracking_id("CourseBooking") == last


def test_runner_feeds_a_projection_that_takes_batches_only_its_topics(
    persistence_env: dict[str, str],
) -> None:
    JoinedInBatches.batch_sizes = []
    with runner_of(JoinedInBatches, persistence_env) as runner:
        app = runner.app
        maths, _ = app.register_course("Maths")
        students = [app.register_student(f"S{i}") for i in range(20)]
        last = 0
        for student in students:
            last = app.join_course(student, maths)
        runner.wait(last, timeout=WAIT)
        assert runner.view.students_of(maths) == students
        assert runner.view.course_name(maths) is None  # (not one of its topics)
    assert sum(JoinedInBatches.batch_sizes) == len(students)


def test_runner_catches_up_in_batches(persistence_env: dict[str, str]) -> None:
    if persistence_env["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        pytest.skip("an in-memory store ends with its application")
    with CourseBooking(env=persistence_env) as app:
        maths, _ = app.register_course("Maths", max_students=100)
        students = [app.register_student(f"S{i}") for i in range(50)]
        last = max(app.join_course(s, maths) for s in students)
    JoinedInBatches.batch_sizes = []
    with runner_of(JoinedInBatches, persistence_env) as runner:
        runner.wait(last, timeout=WAIT)
        assert runner.view.students_of(maths) == students
    assert sum(JoinedInBatches.batch_sizes) == len(students)
    assert len(JoinedInBatches.batch_sizes) < len(students)  # (recorded before it ran)
