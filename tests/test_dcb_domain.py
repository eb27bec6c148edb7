"""Decision models of eventsourcing.dcb.domain: enduring objects, groups and slices
made, changed and projected in memory (no store)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from eventsourcing.dcb.domain import (
    Decision,
    EnduringObject,
    Group,
    InitialDecision,
    Perspective,
    Selector,
    Slice,
    Tagged,
)
from eventsourcing.domain import ProgrammingError, event


@dataclass
class StudentJoinedCourse(Decision):
    student_id: str
    course_id: str


class Student(EnduringObject[Decision, str]):
    @dataclass
    class Registered(InitialDecision):
        originator_topic: str
        student_id: str
        name: str
        max_courses: int

    @dataclass
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


class Course(EnduringObject[Decision]):  # (one type argument: the ID is a str)
    @dataclass
    class Registered(InitialDecision):
        originator_topic: str
        course_id: str
        name: str
        max_students: int

    # Not decorated: the nested InitialDecision class is the course's first decision.
    def __init__(self, name: str, max_students: int) -> None:
        self.name = name
        self.max_students = max_students
        self.student_ids: list[str] = []

    @event(StudentJoinedCourse)
    def _(self, student_id: str) -> None:
        self.student_ids.append(student_id)


class StudentAndCourse(Group[Decision]):
    def __init__(self, student: Student, course: Course) -> None:
        self.student = student
        self.course = course

    def student_joins_course(self) -> None:
        if len(self.course.student_ids) >= self.course.max_students:
            raise ValueError("course full")
        self.trigger_event(
            StudentJoinedCourse, student_id=self.student.id, course_id=self.course.id
        )


class UpdateStudentName(Slice[Decision]):
    def __init__(self, student_id: str, new_name: str) -> None:
        self.student_id = student_id
        self.new_name = new_name
        self.name = ""

    def consistency_boundary(self) -> Selector:
        return Selector(types=self.projected_types, tags=[self.student_id])

    @event(Student.Registered)
    def _(self, name: str) -> None:
        self.name = name

    @event(Student.NameUpdated)
    def _(self, name: str) -> None:
        self.name = name

    def execute(self) -> None:
        self.trigger_event(Student.NameUpdated, tags=[self.student_id], name=self.new_name)


def replay(tagged: list[Tagged[Decision]]) -> object:
    obj = None
    for t in tagged:
        obj = t.decision.mutate(obj)
    return obj


def test_calling_the_class_triggers_the_initial_decision_tagged_with_a_new_id() -> None:
    student = Student(name="Sara", max_courses=5)
    assert student.id.startswith("student-")
    assert (student.name, student.max_courses, student.course_ids) == ("Sara", 5, [])
    assert student.last_known_position is None
    [tagged] = student.new_decisions
    assert tagged.tags == [student.id]
    assert tagged.decision == Student.Registered(
        originator_topic=f"{__name__}:Student",
        student_id=student.id,
        name="Sara",
        max_courses=5,
    )


def test_positional_arguments_and_an_undecorated_init() -> None:
    course = Course("History", 30)
    assert (course.name, course.max_students) == ("History", 30)
    assert isinstance(course.new_decisions[0].decision, Course.Registered)
    with pytest.raises(TypeError, match="Course"):
        Course("History", 30, 40)


def test_decorated_methods_trigger_decisions_tagged_with_the_id() -> None:
    student = Student(name="Sara", max_courses=5)
    student.update_name("Sara P")
    assert student.name == "Sara P"
    tagged = student.collect_events()
    assert [type(t.decision) for t in tagged] == [Student.Registered, Student.NameUpdated]
    assert tagged[1].tags == [student.id]
    assert student.new_decisions == []


def test_an_enduring_object_is_remade_from_its_decisions() -> None:
    student = Student(name="Sara", max_courses=5)
    student.update_name("Sara P")
    copy = replay(student.collect_events())
    assert isinstance(copy, Student)
    assert (copy.id, copy.name, copy.course_ids) == (student.id, "Sara P", [])
    assert copy.new_decisions == []


def test_methods_named_underscore_only_apply_decisions() -> None:
    assert not hasattr(Student, "_")
    assert Student.projected_types == [
        Student.Registered,
        Student.NameUpdated,
        StudentJoinedCourse,
    ]


def test_a_group_decision_is_tagged_with_every_member_and_applied_to_each() -> None:
    student = Student(name="Sara", max_courses=5)
    course = Course(name="History", max_students=1)
    group = StudentAndCourse(student, course)
    group.student_joins_course()
    assert student.course_ids == [course.id]
    assert course.student_ids == [student.id]
    [tagged] = group.collect_new_decisions()
    assert tagged.tags == [student.id, course.id]
    assert group.consistency_boundary() == [
        Selector(tags=[student.id]),
        Selector(tags=[course.id]),
    ]
    with pytest.raises(ValueError, match="course full"):
        StudentAndCourse(Student(name="Bob", max_courses=5), course).student_joins_course()


def test_a_slice_projects_the_decisions_it_names_and_triggers_its_own() -> None:
    student = Student(name="Sara", max_courses=5)
    assert UpdateStudentName.do_projection is True
    assert UpdateStudentName.projected_types == [Student.Registered, Student.NameUpdated]
    update = UpdateStudentName(student.id, "Sara P")
    for tagged in student.collect_events():
        tagged.decision.mutate(update)
    assert update.name == "Sara"
    update.execute()
    assert update.name == "Sara P"
    [tagged] = update.collect_events()
    assert tagged.tags == [student.id]
    assert tagged.decision == Student.NameUpdated(name="Sara P")


def test_a_slice_without_projection() -> None:
    class Note(Slice[Decision]):
        def consistency_boundary(self) -> list[Selector]:
            return []

    assert Note.do_projection is False
    assert Note().new_decisions == []


def test_a_plain_perspective_keeps_appended_decisions() -> None:
    class Mine(Perspective[Decision]):
        def consistency_boundary(self) -> list[Selector]:
            return [Selector(tags=["tag1"]), Selector(tags=["tag2"])]

    mine = Mine()
    tagged = Tagged(tags=["tag1", "tag2"], decision=Decision())
    mine.append_new_decision(tagged)
    assert mine.collect_new_decisions() == [tagged]
    assert mine.collect_new_decisions() == []


def test_an_enduring_object_class_without_initial_decision_is_refused() -> None:
    class Thing(EnduringObject[Decision, str]):
        pass

    with pytest.raises(ProgrammingError, match="InitialDecision"):
        Thing()


def test_the_library_sets_the_id_and_topic() -> None:
    with pytest.raises(ProgrammingError, match="student_id"):
        Student(name="Sara", max_courses=5, student_id="x")


def test_event_in_a_perspective_must_name_a_decision_class() -> None:
    with pytest.raises(ProgrammingError, match="Decision class"):

        class Bad(Slice[Decision]):
            def consistency_boundary(self) -> list[Selector]:
                return []

            @event("Named")
            def named(self) -> None:
                pass


def test_a_decision_the_handler_cannot_take_names_the_missing_field() -> None:
    @dataclass
    class Renamed(Decision):
        title: str

    class Doc(Slice[Decision]):
        def consistency_boundary(self) -> list[Selector]:
            return []

        @event(Renamed)
        def _(self, name: str) -> None:
            self.name = name

    with pytest.raises(TypeError, match="no field name"):
        Renamed(title="x").mutate(Doc())


def test_a_non_initial_decision_cannot_make_an_object() -> None:
    with pytest.raises(ProgrammingError, match="not an initial decision"):
        Student.NameUpdated(name="x").mutate(None)


def test_slotted_data_class_decisions_give_their_fields() -> None:
    @dataclass(slots=True)
    class Renamed(Decision):
        name: str

    class Doc(Slice[Decision]):
        name = ""

        def consistency_boundary(self) -> list[Selector]:
            return []

        @event(Renamed)
        def _(self, name: str) -> None:
            self.name = name

    assert Renamed(name="x").as_dict() == {"name": "x"}
    assert Renamed(name="x").mutate(Doc()).name == "x"
