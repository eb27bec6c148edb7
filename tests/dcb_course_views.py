"""A projection of the course-booking DCB application: the students of each course,
in a view on every store, written as users write views (shared by the DCB projection
tests and the command line they start)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from psycopg.sql import SQL, Identifier

from eventsourcing.dcb.application import DCBApplication
from eventsourcing.dcb.domain import Tagged
from eventsourcing.dcb.msgpack import Decision
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import get_topic
from tests.dcb_courses import Course, Student, StudentAndCourse, StudentJoinedCourse

# ---------------------------------------------------------------------------
# The course-booking application (the model: tests/dcb_courses.py).


class CourseBooking(DCBApplication):
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.dcb.popo",
        "MAPPER_TOPIC": "eventsourcing.dcb.msgpack:MessagePackMapper",
    }

    def register_student(self, name: str, max_courses: int = 5) -> str:
        student = Student(name=name, max_courses=max_courses)
        self.repository.save(student)
        return student.id

    def register_course(self, name: str, max_students: int = 30) -> tuple[str, int]:
        """The course's ID, and the position of its registration."""
        course = Course(name=name, max_students=max_students)
        return course.id, self.repository.save(course)

    def join_course(self, student_id: str, course_id: str) -> int:
        """The position of the decision (for a view to wait for)."""
        group = self.repository.get_group(StudentAndCourse, student_id, course_id)
        group.student_joins_course()
        return self.repository.save(group)


# ---------------------------------------------------------------------------
# The view: each course's name and students.


class StudentsPerCourse(TrackingRecorder, ABC):
    @abstractmethod
    def add_course(self, course_id: str, name: str, tracking: Tracking) -> None: ...

    @abstractmethod
    def add_students(self, joined: Sequence[tuple[str, str]], tracking: Tracking) -> None:
        """Record (course ID, student ID) pairs, and only the last tracking record."""

    @abstractmethod
    def students_of(self, course_id: str) -> list[str]:
        """The IDs of the course's students, in the order they joined."""

    @abstractmethod
    def course_name(self, course_id: str) -> str | None: ...


class POPOStudentsPerCourse(POPOTrackingRecorder, StudentsPerCourse):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._names: dict[str, str] = {}
        self._students: dict[str, list[str]] = defaultdict(list)

    def add_course(self, course_id: str, name: str, tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            self._names[course_id] = name
            self._insert_tracking(tracking)

    def add_students(self, joined: Sequence[tuple[str, str]], tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            for course_id, student_id in joined:
                self._students[course_id].append(student_id)
            self._insert_tracking(tracking)

    def students_of(self, course_id: str) -> list[str]:
        with self._database_lock:
            return list(self._students.get(course_id, []))

    def course_name(self, course_id: str) -> str | None:
        with self._database_lock:
            return self._names.get(course_id)


class SQLiteStudentsPerCourse(SQLiteTrackingRecorder, StudentsPerCourse):
    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements += [
            "CREATE TABLE IF NOT EXISTS courses (course_id TEXT PRIMARY KEY, name TEXT)",
            "CREATE TABLE IF NOT EXISTS course_students (position INTEGER PRIMARY KEY "
            "AUTOINCREMENT, course_id TEXT, student_id TEXT)",
        ]
        return statements

    def add_course(self, course_id: str, name: str, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute("INSERT INTO courses VALUES (?, ?)", (course_id, name))
            self._insert_tracking(cursor, tracking)

    def add_students(self, joined: Sequence[tuple[str, str]], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            for course_id, student_id in joined:
                cursor.execute(
                    "INSERT INTO course_students (course_id, student_id) VALUES (?, ?)",
                    (course_id, student_id),
                )
            self._insert_tracking(cursor, tracking)

    def students_of(self, course_id: str) -> list[str]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT student_id FROM course_students WHERE course_id = ? ORDER BY position",
                (course_id,),
            )
            return [row["student_id"] for row in cursor.fetchall()]

    def course_name(self, course_id: str) -> str | None:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT name FROM courses WHERE course_id = ?", (course_id,))
            row = cursor.fetchone()
        return None if row is None else str(row["name"])


class PostgresStudentsPerCourse(PostgresTrackingRecorder, StudentsPerCourse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.courses (course_id text PRIMARY KEY, name text)"
            ).format(schema),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.course_students (position bigint GENERATED "
                "ALWAYS AS IDENTITY PRIMARY KEY, course_id text, student_id text)"
            ).format(schema),
        ]
        self._insert_course = SQL("INSERT INTO {0}.courses VALUES (%s, %s)").format(schema)
        self._insert_student = SQL(
            "INSERT INTO {0}.course_students (course_id, student_id) VALUES (%s, %s)"
        ).format(schema)
        self._select_students = SQL(
            "SELECT student_id FROM {0}.course_students WHERE course_id = %s ORDER BY position"
        ).format(schema)
        self._select_name = SQL("SELECT name FROM {0}.courses WHERE course_id = %s").format(schema)

    def add_course(self, course_id: str, name: str, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._insert_course, (course_id, name))
            self._insert_tracking(curs, tracking)

    def add_students(self, joined: Sequence[tuple[str, str]], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for course_id, student_id in joined:
                curs.execute(self._insert_student, (course_id, student_id))
            self._insert_tracking(curs, tracking)

    def students_of(self, course_id: str) -> list[str]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select_students, (course_id,))
            return [row["student_id"] for row in curs.fetchall()]

    def course_name(self, course_id: str) -> str | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select_name, (course_id,))
            row = curs.fetchone()
        return None if row is None else str(row["name"])


VIEWS: dict[str, type[StudentsPerCourse]] = {
    "eventsourcing.popo": POPOStudentsPerCourse,
    "eventsourcing.sqlite": SQLiteStudentsPerCourse,
    "eventsourcing.postgres": PostgresStudentsPerCourse,
}


# ---------------------------------------------------------------------------
# Projections: one decision at a time, and in batches.


class StudentsPerCourseProjection(Projection[StudentsPerCourse]):
    """Tagged decisions, dispatched on their decision's class."""

    application_class = CourseBooking
    view_class = SQLiteStudentsPerCourse  # (for the command line)

    def process_event(self, domain_event: Tagged[Decision], tracking: Tracking) -> None:
        self.process_decision(domain_event.decision, tracking)

    @singledispatchmethod
    def process_decision(self, decision: Decision, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_decision.register
    def _(self, decision: Course.Registered, tracking: Tracking) -> None:
        self.view.add_course(decision.course_id, decision.name, tracking)

    @process_decision.register
    def _(self, decision: StudentJoinedCourse, tracking: Tracking) -> None:
        self.view.add_students([(decision.course_id, decision.student_id)], tracking)


class JoinedInBatches(Projection[StudentsPerCourse]):
    """Only StudentJoinedCourse decisions, several to a transaction."""

    topics = (get_topic(StudentJoinedCourse),)
    batch_sizes: list[int] = []

    def process_event(self, domain_event: Tagged[Decision], tracking: Tracking) -> None:
        self.process_events([(domain_event, tracking)])

    def process_events(self, batch: Sequence[tuple[Tagged[Any], Tracking]]) -> None:
        type(self).batch_sizes.append(len(batch))
        joined = [(t.decision.course_id, t.decision.student_id) for t, _ in batch]
        self.view.add_students(joined, batch[-1][1])
