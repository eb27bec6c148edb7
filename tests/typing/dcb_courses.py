"""A typed user program of dynamic consistency boundaries: tests/test_typing.py runs
mypy on it.

Marks as in dog_school.py: ``E: <error code>`` on each line mypy must flag, ``R: <type>``
on each ``reveal_type``.
"""

from __future__ import annotations

from eventsourcing.dcb.application import DCBApplication
from eventsourcing.dcb.domain import EnduringObject, Group, Selector, Slice
from eventsourcing.dcb.msgpack import Decision, InitialDecision
from eventsourcing.dcb.persistence import DCBEventStore
from eventsourcing.domain import event


class Joined(Decision):
    student_id: str
    course_id: str


class Course(EnduringObject[Decision]):  # (the ID type defaults to str)
    class Registered(InitialDecision):
        course_id: str
        name: str

    def __init__(self, name: str) -> None:
        self.name = name
        self.student_ids: list[str] = []

    @event(Joined)
    def _(self, student_id: str) -> None:
        self.student_ids.append(student_id)


class CourseAndStudent(Group[Decision]):
    def __init__(self, course: Course) -> None:
        self.course = course

    def join(self, student_id: str) -> None:
        self.trigger_event(Joined, student_id=student_id, course_id=self.course.id)


class CountStudents(Slice[Decision]):
    def __init__(self, course_id: str) -> None:
        self.course_id = course_id
        self.count = 0

    def consistency_boundary(self) -> Selector:
        return Selector(types=self.projected_types, tags=[self.course_id])

    @event(Joined)
    def _(self) -> None:
        self.count += 1


class Courses(DCBApplication):
    def register(self, name: str) -> str:
        course = Course(name=name)
        self.repository.save(course)
        return course.id


course = Course(name="History")
reveal_type(course.id)  # noqa: F821  # R: str
reveal_type(course.last_known_position)  # noqa: F821  # R: int | None
decisions = CountStudents("c").new_decisions
reveal_type(decisions[0].decision)  # noqa: F821  # R: eventsourcing.dcb.msgpack.Decision
store: DCBEventStore[Decision]
position: str = Courses().register("History")
wrong: int = Courses().register("History")  # E: assignment
