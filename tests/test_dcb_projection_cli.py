"""A projection of a DCB application on the command line: ``eventsourcing run
--projection`` keeps its view until SIGTERM, ``eventsourcing status`` shows its
position among the application's decisions, and its view can be rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsourcing._projection_cli import ProjectionSpec, load_projection, projection_status_rows
from eventsourcing._projection_rebuild import rebuild_projection
from eventsourcing.cli import main
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from tests.dcb_course_views import (
    CourseBooking,
    PostgresStudentsPerCourse,
    SQLiteStudentsPerCourse,
    StudentsPerCourseProjection,
)
from tests.test_projection_cli import run_projection_until, set_env, view_position

TOPIC = "tests.dcb_course_views:StudentsPerCourseProjection"
NAME = "StudentsPerCourseProjection"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return set_env(
        monkeypatch,
        {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "COURSEBOOKING_SQLITE_DBNAME": str(tmp_path / "courses.db"),
            f"{NAME.upper()}_SQLITE_DBNAME": str(tmp_path / "view.db"),
        },
    )


def view_of(env: dict[str, str]) -> tuple[InfrastructureFactory, SQLiteStudentsPerCourse]:
    factory = InfrastructureFactory.construct(Environment(NAME, env))
    return factory, factory.tracking_recorder(SQLiteStudentsPerCourse)


def test_run_a_dcb_projection_until_sigterm_then_status_shows_no_lag(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with CourseBooking(env=env) as app:
        maths, _ = app.register_course("Maths")
        sara = app.register_student("Sara")
        last = app.join_course(sara, maths)
    (row,) = projection_status_rows([load_projection(TOPIC)])
    assert (row.projection, row.application, row.position, row.last_id) == (
        NAME,
        "CourseBooking",
        0,
        last,
    )
    run_projection_until(
        TOPIC, lambda: view_position(env, NAME, SQLiteStudentsPerCourse, "CourseBooking"), last
    )
    factory, view = view_of(env)
    try:
        assert view.course_name(maths) == "Maths"
        assert view.students_of(maths) == [sara]
    finally:
        factory.close()
    assert main(["status", "--projection", TOPIC]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == [NAME, "CourseBooking", str(last), str(last), "0"]


def test_rebuild_the_view_of_a_dcb_projection(postgres_env: dict[str, str]) -> None:
    env = dict(
        postgres_env,
        PERSISTENCE_MODULE="eventsourcing.postgres",
        **{f"{NAME.upper()}_POSTGRES_SCHEMA": "students"},
    )
    spec = ProjectionSpec(StudentsPerCourseProjection, CourseBooking, PostgresStudentsPerCourse)
    with spec.runner(env) as runner:
        app = runner.app
        maths, _ = app.register_course("Maths")
        students = [app.register_student(f"S{i}") for i in range(3)]
        last = max(app.join_course(s, maths) for s in students)
        runner.wait(last, timeout=30)
        # The live view loses a row (a bug of an old version of the view, say).
        with runner.view.datastore.transaction(commit=True) as curs:
            curs.execute(
                "DELETE FROM students.course_students WHERE student_id = %s", (students[0],)
            )
        assert runner.view.students_of(maths) == students[1:]

    assert rebuild_projection(spec, env) == last

    factory = InfrastructureFactory.construct(Environment(NAME, env))
    try:
        view = factory.tracking_recorder(PostgresStudentsPerCourse)
        assert view.students_of(maths) == students
        assert view.course_name(maths) == "Maths"
        assert view.max_tracking_id("CourseBooking") == last
    finally:
        factory.close()
