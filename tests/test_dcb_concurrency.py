"""DCB appends racing in threads: conditions hold on every store, and on PostgreSQL
writers on disjoint queries do not wait for each other."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventsourcing.dcb._common import DCBInfrastructureFactory
from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBRecorder,
)
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
