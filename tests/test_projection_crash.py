"""Projections that crash: SIGKILL a projection runner mid-stream, restart it, and
every row of the view is exact (each event counted once); and events written by
many writers at once while a projection subscribes are all processed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from tests.projection_views import VIEWS, CountProjection, Dog, DogSchool, dog_school_runner

WORKER = Path(__file__).with_name("projection_crash_worker.py")
TRICKS = ["sit", "beg", "roll over", "fetch"]


def record_tricks(
    env: dict[str, str], dogs: int, tricks_per_dog: int
) -> tuple[dict[str, int], int]:
    """Record the tricks; return how many of each, and the last notification id."""
    expected: dict[str, int] = {}
    last = 0
    with DogSchool(env=env) as school:
        for d in range(dogs):
            dog = Dog(f"dog {d}")
            for i in range(tricks_per_dog):
                trick = TRICKS[(d + i) % len(TRICKS)]
                dog.add_trick(trick)
                expected[trick] = expected.get(trick, 0) + 1
            last = school.save(dog)[-1].notification.id
    return expected, last


def start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(WORKER)],
        env=dict(os.environ, **env),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "running"
    return process


class ViewFactory:
    """The projection's view, read from the test's process; closes all it opened."""

    def __init__(self, env: dict[str, str]):
        self.factory = InfrastructureFactory.construct(Environment(CountProjection.name, env))
        self.view = self.factory.tracking_recorder(VIEWS[env["PERSISTENCE_MODULE"]])

    def close(self) -> None:
        close_listener = getattr(self.view, "close", None)
        if close_listener is not None:
            close_listener()
        self.factory.close()


def view_of(env: dict[str, str]) -> tuple[ViewFactory, Any]:
    opened = ViewFactory(env)
    return opened, opened.view


def kill_and_restart_until_done(env: dict[str, str], last: int, kills: int) -> None:
    factory, view = view_of(env)
    try:
        for _ in range(kills):
            worker = start_worker(env)
            time.sleep(random.uniform(0.05, 0.3))
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
            position = view.max_tracking_id(DogSchool.name) or 0
            if position >= last:
                break
        worker = start_worker(env)
        try:
            view.wait(DogSchool.name, last, timeout=120)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
    finally:
        factory.close()


def assert_counts(env: dict[str, str], expected: dict[str, int]) -> None:
    factory, view = view_of(env)
    try:
        assert {trick: view.get_count(trick) for trick in TRICKS} == expected
    finally:
        factory.close()


def test_sqlite_projection_survives_sigkill(tmp_path: Path) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "school.db"),
        "COUNTPROJECTION_SQLITE_DBNAME": str(tmp_path / "view.db"),
    }
    expected, last = record_tricks(env, dogs=10, tricks_per_dog=12)
    kill_and_restart_until_done(env, last, kills=5)
    assert_counts(env, expected)


def test_postgres_projection_survives_sigkill(postgres_env: dict[str, str]) -> None:
    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres")
    expected, last = record_tricks(env, dogs=10, tricks_per_dog=12)
    kill_and_restart_until_done(env, last, kills=5)
    assert_counts(env, expected)


@pytest.mark.parametrize("writers", [8])
def test_concurrent_writers_while_a_projection_subscribes_on_postgres(
    postgres_env: dict[str, str], writers: int
) -> None:
    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres")
    saves_per_writer = 40
    with dog_school_runner(env, VIEWS["eventsourcing.postgres"]) as runner:
        errors: list[BaseException] = []

        def write(w: int) -> None:
            try:
                with DogSchool(env=env) as school:
                    for i in range(saves_per_writer):
                        dog = Dog(f"writer {w} dog {i}")
                        dog.add_trick(TRICKS[w % len(TRICKS)])
                        school.save(dog)
            except BaseException as error:  # pragma: no cover (reported below)
                errors.append(error)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        last = runner.app.recorder.max_notification_id()
        assert last == writers * saves_per_writer * 2
        runner.wait(last, timeout=60)
        expected = {trick: 0 for trick in TRICKS}
        for w in range(writers):
            expected[TRICKS[w % len(TRICKS)]] += saves_per_writer
        assert {trick: runner.view.get_count(trick) for trick in TRICKS} == expected
