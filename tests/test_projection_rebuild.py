"""Rebuilding a projection's view without downtime (PostgreSQL), under a steady
stream of writes, and resetting a view (destructive, confirmed first)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eventsourcing._projection_cli import ProjectionSpec, ProjectionSpecError
from eventsourcing._projection_rebuild import rebuild_projection, reset_projection
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from tests.projection_views import Dog, DogSchool, PostgresTrickCounts, SQLiteTrickCounts


class CountAll(Projection[PostgresTrickCounts]):
    """Counts every event by its class name: the counts add up to the position."""

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.count_trick(type(domain_event).__name__, tracking)


SPEC = ProjectionSpec(CountAll, DogSchool, PostgresTrickCounts)


def connect(env: dict[str, str]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        autocommit=True,
    )


class Reader(threading.Thread):
    """Reads the live view, as a reader would, until stopped: every read in one
    snapshot (one statement), which must add up (counts = position)."""

    def __init__(self, env: dict[str, str]):
        super().__init__(daemon=True)
        self.env = env
        self.stopping = threading.Event()
        self.positions: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        with connect(self.env) as conn:
            while not self.stopping.is_set():
                try:
                    total, position = conn.execute(
                        "SELECT (SELECT coalesce(sum(count), 0) FROM countall.trick_counts), "
                        "(SELECT notification_id FROM countall.countall_tracking "
                        "WHERE application_name = 'DogSchool')"
                    ).fetchone()  # type: ignore[misc]
                except psycopg.Error as error:
                    self.errors.append(str(error))
                    continue
                if total != position:
                    self.errors.append(f"half a view: counts add up to {total} at {position}")
                self.positions.append(position)
                time.sleep(0.002)


class Writer(threading.Thread):
    def __init__(self, env: dict[str, str]):
        super().__init__(daemon=True)
        self.env = env
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with DogSchool(env=self.env) as school:
                i = 0
                while not self.stopping.is_set():
                    dog = Dog(f"streamed {i}")
                    dog.add_trick("sit")
                    school.save(dog)
                    i += 1
                    time.sleep(0.003)
        except BaseException as error:  # pragma: no cover (reported by the test)
            self.error = error


def replayed_counts(school: DogSchool) -> dict[str, int]:
    """The view built from scratch: every event's class name, counted."""
    counts: Counter[str] = Counter()
    position = 0
    while True:
        batch = school.recorder.select_notifications(
            start=position, limit=1000, inclusive_of_start=False
        )
        if not batch:
            return dict(counts)
        for notification in batch:
            counts[type(school.mapper.to_domain_event(notification)).__name__] += 1
        position = batch[-1].id


def test_rebuild_under_a_stream_of_writes(postgres_env: dict[str, str]) -> None:
    env = dict(
        postgres_env,
        PERSISTENCE_MODULE="eventsourcing.postgres",
        COUNTALL_POSTGRES_SCHEMA="countall",
    )
    with DogSchool(env=env) as school:
        for i in range(150):
            dog = Dog(f"seeded {i}")
            dog.add_trick("beg")
            school.save(dog)
    runner = SPEC.runner(env)
    runner.wait(300, timeout=60)
    reader, writer = Reader(env), Writer(env)
    reader.start()
    writer.start()
    try:
        time.sleep(0.3)
        switched_at = rebuild_projection(SPEC, env)
        time.sleep(0.3)
    finally:
        writer.stopping.set()
        writer.join(30)
        reader.stopping.set()
        reader.join(30)
    assert writer.error is None
    assert reader.errors == []
    assert len(reader.positions) > 10
    assert reader.positions == sorted(reader.positions)  # never back to an earlier view
    assert switched_at >= 300

    # A runner of the old view that was waiting at the switch fails; restarted, it resumes.
    if runner.is_interrupted.is_set():
        with pytest.raises(Exception):  # noqa: B017,PT011 (the database's error, as it is)
            runner.run_forever(timeout=0)
        runner = SPEC.runner(env)
    with DogSchool(env=env) as school:
        last = school.recorder.max_notification_id()
        runner.wait(last, timeout=60)
        expected = replayed_counts(school)
    assert {name: runner.view.get_count(name) for name in expected} == expected
    runner.__exit__(None, None, None)
    with connect(env) as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
    assert "countall" in schemas
    assert not {"countall__next", "countall__old"} & schemas


