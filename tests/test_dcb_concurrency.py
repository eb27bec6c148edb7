"""DCB appends racing in threads: conditions hold on every store, and on PostgreSQL
writers on disjoint queries do not wait for each other."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from eventsourcing.dcb._common import DCBInfrastructureFactory
from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBRecorder,
)
from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import Environment
from tests.conftest import _fresh_postgres_database, _postgres_settings_as_env

THREADS = 8


@pytest.fixture(params=["popo", "sqlite", "postgres"])
def recorder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DCBRecorder]:
    """A DCB recorder of one store, set up for speed rather than durability."""
    if request.param == "popo":
        yield from _recorder({"PERSISTENCE_MODULE": "eventsourcing.dcb.popo"})
    elif request.param == "sqlite":
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.dcb.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "dcb.sqlite"),
            "SQLITE_SYNCHRONOUS": "NORMAL",
            "SQLITE_LOCK_TIMEOUT": "60",
        }
        yield from _recorder(env)
    else:
        with _fresh_postgres_database() as settings:
            env = dict(
                _postgres_settings_as_env(settings),
                PERSISTENCE_MODULE="eventsourcing.dcb.postgres_tt",
                POSTGRES_SYNCHRONOUS_COMMIT="off",
                POSTGRES_POOL_SIZE=str(THREADS + 2),
            )
            yield from _recorder(env)


def _recorder(env: dict[str, str]) -> Iterator[DCBRecorder]:
    factory = DCBInfrastructureFactory.construct(Environment("", env))
    try:
        yield factory.dcb_recorder()
    finally:
        factory.close()


def _run_in_threads(target: object, count: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as error:  # reported by the test
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_writers_racing_on_one_query_exactly_one_succeeds(recorder: DCBRecorder) -> None:
    recorder.append([DCBEvent("Opened", b"", ["theatre"])])
    for round_ in range(5):
        outcomes = _race_for_the_seat(recorder, f"round-{round_}")
        assert sorted(outcomes) == ["refused"] * (THREADS - 1) + ["taken"]
        taken = list(recorder.read(DCBQuery([DCBQueryItem(tags=[f"round-{round_}"])])))
        assert len(taken) == 1


def _race_for_the_seat(recorder: DCBRecorder, round_tag: str) -> list[str]:
    """Writers that all read the same head try to take the seat at the same time."""
    seat = DCBQuery([DCBQueryItem(types=["SeatTaken"], tags=["seat-1"])])
    head = recorder.read(seat).head
    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []

    def take_seat() -> None:
        barrier.wait()
        event = DCBEvent("SeatTaken", b"", ["seat-1", round_tag])
        try:
            recorder.append([event], DCBAppendCondition(seat, after=head))
        except IntegrityError:
            outcomes.append("refused")
        else:
            outcomes.append("taken")

    assert _run_in_threads(take_seat) == []
    return outcomes


class CourseBooking:
    """Students join courses; a course takes at most ``capacity`` students, a student
    at most ``per_student`` courses, each course once. The decision is checked by
    the append condition: nothing about either has been recorded since it was read."""

    def __init__(self, recorder: DCBRecorder, capacity: int, per_student: int) -> None:
        self.recorder = recorder
        self.capacity = capacity
        self.per_student = per_student

    def join(self, student: str, course: str) -> str:
        query = DCBQuery(
            [
                DCBQueryItem(types=["Joined"], tags=[course]),
                DCBQueryItem(types=["Joined"], tags=[student]),
            ]
        )
        response = self.recorder.read(query)
        events = [e.event for e in response]
        in_course = sum(course in e.tags for e in events)
        of_student = sum(student in e.tags for e in events)
        if any(course in e.tags and student in e.tags for e in events):
            return "already joined"
        if in_course >= self.capacity:
            return "course full"
        if of_student >= self.per_student:
            return "student at limit"
        joined = DCBEvent("Joined", f"{student} {course}".encode(), [course, student])
        try:
            self.recorder.append([joined], DCBAppendCondition(query, after=response.head))
        except IntegrityError:
            return "conflict"
        return "joined"


# More places wanted (students x courses each) than there are (courses x capacity).
COURSES, CAPACITY = 40, 30
STUDENTS, PER_STUDENT = 400, 4


def test_course_booking_invariants_hold_with_8_threads(recorder: DCBRecorder) -> None:
    courses = [f"course-{i}" for i in range(COURSES)]
    students = [f"student-{i}" for i in range(STUDENTS)]
    booking = CourseBooking(recorder, CAPACITY, PER_STUDENT)
    attempts_per_thread = 10_000 // THREADS
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def book() -> None:
        rng = random.Random()
        for _ in range(attempts_per_thread):
            outcome = booking.join(rng.choice(students), rng.choice(courses))
            with lock:
                outcomes[outcome] += 1

    assert _run_in_threads(book) == []
    assert sum(outcomes.values()) == THREADS * attempts_per_thread

    joins = [tuple(e.event.tags) for e in recorder.read(DCBQuery([DCBQueryItem(["Joined"])]))]
    assert len(joins) == outcomes["joined"]
    assert len(set(joins)) == len(joins), "a student joined a course twice"
    per_course = Counter(course for course, _ in joins)
    per_student = Counter(student for _, student in joins)
    assert max(per_course.values()) <= CAPACITY, per_course
    assert max(per_student.values()) <= PER_STUDENT, per_student
    # The limits were reached, not just respected.
    assert max(per_course.values()) == CAPACITY
    assert max(per_student.values()) == PER_STUDENT


@pytest.fixture
def postgres_recorder(postgres_env: dict[str, str]) -> Iterator[PostgresDCBRecorderTT]:
    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.dcb.postgres_tt")
    for recorder in _recorder(env):
        assert isinstance(recorder, PostgresDCBRecorderTT)
        yield recorder


class _Append(threading.Thread):
    def __init__(self, recorder: DCBRecorder, tags: list[str], query: DCBQuery | None) -> None:
        super().__init__(daemon=True)
        self.recorder, self.tags, self.query = recorder, tags, query
        self.done = threading.Event()
        self.refused = False
        self.start()

    def run(self) -> None:
        condition = None if self.query is None else DCBAppendCondition(self.query)
        try:
            self.recorder.append([DCBEvent("Joined", b"", self.tags)], condition)
        except IntegrityError:
            self.refused = True
        self.done.set()


def test_postgres_writers_on_disjoint_queries_do_not_wait_for_each_other(
    postgres_recorder: PostgresDCBRecorderTT,
) -> None:
    recorder = postgres_recorder
    course_1 = DCBQuery([DCBQueryItem(types=["Joined"], tags=["course-1"])])
    course_2 = DCBQuery([DCBQueryItem(types=["Joined"], tags=["course-2"])])
    keys, exclusive = recorder._lock_keys([], course_1.items)
    checking_course_1 = keys[exclusive.index(True)]

    # Another writer, checking its condition on course-1, holds that query's lock.
    with psycopg.connect(**recorder.datastore.connect_kwargs()) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", (checking_course_1,))

        disjoint = _Append(recorder, ["course-2", "student-2"], course_2)
        assert disjoint.done.wait(timeout=30), "a writer on a disjoint query waited"
        overlapping = _Append(recorder, ["course-1", "student-1"], course_1)
        unconditional = _Append(recorder, ["course-1", "student-3"], None)
        assert not overlapping.done.wait(timeout=1.0)
        assert not unconditional.done.wait(timeout=0.1)
    # The other writer has finished: those waiting go ahead.
    assert overlapping.done.wait(timeout=30)
    assert unconditional.done.wait(timeout=30)
    # (The conditional one is refused if the unconditional one went first.)
    expected = [["course-2", "student-2"], ["course-1", "student-1"], ["course-1", "student-3"]]
    if overlapping.refused:
        expected.remove(["course-1", "student-1"])
    assert not disjoint.refused and not unconditional.refused
    assert sorted(e.event.tags for e in recorder.read()) == sorted(expected)


def test_a_subscription_misses_no_event_appended_by_racing_writers(
    recorder: DCBRecorder,
) -> None:
    """Positions become visible in order: a subscriber reading on from the last one
    it saw never skips one committed later."""
    per_thread = 60
    received: list[int] = []
    with recorder.subscribe() as subscription:

        def receive() -> None:
            for event in subscription:
                received.append(event.position)
                if len(received) == THREADS * per_thread:
                    return

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()

        def append() -> None:
            for i in range(per_thread):
                tag = f"writer-{threading.get_ident()}"
                recorder.append([DCBEvent("Noted", b"", [tag, f"n-{i}"])])

        assert _run_in_threads(append) == []
        receiver.join(timeout=60)
    assert len(received) == THREADS * per_thread, "the subscription missed events"
    assert received == sorted(set(received))
    assert received == [e.position for e in recorder.read()]
