"""The operator's command line on a SQLite file: arguments checked (exit 2, one line),
status as a health check that creates nothing, dead letters listed, retried and
skipped, one worker per partition, and re-partitioning that keeps counts exact."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventsourcing.cli import _explained
from eventsourcing.system import SingleThreadedRunner
from examples.dogschool import DogSchool

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DOGS = "examples.dogschool:system"
POISON = "cli_poison_system:system"
TRICKS = ["roll over", "fetch ball", "play dead", "sit", "beg"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "events.sqlite"),
        "FOLLOWER_RETRY_DELAY": "0",
    }


def cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    full_env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}", **env)
    return subprocess.Popen(
        [sys.executable, "-m", "eventsourcing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=str(TESTS),
    )


def result(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    process = cli(env, *args)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_one_line_error(outcome: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert outcome.returncode == 2, (outcome.stdout, outcome.stderr)
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eventsourcing: error"), outcome.stderr
    for part in parts:
        assert part in lines[0], lines[0]


# -- arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("partition", ["", "2/2", "x", "1/0", "-1/2", "1/2/3"])
def test_a_bad_partition_is_refused(env: dict[str, str], partition: str) -> None:
    outcome = result(env, "run", DOGS, f"--partition={partition}")
    assert outcome.returncode == 2
    assert "--partition" in outcome.stderr and "K/N" in outcome.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", DOGS, "--poll-interval", "0"],
        ["run", DOGS, "--poll-interval", "-1"],
        ["run", DOGS, "--poll-interval", "nan"],
        ["status", DOGS, "--interval", "0"],
    ],
)
def test_intervals_must_be_positive(env: dict[str, str], args: list[str]) -> None:
    outcome = result(env, *args)
    assert outcome.returncode == 2 and "positive" in outcome.stderr


def test_multi_process_runner_checks_the_poll_interval() -> None:
    from eventsourcing.system import MultiProcessRunner
    from examples.dogschool import system

    with pytest.raises(ValueError, match="positive"):
        MultiProcessRunner(system, poll_interval=0)


def test_log_level_before_or_after_the_subcommand(env: dict[str, str]) -> None:
    assert result(env, "--log-level", "debug", "status", DOGS).returncode == 0
    assert result(env, "status", DOGS, "--log-level", "warning").returncode == 0


def test_version(env: dict[str, str]) -> None:
    outcome = result(env, "--version")
    assert outcome.returncode == 0 and outcome.stdout.startswith("keel-eventsourcing ")


@pytest.mark.parametrize("args", [["run", DOGS], ["status", DOGS], ["dead-letters", "list", DOGS]])
def test_the_in_memory_store_is_refused(args: list[str]) -> None:
    outcome = result({"PERSISTENCE_MODULE": "eventsourcing.popo"}, *args)
    assert_one_line_error(outcome, "in-memory store", "PERSISTENCE_MODULE")


def test_a_module_that_fails_to_import_is_reported_as_itself(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "broken_system.py").write_text("import os\n\nx = 1 / 0\n")
    process = subprocess.run(
        [sys.executable, "-m", "eventsourcing", "status", "broken_system:system"],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env, PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}"),
        timeout=60,
    )
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr
    assert "ZeroDivisionError" in lines[0] and "not found" not in lines[0]
    assert f"{tmp_path / 'broken_system.py'}:3" in lines[0]


def test_a_missing_module_is_reported_as_not_found(env: dict[str, str]) -> None:
    assert_one_line_error(result(env, "status", "no_such_module:system"), "not found")


def test_a_missing_optional_dependency_names_the_extra() -> None:
    error = RuntimeError("cannot build the factory")
    error.__cause__ = ModuleNotFoundError("No module named 'psycopg'", name="psycopg")
    assert "'postgres' extra" in _explained(error)
    assert "keel-eventsourcing[postgres]" in _explained(error)


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"PERSISTENCE_MODULE": "no.such.store"}, "no.such.store"),
        ({"IS_SNAPSHOTTING_ENABLED": "maybe"}, "'maybe'"),
        ({"PERSISTENCE_MODULE": "eventsourcing.postgres"}, "POSTGRES_DBNAME"),
    ],
)
@pytest.mark.parametrize("command", ["status", "run"])
def test_a_bad_setting_is_one_line_naming_the_application_and_prefix(
    env: dict[str, str], settings: dict[str, str], says: str, command: str
) -> None:
    outcome = result(dict(env, **settings), command, DOGS)
    app = "DogSchool" if command == "status" else "Counters"
    assert_one_line_error(outcome, says, f"{app}:", f"{app.upper()}_NAME")


# -- status -------------------------------------------------------------------------


def tables(db: str) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}


def test_status_creates_no_tables(env: dict[str, str]) -> None:
    outcome = result(env, "status", DOGS, "--json")
    assert outcome.returncode == 0, outcome.stderr
    rows = json.loads(outcome.stdout)["followers"]
    assert rows[0]["follower"] == "Counters" and rows[0]["lag"] == 0
    db = env["SQLITE_DBNAME"]
    assert not Path(db).exists() or tables(db) == set()


def make_parked(env: dict[str, str]) -> None:
    """Record a poison event (and a later one of its aggregate) in the store."""
    os.environ.pop("POISON_FIXED", None)
    sys.path.insert(0, str(TESTS))
    from cli_poison_system import system

    with SingleThreadedRunner(system, env=env) as runner:
        school = runner.get(DogSchool)
        dog = school.register_dog("Rex")
        with pytest.raises(Exception, match="parked"):
            school.add_trick(dog, "explode")
        school.add_trick(dog, "sit")
        school.add_trick(school.register_dog("Fido"), "sit")


def test_status_is_a_health_check(env: dict[str, str]) -> None:
    make_parked(env)
    outcome = result(env, "status", POISON)
    assert outcome.returncode == 1, outcome.stderr
    assert "cannot count explosions" in outcome.stdout
    rows = json.loads(result(env, "status", POISON, "--json").stdout)["followers"]
    assert rows[0]["parked"] == 2 and "ValueError" in rows[0]["last_error"]
    # Lagging more than --max-lag is unhealthy too.
    school = DogSchool(env=env)
    school.add_trick(school.register_dog("Max"), "sit")
    school.close()
    healthy_env = dict(env)
    assert result(healthy_env, "status", DOGS, "--max-lag", "100").returncode == 1  # parked
    lagging = json.loads(result(env, "status", DOGS, "--json").stdout)["followers"][0]
    assert lagging["lag"] == 2


def test_status_exits_1_when_a_follower_lags_more_than_max_lag(env: dict[str, str]) -> None:
    school = DogSchool(env=env)
    dog = school.register_dog("Rex")
    for trick in TRICKS:
        school.add_trick(dog, trick)
    school.close()
    assert result(env, "status", DOGS, "--max-lag", "5").returncode == 1
    assert result(env, "status", DOGS, "--max-lag", "6").returncode == 0


def test_status_watch_shows_a_timestamp_and_repeats(env: dict[str, str]) -> None:
    process = cli(env, "status", DOGS, "--watch", "--interval", "0.2")
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)
    blocks = [b for b in stdout.split("\n\n") if b.strip()]
    assert len(blocks) >= 2 and all(DOGS + " at 20" in b for b in blocks)


# -- dead letters ----------------------------------------------------------------------


def test_dead_letters_list_retry_and_skip(env: dict[str, str]) -> None:
    make_parked(env)
    listed = result(env, "dead-letters", "list", POISON)
    assert listed.returncode == 0, listed.stderr
    assert "cannot count explosions" in listed.stdout and "ParkedBehind" in listed.stdout
    letters = json.loads(result(env, "dead-letters", "list", POISON, "--json").stdout)
    assert [letter["notification_id"] for letter in letters] == [2, 3]
    first, behind = letters
    # Retrying the second alone is refused: it is behind the first.
    refused = result(env, "dead-letters", "retry", POISON, "--id", str(behind["id"]))
    assert_one_line_error(refused, "behind")
    # Not fixed yet: the retry fails again; nothing changes.
    again = result(env, "dead-letters", "retry", POISON)
    assert again.returncode == 1 and "failed again" in again.stdout
    # Fixed: both processed, in order, once.
    fixed = result(dict(env, POISON_FIXED="1"), "dead-letters", "retry", POISON)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.count("retried dead letter") == 2
    assert result(dict(env, POISON_FIXED="1"), "dead-letters", "retry", POISON).stdout == ""
    sys.path.insert(0, str(TESTS))
    from cli_poison_system import Counters as PoisonCounters

    counters = PoisonCounters(env=env)
    try:
        assert counters.get_count("explode") == 1 and counters.get_count("sit") == 2
    finally:
        counters.close()
    assert result(env, "status", POISON).returncode == 0
    skipped = result(env, "dead-letters", "skip", POISON, "--app", "Counters", "--id", "1")
    assert_one_line_error(skipped, "retried, not parked")


def test_dead_letters_retry_of_an_unknown_id_says_so(env: dict[str, str]) -> None:
    make_parked(env)
    assert_one_line_error(
        result(env, "dead-letters", "retry", POISON, "--id", "99"), "no dead letter 99"
    )


def test_dead_letters_skip(env: dict[str, str]) -> None:
    make_parked(env)
    outcome = result(env, "dead-letters", "skip", POISON, "--app", "Counters", "--id", "1")
    assert outcome.returncode == 0 and "skipped dead letter 1" in outcome.stdout
    everything = json.loads(result(env, "dead-letters", "list", POISON, "--all", "--json").stdout)
    assert [letter["status"] for letter in everything] == ["skipped", "parked"]
    # The second is no longer behind a parked one: it can be retried (and succeeds).
    assert result(env, "dead-letters", "retry", POISON).returncode == 0


# -- workers ---------------------------------------------------------------------------


def stream(env: dict[str, str], count: int, start: int = 0) -> None:
    school = DogSchool(env=env)
    try:
        dogs = [school.register_dog(f"dog{i}") for i in range(7)]
        for i in range(start, start + count):
            school.add_trick(dogs[i % 7], TRICKS[i % len(TRICKS)])
    finally:
        school.close()


def wait_caught_up(env: dict[str, str], rows: int, timeout: float = 120) -> list[dict[str, int]]:
    deadline = time.monotonic() + timeout
    while True:
        outcome = result(env, "status", DOGS, "--json")
        followers = json.loads(outcome.stdout)["followers"]
        if len(followers) == rows and all(row["lag"] == 0 for row in followers):
            return followers
        assert time.monotonic() < deadline, outcome.stdout
        time.sleep(0.3)


def stop(worker: subprocess.Popen[str]) -> str:
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    return stderr


def test_a_second_worker_for_the_same_partition_exits(env: dict[str, str]) -> None:
    first = cli(env, "run", DOGS, "--partition", "0/2", "--poll-interval", "0.2")
    try:
        time.sleep(4)  # started, holding its lock
        second = result(env, "run", DOGS, "--partition", "0/2")
        assert_one_line_error(second, "already runs Counters partition 0/2")
        other = cli(env, "run", DOGS, "--partition", "1/2")  # another partition is fine
        time.sleep(2)
        assert other.poll() is None
        stop(other)
    finally:
        stop(first)


def test_repartitioning_2_to_3_under_a_stream_keeps_counts_exact(env: dict[str, str]) -> None:
    from test_crash import assert_counts_exact

    old = [cli(env, "run", DOGS, "--partition", f"{k}/2", "--poll-interval", "0.2") for k in (0, 1)]
    stream(env, 300)
    time.sleep(1)  # the old workers are part-way through
    for worker in old:
        stop(worker)
    stream(env, 200, start=300)  # recorded while no worker runs
    refused = result(env, "run", DOGS, "--partition", "0/3")
    assert_one_line_error(refused, "2 partitions", "3 partitions", "--repartition")
    new = [
        cli(env, "run", DOGS, "--partition", f"{k}/3", "--repartition", "--poll-interval", "0.2")
        for k in range(3)
    ]
    try:
        stream(env, 300, start=500)
        rows = wait_caught_up(env, rows=3)
        assert sorted(row["partition"] for row in rows) == ["0/3", "1/3", "2/3"]  # type: ignore[misc]
    finally:
        for worker in new:
            stop(worker)
    names = tuple(f"DogSchool[{k}/3]" for k in range(3))
    assert_counts_exact(env, tracking_names=names)
    # A stray unpartitioned worker is refused now.
    assert_one_line_error(result(env, "run", DOGS), "3 partitions", "unpartitioned")


# -- the main script -------------------------------------------------------------------


def run_script(
    tmp_path: Path, source: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(source)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO), **env),
        timeout=120,
    )


def test_multi_process_runner_refuses_classes_defined_in_main(
    tmp_path: Path, env: dict[str, str]
) -> None:
    source = (
        "from eventsourcing.system import MultiProcessRunner, ProcessApplication, System\n"
        "from examples.dogschool import DogSchool\n"
        "class Counters(ProcessApplication):\n"
        "    pass\n"
        "system = System(pipes=[[DogSchool, Counters]])\n"
        "try:\n"
        "    MultiProcessRunner(system).start()\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    outcome = run_script(tmp_path, source, env)
    assert "Counters are defined in the main script" in outcome.stdout, outcome.stderr
    assert "importable module" in outcome.stdout


def test_multi_process_runner_works_with_a_system_imported_into_main(
    tmp_path: Path, env: dict[str, str]
) -> None:
    source = (
        "from eventsourcing.system import MultiProcessRunner\n"
        "from examples.dogschool import Counters, DogSchool, system\n"
        "assert system.topic == 'examples.dogschool:system', system.topic\n"
        "with MultiProcessRunner(system, poll_interval=0.2) as runner:\n"
        "    school = runner.get(DogSchool)\n"
        "    school.add_trick(school.register_dog('Rex'), 'sit')\n"
        "    runner.wait(timeout=60)\n"
        "    print('count', runner.get(Counters).get_count('sit'))\n"
    )
    outcome = run_script(tmp_path, source, env)
    assert "count 1" in outcome.stdout, outcome.stderr


def test_the_readme_deployment_works_after_the_demo_ran(env: dict[str, str]) -> None:
    demo = subprocess.run(
        [sys.executable, str(REPO / "examples" / "dogschool.py")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO), **env),
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    # The demo recorded Counters unpartitioned: the first partitioned start says so.
    refused = result(env, "run", DOGS, "--app", "Counters", "--partition", "0/2")
    assert_one_line_error(refused, "--repartition")
    workers = [
        cli(env, "run", DOGS, "--app", "Counters", "--partition", f"{k}/2", "--repartition")
        for k in (0, 1)
    ]
    try:
        school = DogSchool(env=env)
        dogs = [school.register_dog(name) for name in ("Billy", "Milly")]
        for dog in dogs:  # the counters the demo wrote are read back by the workers
            school.add_trick(dog, "roll over")
        school.close()
        wait_caught_up(env, rows=2)
    finally:
        for worker in workers:
            stop(worker)
    assert result(env, "status", DOGS).returncode == 0
    from examples.dogschool import Counters as DemoCounters

    counters = DemoCounters(env=env)
    try:
        assert counters.get_count("roll over") == 6 + 2  # the demo's two runs, and ours
    finally:
        counters.close()


def test_a_worker_rides_out_a_database_lock_held_past_its_timeout(env: dict[str, str]) -> None:
    stream(env, 200)  # a backlog, processed slowly: its write meets the lock
    worker_env = dict(env, SQLITE_LOCK_TIMEOUT="0.2", POLICY_DELAY="0.01")
    worker = cli(worker_env, "run", POISON, "--poll-interval", "0.2")
    assert worker.stderr is not None
    started = [worker.stderr.readline() for _ in range(1)]
    assert "running Counters" in started[0], started
    blocker = sqlite3.connect(env["SQLITE_DBNAME"], isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        time.sleep(5)  # the batch's write fails, and is tried again, for a while
        assert worker.poll() is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    try:
        deadline = time.monotonic() + 60
        while json.loads(result(env, "status", POISON, "--json").stdout)["followers"][0]["lag"]:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        stderr = "".join(started) + stop(worker)
    from test_crash import assert_counts_exact

    assert_counts_exact(env)
    warnings = [line for line in stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "locked" in warnings[0], stderr
    # One line when it is over: the store's own (it retried the write) or the follower's.
    back = ("working again", "no longer locked")
    assert sum(any(b in line for b in back) for line in stderr.splitlines()) == 1, stderr


def test_a_worker_names_its_database_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventsourcing.cli import _worker_name
    from eventsourcing.system import Partition, WorkerRunner
    from examples.dogschool import system

    name = _worker_name(["Counters"], Partition(0, 2))
    assert name == "Counters worker 0/2"
    runner = WorkerRunner(system, worker_name=name)
    assert runner.env == {"POSTGRES_APPLICATION_NAME": "Counters worker 0/2"}
    monkeypatch.setenv("POSTGRES_APPLICATION_NAME", "ops-chosen")
    assert not (WorkerRunner(system, worker_name=name).env or {})  # the operator's wins


class FakeRunner:
    """What the progress reporter reads of a worker runner."""

    def __init__(self, recorded: int, lag: int):
        self.recorded, self.lag_now = recorded, lag
        recorder = type("Recorder", (), {"max_notification_id": lambda _self: self.recorded})()
        self.apps = {"DogSchool": type("App", (), {"recorder": recorder})()}

    def lag(self) -> dict[tuple[str, str], int]:
        return {("Counters", "DogSchool"): self.lag_now}


def test_progress_on_a_terminal_draws_the_catch_up_once_then_one_live_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import io

    from eventsourcing._cli_views import ProgressReporter

    caplog.set_level("INFO", logger="eventsourcing")
    stream = io.StringIO()
    runner = FakeRunner(recorded=1000, lag=1000)
    reporter = ProgressReporter(runner, stream, on_terminal=True)
    reporter.live_every = 0
    reporter.show_backlog()
    for position in (500, 1000, 1001, 1002):
        reporter.update("Counters", "DogSchool", position)
    runner.lag_now = 0
    reporter.tick()
    reporter.tick()
    text = stream.getvalue()
    assert text.count("100% 1000/1000\n") == 1  # the bar finishes once, on its own line
    assert " 50% 500/1000" in text
    live = text.split("\n")[-1]
    assert live.count("\r\x1b[K") == 2 and live.endswith("lag 0")  # redrawn in place
    assert "events/s" in live
    assert any("caught up" in r.getMessage() for r in caplog.records)


def test_progress_without_a_terminal_is_plain_lines(caplog: pytest.LogCaptureFixture) -> None:
    import io

    from eventsourcing._cli_views import ProgressReporter

    caplog.set_level("INFO", logger="eventsourcing")
    stream = io.StringIO()
    reporter = ProgressReporter(FakeRunner(recorded=1000, lag=1000), stream, on_terminal=False)
    reporter.plain_every = 0
    reporter.show_backlog()
    reporter.update("Counters", "DogSchool", 500)
    reporter.update("Counters", "DogSchool", 1000)
    reporter.tick()
    assert stream.getvalue() == ""  # no bars, no redrawing
    messages = [r.getMessage() for r in caplog.records]
    assert any("50% (500/1000)" in m for m in messages)
    assert any("caught up with DogSchool at 1000" in m for m in messages)


def test_status_watch_redraws_in_place_on_a_terminal(env: dict[str, str]) -> None:
    import pty

    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "eventsourcing", "status", DOGS, "--watch", "--interval", "0.2"],
        stdout=child,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}", **env),
    )
    os.close(child)
    output = b""
    deadline = time.monotonic() + 30
    # Four clear-screens, so that the first three frames were read whole (the third
    # one's text comes after its clear-screen, maybe in a later read).
    while output.count(b"\x1b[H\x1b[2J") < 4 and time.monotonic() < deadline:
        output += os.read(main, 4096)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    os.close(main)
    frames = output.split(b"\x1b[H\x1b[2J")[1:]
    assert len(frames) >= 4, output
    assert all(DOGS.encode() + b" at 20" in frame for frame in frames[:3])
    assert process.returncode == 0


def test_status_workers_shows_which_partition_has_no_worker(env: dict[str, str]) -> None:
    workers = {
        k: cli(env, "run", DOGS, "--partition", f"{k}/2", "--poll-interval", "0.2") for k in (0, 1)
    }
    try:
        stream(env, 40)
        wait_caught_up(env, rows=2)
        running = result(env, "status", DOGS, "--workers", "--json")
        assert running.returncode == 0, running.stdout
        assert [r["worker"] for r in json.loads(running.stdout)["followers"]] == ["running"] * 2
        stop(workers.pop(1))
        outcome = result(env, "status", DOGS, "--workers")
        assert outcome.returncode == 1, outcome.stdout
        lines = outcome.stdout.splitlines()
        assert lines[0].split()[-2:] == ["worker", "lag"]
        assert "running" in lines[1] and "Counters[0/2]" in lines[1]
        assert "stopped" in lines[2] and "Counters[1/2]" in lines[2]
        assert result(env, "status", DOGS).returncode == 0  # not asked: not checked
    finally:
        for worker in workers.values():
            stop(worker)


def test_status_shows_a_partition_that_recorded_nothing_yet(env: dict[str, str]) -> None:
    worker = cli(env, "run", DOGS, "--partition", "0/2", "--poll-interval", "0.2")
    try:
        stream(env, 40)
        deadline = time.monotonic() + 60
        while True:
            rows = json.loads(result(env, "status", DOGS, "--json").stdout)["followers"]
            if rows[0]["lag"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert [(r["partition"], r["lag"] > 0) for r in rows] == [("0/2", False), ("1/2", True)]
    finally:
        stop(worker)
