"""The course-booking model of the DCB tests, written as user code of eventsourcing.dcb:
enduring objects, a group and a slice, with MessagePack decisions (shared by the DCB
application tests and the DCB projection views)."""

from __future__ import annotations

from eventsourcing.dcb.domain import EnduringObject, Group, Selector, Slice
from eventsourcing.dcb.msgpack import Decision, InitialDecision
from eventsourcing.dcb.persistence import NotFoundError
from eventsourcing.domain import event


class StudentJoinedCourse(Decision):
    student_id: str
    course_id: str


class Student(EnduringObject[Decision, str]):
    class Registered(InitialDecision):
        student_id: str
        name: str
        max_courses: int

    class NameUpdated(Decision):
        name: str

    @event(Registered)
    def __init__(self, name: str, max_courses: int) -> None:
        self.name = name
        self.max_courses = max_courses
        self.course_ids: list[str] = []

    @event(NameUpdated)
    def update_name(self, name: str) -> None:
        self.name = name

    @event(StudentJoinedCourse)
    def _(self, course_id: str) -> None:
        self.course_ids.append(course_id)


class Course(EnduringObject[Decision, str]):
    class Registered(InitialDecision):
        course_id: str
        name: str
        max_students: int

    def __init__(self, name: str, max_students: int) -> None:
        self.name = name
        self.max_students = max_students
        self.student_ids: list[str] = []

    @event(StudentJoinedCourse)
    def _(self, student_id: str) -> None:
        self.student_ids.append(student_id)


class CourseFull(Exception):
    pass


class TooManyCourses(Exception):
    pass


class StudentAndCourse(Group[Decision]):
    def __init__(self, student: Student | None, course: Course | None) -> None:
        if student is None or course is None:
            raise NotFoundError("student or course not found")
        self.student = student
        self.course = course

    def student_joins_course(self) -> None:
        if len(self.course.student_ids) >= self.course.max_students:
            raise CourseFull(self.course.id)
        if len(self.student.course_ids) >= self.student.max_courses:
            raise TooManyCourses(self.student.id)
        if self.student.id in self.course.student_ids:
            return
        self.trigger_event(
            StudentJoinedCourse, student_id=self.student.id, course_id=self.course.id
        )


class UpdateStudentName(Slice[Decision]):
    def __init__(self, student_id: str, new_name: str) -> None:
        self.student_id = student_id
        self.new_name = new_name
        self.name = ""
        self.registered = False

    def consistency_boundary(self) -> Selector:
        return Selector(types=self.projected_types, tags=[self.student_id])

    @event(Student.Registered)
    def _(self, name: str) -> None:
        self.name = name
        self.registered = True

    @event(Student.NameUpdated)
    def _(self, name: str) -> None:
        self.name = name

    def execute(self) -> None:
        if not self.registered:
            raise NotFoundError(self.student_id)
        if self.name != self.new_name:
            self.trigger_event(Student.NameUpdated, tags=[self.student_id], name=self.new_name)
