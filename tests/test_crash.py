"""Crash tests: SIGKILL a running system at random points; nothing lost, nothing twice.

The dog-school system runs in a subprocess while commands stream in. It is killed
with SIGKILL several times at random moments and restarted; a last run finishes.
Then every counter must equal the number of recorded TrickAdded events for its
trick, exactly, and the follower's position must be at the end of the log.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter as Tally
from pathlib import Path

import pytest

from eventsourcing.domain import Aggregate
from eventsourcing.utils import resolve_topic
from examples.dogschool import Counters, Dog, DogSchool

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "crash_worker.py"
KILLS = 4


def start_worker(runner: str, commands: int, env: dict[str, str]) -> subprocess.Popen[str]:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.Popen(
        [sys.executable, str(WORKER), runner, str(commands)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def kill_after(process: subprocess.Popen[str], lines: int) -> None:
    """Let the worker complete ``lines`` commands, then SIGKILL it mid-stream."""
    assert process.stdout is not None
    for _ in range(lines):
        if not process.stdout.readline():
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def run_to_completion(runner: str, env: dict[str, str]) -> None:
    process = start_worker(runner, 10, env)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert stdout.strip().endswith("done")


def assert_counts_exact(
    env: dict[str, str], tracking_names: tuple[str, ...] = ("DogSchool",)
) -> None:
    school = DogSchool(env=env)
    counters = Counters(env=env)
    try:
        recorded = Tally()
        notifications = school.notification_log.select(1, 1_000_000)
        for notification in notifications:
            if resolve_topic(notification.topic) is Dog.TrickAdded:
                recorded[school.mapper.to_domain_event(notification).trick] += 1
        assert sum(recorded.values()) > 0
        for trick, expected in recorded.items():
            assert counters.get_count(trick) == expected, trick
        for tracking_name in tracking_names:
            assert counters.recorder.max_tracking_id(tracking_name) == notifications[-1].id
        # Each counter's events: one Created, then exactly one Incremented per trick added.
        increments = sum(
            1
            for n in counters.notification_log.select(1, 1_000_000)
            if not issubclass(resolve_topic(n.topic), Aggregate.Created)
        )
        assert increments == sum(recorded.values())
    finally:
        school.close()
        counters.close()


def crash_and_recover(runner: str, env: dict[str, str], seed: int) -> None:
    print(f"kill points drawn with random seed {seed}")  # shown if the test fails
    rng = random.Random(seed)
    for _ in range(KILLS):
        process = start_worker(runner, 100_000, env)
        kill_after(process, rng.randint(1, 80))
    run_to_completion(runner, env)
    assert_counts_exact(env)


@pytest.mark.parametrize("runner", ["single", "multi"])
def test_sqlite_system_survives_sigkill(runner: str, tmp_path: Path) -> None:
    pytest.importorskip("eventsourcing.sqlite")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "dogschool.db"),
        "COUNTERS_SQLITE_DBNAME": str(tmp_path / "counters.db"),
    }
    crash_and_recover(runner, env, seed=random.randrange(1_000_000))


@pytest.mark.parametrize("runner", ["single", "multi"])
def test_postgres_system_survives_sigkill(runner: str, postgres_env: dict[str, str]) -> None:
    env = dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres")
    crash_and_recover(runner, env, seed=random.randrange(1_000_000))


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_concurrent_writers_while_a_follower_runs(store: str, tmp_path: Path, request) -> None:
    """8 threads save commands at once while the follower processes: none is skipped."""
    import threading

    from eventsourcing.system import MultiThreadedRunner
    from examples.dogschool import system

    if store == "sqlite":
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "dogschool.db"),
            "COUNTERS_SQLITE_DBNAME": str(tmp_path / "counters.db"),
        }
    else:
        env = dict(
            request.getfixturevalue("postgres_env"), PERSISTENCE_MODULE="eventsourcing.postgres"
        )
    runner = MultiThreadedRunner(system, env=env)
    runner.start()
    try:
        school = runner.get(DogSchool)

        def write(writer: int) -> None:
            dog_id = school.register_dog(f"dog{writer}")
            for i in range(40):
                school.add_trick(dog_id, f"trick{i % 4}")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        runner.wait(timeout=60)
    finally:
        runner.stop()
    assert_counts_exact(env)
