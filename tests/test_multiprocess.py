"""Each application in its own OS process, sharing PostgreSQL: the CLI and MultiProcessRunner.

Workers are started with ``python -m eventsourcing run``, killed with SIGKILL while
commands stream in, and restarted; every count must still be exact, each partition
must reach the end of the log, and ``status`` must then report zero lag.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_crash import assert_counts_exact

from eventsourcing.system import MultiProcessRunner
from examples.dogschool import Counters, DogSchool, system

REPO = Path(__file__).resolve().parents[1]
SYSTEM = "examples.dogschool:system"
TRICKS = ["roll over", "fetch ball", "play dead", "sit", "beg"]
COMMANDS = 2000


def cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "eventsourcing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def cli_result(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    process = cli(env, *args)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def stream_commands(env: dict[str, str], kill_at: dict[int, list[subprocess.Popen[str]]]) -> None:
    """Send COMMANDS commands; at each index in ``kill_at``, SIGKILL those workers."""
    school = DogSchool(env=env)
    try:
        dog_ids = [school.register_dog(f"dog{i}") for i in range(10)]
        for i in range(COMMANDS):
            for worker in kill_at.get(i, []):
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
            school.add_trick(dog_ids[i % 10], TRICKS[i % len(TRICKS)])
    finally:
        school.close()


def wait_for_zero_lag(env: dict[str, str], rows: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        result = cli_result(env, "status", SYSTEM)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()[1:]
        lags = [int(line.split()[-1]) for line in lines]
        if len(lags) == rows and all(lag == 0 for lag in lags):
            return result.stdout
        assert time.monotonic() < deadline, f"still lagging:\n{result.stdout}"
        time.sleep(0.2)


def stop(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr


@pytest.fixture
def pg_env(postgres_env: dict[str, str]) -> dict[str, str]:
    return dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres")


def test_worker_killed_mid_stream_and_restarted(pg_env: dict[str, str]) -> None:
    first = cli(pg_env, "run", SYSTEM, "--app", "Counters", "--poll-interval", "0.2")
    stream_commands(pg_env, kill_at={COMMANDS // 3: [first]})
    second = cli(pg_env, "run", SYSTEM, "--app", "Counters")  # resumes from its tracking
    try:
        table = wait_for_zero_lag(pg_env, rows=1)
        assert f"Counters  DogSchool  {COMMANDS + 10}" in table
    finally:
        stop(second)
    assert first.returncode == -signal.SIGKILL
    assert_counts_exact(pg_env)


def test_two_partitions_one_killed_and_restarted(pg_env: dict[str, str]) -> None:
    part0 = cli(pg_env, "run", SYSTEM, "--app", "Counters", "--partition", "0/2")
    part1 = cli(pg_env, "run", SYSTEM, "--app", "Counters", "--partition", "1/2")
    stream_commands(pg_env, kill_at={COMMANDS // 2: [part1]})
    part1_again = cli(pg_env, "run", SYSTEM, "--app", "Counters", "--partition", "1/2")
    try:
        table = wait_for_zero_lag(pg_env, rows=2)
        assert "Counters[0/2]" in table and "Counters[1/2]" in table
    finally:
        stop(part0)
        stop(part1_again)
    assert_counts_exact(pg_env, tracking_names=("DogSchool[0/2]", "DogSchool[1/2]"))


def test_worker_fails_clearly_on_an_unreachable_database(pg_env: dict[str, str]) -> None:
    # (Without retries: an unreachable server is otherwise waited for, 30 s by default.)
    result = cli_result(dict(pg_env, POSTGRES_PORT="1", RETRY_TIMEOUT="0"), "run", SYSTEM)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eventsourcing: error:")
    assert "127.0.0.1:1" in lines[0]


@pytest.mark.parametrize(
    "path, reason",
    [
        ("no_such_package.module:system", "cannot import"),
        ("examples.dogschool", "PACKAGE.MODULE:NAME"),
        ("examples.dogschool:Counters", "not a System"),
    ],
)
def test_worker_fails_clearly_on_a_bad_system_path(path: str, reason: str) -> None:
    result = cli_result({}, "run", path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], result.stderr


def test_multi_process_runner(pg_env: dict[str, str]) -> None:
    runner = MultiProcessRunner(system, env=pg_env, partitions={"Counters": 2}, poll_interval=0.2)
    with runner:
        school = runner.get(DogSchool)
        dog_ids = [school.register_dog(f"dog{i}") for i in range(3)]
        for i in range(60):
            school.add_trick(dog_ids[i % 3], TRICKS[i % 3])
        runner.wait(timeout=30)
        counters = runner.get(Counters)
        assert [counters.get_count(t) for t in TRICKS[:3]] == [20, 20, 20]
        assert len(runner.workers) == 2


def test_progress_bar_draws_on_one_line() -> None:
    import io

    from eventsourcing.cli import _ProgressBar

    stream = io.StringIO()
    bar = _ProgressBar("Counters <- DogSchool", 0, 1000, stream, width=10)
    bar.update(500)
    bar.update(1000)
    drawn = stream.getvalue().split("\r")
    assert drawn[1] == "Counters <- DogSchool [#####     ]  50% 500/1000"
    assert drawn[2] == "Counters <- DogSchool [##########] 100% 1000/1000\n"
