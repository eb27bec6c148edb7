"""Course booking on a DCB recorder, for the tests of appends that commit in parallel:
writers in threads here and in processes (run as a script: it books in a table given
as JSON settings and prints what it recorded).

A course takes at most ``CAPACITY`` students, a student at most ``PER_STUDENT``
courses. Shared courses and students are contended by every writer (overlapping
conditions); each writer also books a course of its own for students of its own
(disjoint conditions).
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from collections.abc import Iterable

from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBQueryItem,
    DCBRecorder,
)
from eventsourcing.persistence import IntegrityError

CAPACITY, PER_STUDENT = 6, 2
SHARED_COURSES = [f"course-{i}" for i in range(4)]
SHARED_STUDENTS = [f"student-{i}" for i in range(12)]


def join(recorder: DCBRecorder, student: str, course: str) -> str:
    """Read what is recorded of the course and the student, decide, append."""
    query = DCBQuery(
        [
            DCBQueryItem(types=["Joined"], tags=[course]),
            DCBQueryItem(types=["Joined"], tags=[student]),
        ]
    )
    response = recorder.read(query)
    events = [e.event for e in response]
    if any(course in e.tags and student in e.tags for e in events):
        return "already joined"
    if sum(course in e.tags for e in events) >= CAPACITY:
        return "course full"
    if sum(student in e.tags for e in events) >= PER_STUDENT:
        return "student at limit"
    joined = DCBEvent("Joined", f"{student} {course}".encode(), [course, student])
    try:
        recorder.append([joined], DCBAppendCondition(query, after=response.head))
    except IntegrityError:
        return "conflict"
    return "joined"


def book(recorder: DCBRecorder, writer: str, attempts: int, seed: int) -> Counter[str]:
    """``attempts`` joins: mostly shared courses and students, some of the writer's own."""
    rng = random.Random(seed)
    own_course = f"own-course-{writer}"
    own_students = [f"own-student-{writer}-{i}" for i in range(CAPACITY + 2)]
    outcomes: Counter[str] = Counter()
    for _ in range(attempts):
        if rng.random() < 0.25:
            outcome = join(recorder, rng.choice(own_students), own_course)
        else:
            outcome = join(recorder, rng.choice(SHARED_STUDENTS), rng.choice(SHARED_COURSES))
        outcomes[outcome] += 1
    return outcomes


def check_invariants(joins: Iterable[tuple[str, str]]) -> tuple[Counter[str], Counter[str]]:
    """The (course, student) pairs recorded keep the rules; the counts per course and
    per student."""
    joins = list(joins)
    assert len(set(joins)) == len(joins), "a student joined a course twice"
    per_course = Counter(course for course, _ in joins)
    per_student = Counter(student for _, student in joins)
    assert max(per_course.values()) <= CAPACITY, f"a course over capacity: {per_course}"
    assert max(per_student.values()) <= PER_STUDENT, f"a student over the limit: {per_student}"
    return per_course, per_student


def main() -> None:
    from eventsourcing.dcb._common import DCBInfrastructureFactory
    from eventsourcing.utils import Environment

    env, writer, attempts = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    factory = DCBInfrastructureFactory.construct(Environment("", env))
    try:
        recorder = factory.dcb_recorder()  # type: ignore[attr-defined]
        outcomes = book(recorder, writer, attempts, seed=hash(writer))
    finally:
        factory.close()
    print(json.dumps(dict(outcomes)))


if __name__ == "__main__":
    main()