def test_rebuild_needs_a_schema_of_its_own(postgres_env: dict[str, str]) -> None:
    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres")
    with pytest.raises(ProjectionSpecError, match="COUNTALL_POSTGRES_SCHEMA"):
        rebuild_projection(SPEC, env)


def test_reset_destroys_a_sqlite_view_file_once_confirmed(tmp_path: Path) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "school.db"),
        "COUNTALL_SQLITE_DBNAME": str(tmp_path / "view.db"),
    }
    spec = ProjectionSpec(CountAll, DogSchool, SQLiteTrickCounts)
    with spec.runner(env) as runner:
        runner.wait(runner.app.register_dog("Fido"), timeout=10)
    assert (tmp_path / "view.db").exists()
    assert not reset_projection(spec, env, confirm=lambda question: False)
    assert (tmp_path / "view.db").exists()
    questions: list[str] = []
    assert reset_projection(spec, env, confirm=lambda q: questions.append(q) or True)
    assert "view.db" in questions[0]
    assert not (tmp_path / "view.db").exists()
    assert (tmp_path / "school.db").exists()
    with spec.runner(env) as runner:
        runner.wait(1, timeout=10)  # rebuilt from the start
        assert runner.view.get_count("Registered") == 1


def test_reset_refuses_a_view_sharing_the_applications_database(tmp_path: Path) -> None:
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "x.db")}
    spec = ProjectionSpec(CountAll, DogSchool, SQLiteTrickCounts)
    with pytest.raises(ProjectionSpecError, match="not in a database file of its own"):
        reset_projection(spec, env, confirm=lambda question: True)


def test_rebuild_from_the_command_line(postgres_env: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from eventsourcing.cli import main

    env = dict(
        postgres_env,
        PERSISTENCE_MODULE="eventsourcing.postgres",
        COUNTALL_POSTGRES_SCHEMA="countall",
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with SPEC.runner(env) as runner:
        runner.wait(runner.app.register_dog("Fido"), timeout=10)
    names = [
        "--projection",
        "tests.test_projection_rebuild:CountAll",
        "--application",
        "tests.projection_views:DogSchool",
        "--view",
        "tests.projection_views:PostgresTrickCounts",
    ]
    assert main(["rebuild", *names]) == 0
    assert main(["rebuild", *names, "--from-scratch", "--yes"]) == 0
    with connect(env) as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
    assert "countall" not in schemas


class _FakeBuilder:
    """Stands in for the rebuild's builder: processes ``pace`` events per round."""

    def __init__(self, pace: int):
        self.app = type("App", (), {"name": "DogSchool"})()
        self.position = 0
        self.pace = pace
        self.rounds = 0

    def catch_up(self, limit: int) -> None:
        self.rounds += 1
        self.position = min(limit, self.position + self.pace)


def test_a_rebuild_slower_than_the_writes_stops_chasing_them() -> None:
    """Writes that come faster than the new view is built: the approach ends (and
    the switch processes the rest under the lock) instead of chasing for ever."""
    from eventsourcing._projection_rebuild import STALLED_ROUNDS, SWITCH_LAG, _approach

    builder = _FakeBuilder(pace=50)
    live = iter(range(10_000, 10_000_000, 500))  # gains 500 per round: never caught
    _approach(builder, lambda: next(live), None)
    assert builder.rounds == STALLED_ROUNDS
    assert 10_000 - builder.position > SWITCH_LAG


def test_a_rebuild_that_gains_on_the_writes_goes_on_until_close() -> None:
    from eventsourcing._projection_rebuild import SWITCH_LAG, _approach

    builder = _FakeBuilder(pace=1000)
    live = iter(range(5_000, 10_000_000, 100))  # gains 100 per round, the builder 1000
    seen: list[tuple[int, int]] = []
    _approach(builder, lambda: next(live), lambda done, at: seen.append((done, at)))
    assert seen and seen[-1][1] - seen[-1][0] <= SWITCH_LAG + 100
    assert builder.rounds == len(seen) >= 5
