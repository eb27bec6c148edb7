"""DCB applications on every store: a course-booking model written as user code of
eventsourcing.dcb (enduring objects, a group and a slice with MessagePack decisions),
its repository, its event store and its mapper."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from uuid import uuid4

import pytest

from eventsourcing.dcb.api import DCBEvent, DCBQuery, DCBQueryItem
from eventsourcing.dcb.application import DCBApplication, DCBRepository
from eventsourcing.dcb.domain import Selector, Tagged
from eventsourcing.dcb.msgpack import Decision, MessagePackMapper
from eventsourcing.dcb.persistence import DCBEventStore, NotFoundError
from eventsourcing.dcb.popo import InMemoryDCBRecorder
from eventsourcing.domain import ProgrammingError
from eventsourcing.persistence import IntegrityError, MapperDeserialisationError
from eventsourcing.utils import get_topic
from tests.dcb_courses import (
    Course,
    CourseFull,
    Student,
    StudentAndCourse,
    StudentJoinedCourse,
    TooManyCourses,
    UpdateStudentName,
)

MSGPACK = "eventsourcing.dcb.msgpack:MessagePackMapper"

# ---------------------------------------------------------------------------
# The course-booking application (the model is user code, in tests/dcb_courses.py).


class CourseBooking(DCBApplication):
    def register_student(self, name: str, max_courses: int = 5) -> str:
        student = Student(name=name, max_courses=max_courses)
        self.repository.save(student)
        return student.id

    def register_course(self, name: str, max_students: int = 30) -> str:
        course = Course(name=name, max_students=max_students)
        self.repository.save(course)
        return course.id

    def update_student_name(self, student_id: str, new_name: str) -> None:
        self.do(UpdateStudentName(student_id, new_name))

    def join_course(self, student_id: str, course_id: str) -> None:
        group = self.repository.get_group(StudentAndCourse, student_id, course_id)
        group.student_joins_course()
        self.repository.save(group)

    def courses_of(self, student_id: str) -> list[str]:
        student = self.repository.get(student_id)
        return [c.name for c in self.repository.get_many(*student.course_ids)]

    def students_of(self, course_id: str) -> list[str]:
        course = self.repository.get(course_id)
        return [s.name for s in self.repository.get_many(*course.student_ids)]


@pytest.fixture
def app_env(persistence_env: dict[str, str]) -> dict[str, str]:
    return dict(persistence_env, MAPPER_TOPIC=MSGPACK)


@pytest.fixture
def app(app_env: dict[str, str]) -> Iterator[CourseBooking]:
    with CourseBooking(env=app_env) as application:
        yield application


# ---------------------------------------------------------------------------
# The application on every store.


def test_students_join_courses(app: CourseBooking) -> None:
    sara = app.register_student("Sara")
    bob = app.register_student("Bob")
    history = app.register_course("History")
    maths = app.register_course("Maths")
    app.join_course(sara, history)
    app.join_course(sara, maths)
    app.join_course(bob, history)
    assert app.courses_of(sara) == ["History", "Maths"]
    assert app.courses_of(bob) == ["History"]
    assert app.students_of(history) == ["Sara", "Bob"]
    app.update_student_name(sara, "Sara P")
    assert app.students_of(history) == ["Sara P", "Bob"]


def test_capacity_and_per_student_limits(app: CourseBooking) -> None:
    small = app.register_course("Small", max_students=1)
    busy = app.register_student("Busy", max_courses=1)
    other = app.register_student("Other")
    app.join_course(busy, small)
    with pytest.raises(CourseFull):
        app.join_course(other, small)
    with pytest.raises(TooManyCourses):
        app.join_course(busy, app.register_course("Second"))
    assert app.students_of(small) == ["Busy"]


def test_a_stale_decision_is_refused_and_succeeds_when_retried(app: CourseBooking) -> None:
    course = app.register_course("Last place", max_students=1)
    first, second = app.register_student("First"), app.register_student("Second")
    # Both read the course while it has a place.
    group1 = app.repository.get_group(StudentAndCourse, first, course)
    group2 = app.repository.get_group(StudentAndCourse, second, course)
    group1.student_joins_course()
    group2.student_joins_course()
    app.repository.save(group1)
    with pytest.raises(IntegrityError):
        app.repository.save(group2)
    # Nothing of the refused decision is recorded; it stays with the group.
    assert app.students_of(course) == ["First"]
    assert app.courses_of(second) == []
    assert len(group2.new_decisions) == 1
    # Retried from what is recorded now, the rule refuses it.
    with pytest.raises(CourseFull):
        app.join_course(second, course)


def test_decisions_outside_the_boundary_do_not_conflict(app: CourseBooking) -> None:
    sara = app.register_student("Sara")
    course = app.register_course("History")
    group = app.repository.get_group(StudentAndCourse, sara, course)
    # Another student and course change meanwhile: not in this group's boundary.
    app.join_course(app.register_student("Bob"), app.register_course("Maths"))
    group.student_joins_course()
    app.repository.save(group)
    assert app.courses_of(sara) == ["History"]


def test_a_durable_store_is_read_by_a_new_application(
    app: CourseBooking, app_env: dict[str, str], durable: bool
) -> None:
    sara = app.register_student("Sara")
    history = app.register_course("History")
    app.join_course(sara, history)
    with CourseBooking(env=app_env) as again:
        if durable:
            assert again.courses_of(sara) == ["History"]
        else:
            with pytest.raises(NotFoundError):
                again.repository.get(sara)


DCB_MODULES = {
    "eventsourcing.popo": "eventsourcing.dcb.popo",
    "eventsourcing.sqlite": "eventsourcing.dcb.sqlite",
    "eventsourcing.postgres": "eventsourcing.dcb.postgres_tt",
}


def test_the_dcb_store_modules_serve_the_same_store(app_env: dict[str, str], durable: bool) -> None:
    dcb_env = dict(app_env, PERSISTENCE_MODULE=DCB_MODULES[app_env["PERSISTENCE_MODULE"]])
    with CourseBooking(env=dcb_env) as app:
        sara = app.register_student("Sara")
        app.join_course(sara, app.register_course("History"))
        assert app.courses_of(sara) == ["History"]
    if durable:
        with CourseBooking(env=app_env) as again:
            assert again.courses_of(sara) == ["History"]


def test_repository_get_many_get_group_and_positions(app: CourseBooking) -> None:
    sara = app.register_student("Sara")
    history = app.register_course("History")
    missing = "student-missing"
    student, course, nobody = app.repository.get_many(sara, history, missing)
    assert (student.name, course.name, nobody) == ("Sara", "History", None)
    assert student.last_known_position == course.last_known_position
    assert student.last_known_position is not None
    with pytest.raises(NotFoundError):
        app.repository.get(missing)
    with pytest.raises(NotFoundError):
        app.repository.get_group(StudentAndCourse, missing, history)


def test_do_advances_executes_and_saves_a_slice(app: CourseBooking) -> None:
    sara = app.register_student("Sara")
    head = app.recorder.read().head
    done = app.do(UpdateStudentName(sara, "Sara"))  # same name: no decision
    assert done.name == "Sara" and done.last_known_position == head
    assert app.recorder.read().head == head
    app.do(UpdateStudentName(sara, "Sara P"))
    assert app.repository.get(sara).name == "Sara P"
    assert app.recorder.read().head == head + 1  # type: ignore[operator]
    with pytest.raises(NotFoundError):
        app.do(UpdateStudentName("student-missing", "X"))


def test_decisions_are_recorded_as_typed_and_tagged_dcb_events(app: CourseBooking) -> None:
    sara = app.register_student("Sara")
    history = app.register_course("History")
    app.join_course(sara, history)
    joined_type = get_topic(StudentJoinedCourse)
    query = DCBQuery(items=[DCBQueryItem(types=[joined_type], tags=[history])])
    [recorded] = list(app.recorder.read(query))
    assert recorded.event.type == joined_type
    assert recorded.event.tags == [sara, history]
    tagged = app.mapper.to_domain_event(recorded.event)
    assert tagged.decision == StudentJoinedCourse(student_id=sara, course_id=history)


# ---------------------------------------------------------------------------
# Application settings.


def test_without_mapper_topic_the_application_has_only_a_recorder() -> None:
    with DCBApplication() as app:
        app.recorder.append([DCBEvent(type="t", data=b"d", tags=["x"])])
        assert [e.event.data for e in app.recorder.read()] == [b"d"]
        with pytest.raises(AttributeError, match="MAPPER_TOPIC"):
            app.repository  # noqa: B018


def test_mapper_topic_may_be_prefixed_with_the_application_name() -> None:
    assert CourseBooking.name == "CourseBooking"
    with CourseBooking(env={"COURSEBOOKING_MAPPER_TOPIC": MSGPACK}) as app:
        assert isinstance(app.mapper, MessagePackMapper)


def test_a_mapper_topic_that_names_no_mapper_is_refused() -> None:
    with pytest.raises(ProgrammingError, match="DCBMapper"):
        CourseBooking(env={"MAPPER_TOPIC": "eventsourcing.dcb.domain:Selector"})


# ---------------------------------------------------------------------------
# The event store.


def test_event_store_reads_by_boundary_and_appends_on_condition() -> None:
    store = DCBEventStore(MessagePackMapper(), InMemoryDCBRecorder())
    assert store.append([]) == 0
    sara = Student(name="Sara", max_courses=5)
    course = Course(name="History", max_students=30)
    assert store.append(sara.collect_events()) == 1
    assert store.append(course.collect_events(), cb=Selector(tags=[course.id])) == 2
    registered = list(store.read(Selector(types=[Student.Registered])))
    assert [t.decision.name for t in registered] == ["Sara"]  # type: ignore[attr-defined]
    response = store.read([Selector(tags=[sara.id]), Selector(tags=[course.id])], after=1)
    assert [t.tags for t in response] == [[course.id]]
    assert response.head == 2
    sara.update_name("Sara P")
    with pytest.raises(IntegrityError):
        store.append(sara.collect_events(), cb=Selector(tags=[course.id]), after=1)
    # A boundary of no selectors with a position: any event after it conflicts.
    with pytest.raises(IntegrityError):
        store.append([Tagged(tags=[sara.id], decision=Student.NameUpdated(name="X"))], [], 1)
    assert store.read().head == 2
    assert len(list(store.read(limit=1))) == 1


def test_a_boundary_must_be_made_of_selectors() -> None:
    store = DCBEventStore(MessagePackMapper(), InMemoryDCBRecorder())
    with pytest.raises(ProgrammingError, match="Selector"):
        store.read(["student-1"])  # type: ignore[list-item]
    with pytest.raises(ProgrammingError, match="decision classes"):
        store.read(Selector(types=[object()]))  # type: ignore[list-item]


def test_repository_save_returns_the_last_position() -> None:
    repository = DCBRepository(DCBEventStore(MessagePackMapper(), InMemoryDCBRecorder()))
    sara = Student(name="Sara", max_courses=5)
    sara.update_name("Sara P")
    assert repository.save(sara) == 2
    assert sara.new_decisions == []
    assert repository.get(sara.id).name == "Sara P"


# ---------------------------------------------------------------------------
# MessagePack decisions and mapper.


class Everything(Decision):
    uid: object
    amount: Decimal
    at: datetime
    day: date
    items: list[object]
    mapping: dict[str, object]
    note: str | None = None
    tags: list[str] = []


def test_message_pack_values_read_back_as_they_were() -> None:
    mapper = MessagePackMapper()
    decision = Everything(
        uid=uuid4(),
        amount=Decimal("1.10"),
        at=datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
        day=date(2024, 1, 2),
        items=[1, 2.5, "x", None, True, b"raw"],
        mapping={"a": {"b": [1]}},
    )
    dcb_event = mapper.to_dcb_event(Tagged(tags=["t1", "t2"], decision=decision))
    assert dcb_event.type == f"{__name__}:Everything"
    assert dcb_event.tags == ["t1", "t2"]
    assert isinstance(dcb_event.data, bytes)
    tagged = mapper.to_domain_event(dcb_event)
    assert tagged.tags == ["t1", "t2"]
    assert tagged.decision == decision
    assert tagged.decision.note is None  # type: ignore[attr-defined]


def test_message_pack_mapper_errors_name_what_was_wrong() -> None:
    mapper = MessagePackMapper()
    bad_value = StudentJoinedCourse(student_id=object(), course_id="c")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="StudentJoinedCourse.*object"):
        mapper.to_dcb_event(Tagged(tags=[], decision=bad_value))
    bad_data = DCBEvent(type=get_topic(StudentJoinedCourse), data=b"\xc1", tags=[])
    with pytest.raises(MapperDeserialisationError, match="StudentJoinedCourse"):
        mapper.to_domain_event(bad_data)
    wrong_fields = mapper.to_dcb_event(Tagged(tags=[], decision=Student.NameUpdated(name="x")))
    wrong_fields.type = get_topic(StudentJoinedCourse)
    with pytest.raises(MapperDeserialisationError, match="StudentJoinedCourse"):
        mapper.to_domain_event(wrong_fields)


def test_decisions_are_declared_by_annotated_fields() -> None:
    assert StudentJoinedCourse.__struct_fields__ == ("student_id", "course_id")
    assert Student.Registered.__struct_fields__ == (
        "originator_topic",
        "student_id",
        "name",
        "max_courses",
    )
    by_position = StudentJoinedCourse("s", "c")
    assert by_position == StudentJoinedCourse(student_id="s", course_id="c")
    assert by_position != StudentJoinedCourse(student_id="s", course_id="d")
    assert by_position.as_dict() == {"student_id": "s", "course_id": "c"}
    assert repr(by_position) == "StudentJoinedCourse(student_id='s', course_id='c')"
    with pytest.raises(TypeError, match="missing required field 'course_id'"):
        StudentJoinedCourse(student_id="s")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no field 'course'"):
        StudentJoinedCourse(student_id="s", course_id="c", course="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="at most 2 positional"):
        StudentJoinedCourse("s", "c", "x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="twice"):
        StudentJoinedCourse("s", student_id="s")  # type: ignore[call-arg]


def test_defaults_are_not_shared_and_must_come_last() -> None:
    first = Everything(uid=1, amount=Decimal(1), at=None, day=None, items=[], mapping={})
    second = Everything(uid=1, amount=Decimal(1), at=None, day=None, items=[], mapping={})
    first.tags.append("x")  # type: ignore[attr-defined]
    assert second.tags == []  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="'b' without a default follows field 'a'"):

        class Bad(Decision):
            a: int = 1
            b: int


# ---------------------------------------------------------------------------
# Racing writers.


def test_racing_writers_never_exceed_the_limits(app: CourseBooking) -> None:
    import random
    import threading
    import time

    courses = [app.register_course(f"C{i}", max_students=3) for i in range(4)]
    students = [app.register_student(f"S{i}", max_courses=2) for i in range(12)]
    conflicts = [0]
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            student_id, course_id = rng.choice(students), rng.choice(courses)
            while True:
                try:
                    group = app.repository.get_group(StudentAndCourse, student_id, course_id)
                    time.sleep(0.001)  # let other writers run between reading and saving
                    group.student_joins_course()
                    app.repository.save(group)
                except IntegrityError:
                    conflicts[0] += 1  # (decided on stale facts: decide again)
                    continue
                except (CourseFull, TooManyCourses):
                    pass
                except BaseException as error:  # pragma: no cover (reported below)
                    errors.append(error)
                break

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    # Count the recorded joins themselves, not what the model makes of them.
    joined_type = get_topic(StudentJoinedCourse)
    joins = [
        app.mapper.to_domain_event(e.event).decision
        for e in app.recorder.read(DCBQuery(items=[DCBQueryItem(types=[joined_type])]))
    ]
    pairs = [(j.student_id, j.course_id) for j in joins]  # type: ignore[attr-defined]
    assert len(pairs) == len(set(pairs)), "a student joined a course twice"
    for course_id in courses:
        assert sum(1 for _, c in pairs if c == course_id) <= 3
    for student_id in students:
        assert sum(1 for s, _ in pairs if s == student_id) <= 2
    assert len(pairs) > 0
    assert conflicts[0] > 0, "the writers never raced"


def test_an_initial_decision_tagged_with_other_ids_makes_only_its_own_object() -> None:
    repository = DCBRepository(DCBEventStore(MessagePackMapper(), InMemoryDCBRecorder()))
    registered = Student.Registered(
        originator_topic=get_topic(Student),
        student_id="student-1",
        name="Sara",
        max_courses=5,
    )
    # Registered for a course that is not recorded (yet): tagged with both IDs.
    repository.eventstore.append([Tagged(tags=["student-1", "course-1"], decision=registered)])
    student, course = repository.get_many("student-1", "course-1")
    assert isinstance(student, Student) and student.id == "student-1"
    assert course is None


class Grades(Decision, frozen=True, kw_only=True):
    student_id: str
    scores: tuple[int, ...]
    subjects: frozenset[str] | None = None


class Terms(Decision):
    terms: set[str] = set()


def test_frozen_and_keyword_only_decisions() -> None:
    grades = Grades(student_id="s", scores=(1, 2), subjects=frozenset({"maths"}))
    with pytest.raises(AttributeError, match="frozen"):
        grades.student_id = "t"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del grades.scores
    same = Grades(student_id="s", scores=(1, 2), subjects=frozenset({"maths"}))
    assert hash(grades) == hash(same)
    with pytest.raises(TypeError, match="keyword only"):
        Grades("s", (1,))  # type: ignore[misc]
    with pytest.raises(TypeError, match="unhashable"):
        hash(StudentJoinedCourse(student_id="s", course_id="c"))
    # Not frozen: fields may change.
    joined = StudentJoinedCourse(student_id="s", course_id="c")
    joined.course_id = "d"
    assert joined.as_dict() == {"student_id": "s", "course_id": "d"}


def test_tuple_and_set_fields_read_back_as_declared() -> None:
    mapper = MessagePackMapper()
    grades = Grades(student_id="s", scores=(1, 2), subjects=frozenset({"maths"}))
    copy = mapper.to_domain_event(mapper.to_dcb_event(Tagged(tags=[], decision=grades)))
    assert copy.decision == grades
    assert type(copy.decision.scores) is tuple  # type: ignore[attr-defined]
    assert type(copy.decision.subjects) is frozenset  # type: ignore[attr-defined]
    terms = Terms(terms={"spring"})
    copy = mapper.to_domain_event(mapper.to_dcb_event(Tagged(tags=[], decision=terms)))
    assert copy.decision == terms
    assert type(copy.decision.terms) is set  # type: ignore[attr-defined]
    no_subjects = Grades(student_id="s", scores=())
    copy = mapper.to_domain_event(mapper.to_dcb_event(Tagged(tags=[], decision=no_subjects)))
    assert copy.decision == no_subjects


def test_a_saved_object_can_make_and_save_more_decisions(app: CourseBooking) -> None:
    student = Student(name="Sara", max_courses=5)
    position = app.repository.save(student)
    assert student.last_known_position == position
    student.update_name("Sara P")
    app.repository.save(student)
    assert app.repository.get(student.id).name == "Sara P"
    # A decision recorded by another writer meanwhile still makes it stale.
    other = app.repository.get(student.id)
    other.update_name("Other")
    app.repository.save(other)
    student.update_name("Sara Q")
    with pytest.raises(IntegrityError):
        app.repository.save(student)
    assert app.repository.get(student.id).name == "Other"
