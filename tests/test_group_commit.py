"""Under the threaded runners, a follower that events keep reaching waits a little
before its next batch, so that many events share one commit (group commit); a
follower woken after a quiet spell starts at once."""

import itertools
import threading
import time

import pytest

from eventsourcing import _follower
from eventsourcing.system import Follower, MultiThreadedRunner, System
from examples.dogschool import DogSchool
from tests.test_core_system import Counters

ENTERED = threading.Event()
GATE = threading.Event()
POSITIONS: list[int] = []  # per upstream event, the position its batch records


class GatedCounters(Counters):
    """Counters that hold the trick "hold" at a gate, and log what each batch held."""

    name = "Counters"

    def policy(self, domain_event, processing_event):
        POSITIONS.append(processing_event.tracking.notification_id)
        if getattr(domain_event, "trick", None) == "hold":
            ENTERED.set()
            assert GATE.wait(timeout=10)
        super().policy(domain_event, processing_event)


def batches() -> list[int]:
    """How many upstream events each batch held, in order (the registration's first)."""
    return [len(list(group)) for _, group in itertools.groupby(POSITIONS)]


@pytest.fixture(autouse=True)
def _reset():
    ENTERED.clear()
    GATE.clear()
    POSITIONS.clear()
    yield
    GATE.set()


def start(delay: str) -> MultiThreadedRunner:
    runner = MultiThreadedRunner(
        System(pipes=[[DogSchool, GatedCounters]]), env={"FOLLOWER_BATCH_DELAY": delay}
    )
    runner.start()
    return runner


def stream_while_held(runner: MultiThreadedRunner, pause: float, held: float = 0.0) -> None:
    """Three tricks arrive while the follower is busy with "hold" (for at least
    ``held`` seconds), then three more ``pause`` seconds after it is let go."""
    school = runner.get(DogSchool)
    dog_id = school.register_dog("Fido")
    runner.wait(timeout=10)
    school.add_trick(dog_id, "hold")
    assert ENTERED.wait(timeout=10)
    for _ in range(3):
        school.add_trick(dog_id, "sit")
    time.sleep(held)
    GATE.set()
    time.sleep(pause)
    for _ in range(3):
        school.add_trick(dog_id, "beg")


def test_events_streaming_in_are_gathered_into_one_batch() -> None:
    runner = start("0.5")
    try:
        stream_while_held(runner, pause=0.05)
        runner.wait(timeout=10)
        # The follower was woken while busy, so it waited: the three tricks queued
        # and the three that came 50 ms later share one batch, one commit.
        assert batches() == [1, 1, 6]
        counters = runner.get(GatedCounters)
        assert [counters.get_count(t) for t in ("hold", "sit", "beg")] == [1, 3, 3]
    finally:
        runner.stop()


def test_without_a_delay_each_wake_starts_a_batch() -> None:
    runner = start("0")
    try:
        stream_while_held(runner, pause=0.05)
        runner.wait(timeout=10)
        assert batches()[:3] == [1, 1, 3]
        assert sum(batches()) == 8
    finally:
        runner.stop()


def test_a_follower_woken_after_a_quiet_spell_is_not_delayed() -> None:
    runner = start("30")
    try:
        school = runner.get(DogSchool)
        dog_id = school.register_dog("Fido")
        for i in range(5):
            school.add_trick(dog_id, "sit")
            runner.wait(timeout=5)  # far less than the delay: processed at once
            assert runner.get(GatedCounters).get_count("sit") == i + 1
    finally:
        runner.stop()


def test_stopping_cuts_a_gathering_wait_short() -> None:
    runner = start("30")
    school, counters = runner.get(DogSchool), runner.get(GatedCounters)
    dog_id = school.register_dog("Fido")
    runner.wait(timeout=10)
    school.add_trick(dog_id, "hold")
    assert ENTERED.wait(timeout=10)
    school.add_trick(dog_id, "sit")  # arrives while busy: the follower will gather
    GATE.set()
    deadline = time.monotonic() + 10
    while counters.position("DogSchool") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batches() == [1, 1]
    started = time.monotonic()
    runner.stop()
    assert time.monotonic() - started < 10  # not the 30 s of the delay
    assert batches() == [1, 1]  # the trick that came while busy waits for a restart


def follow_the_last_batch(monkeypatch, limit: float) -> None:
    """An "auto" gather as long as the last batch (no averaging), at most ``limit``."""
    monkeypatch.setattr(_follower, "BATCH_SMOOTHING", 1.0)
    monkeypatch.setattr(_follower, "AUTO_GATHER_FRACTION", 1.0)
    monkeypatch.setattr(_follower, "AUTO_GATHER_LIMIT", limit)


def test_auto_gathers_for_about_as_long_as_batches_take(monkeypatch) -> None:
    follow_the_last_batch(monkeypatch, limit=5.0)
    runner = start("auto")
    try:
        # The held batch took 0.5 s: the next one waits as long, so the three tricks
        # that came 50 ms after the hold was let go share its batch.
        stream_while_held(runner, pause=0.05, held=0.5)
        runner.wait(timeout=10)
        assert batches() == [1, 1, 6]
    finally:
        runner.stop()


def test_auto_gathers_no_longer_than_its_limit(monkeypatch) -> None:
    follow_the_last_batch(monkeypatch, limit=0.02)
    runner = start("auto")
    try:
        stream_while_held(runner, pause=0.4, held=0.5)
        runner.wait(timeout=10)
        assert batches()[:3] == [1, 1, 3]  # (not six: the wait ended after 20 ms)
        assert sum(batches()) == 8
    finally:
        runner.stop()


def test_auto_gathers_a_part_of_the_typical_batch() -> None:
    assert _follower.gather_seconds("auto", 0.002) == pytest.approx(0.0016)  # 0.8 of it
    assert _follower.gather_seconds("auto", 2.0) == _follower.AUTO_GATHER_LIMIT
    # The typical batch moves a tenth of the way to each batch's duration: one long
    # batch (a backlog) barely moves it; a lasting change does.
    typical = 0.002
    typical = _follower.typical_batch_seconds(typical, 0.102)
    assert typical == pytest.approx(0.012)
    for _ in range(50):
        typical = _follower.typical_batch_seconds(typical, 0.001)
    assert typical == pytest.approx(0.001, abs=1e-4)
    assert _follower.gather_seconds(0.25, 2.0) == 0.25  # a number is used as it is
    assert _follower.gather_seconds(None, 2.0) == 0.0


def test_the_delay_defaults_by_store_and_can_be_set(tmp_path) -> None:
    assert Counters().batch_delay == 0.0  # in memory, a commit costs next to nothing
    sqlite = {"PERSISTENCE_MODULE": "eventsourcing.sqlite"}
    on_disk = Counters(env={**sqlite, "SQLITE_DBNAME": str(tmp_path / "c.db")})
    assert on_disk.batch_delay == "auto"  # about one commit, only while busy
    assert Counters(env={"FOLLOWER_BATCH_DELAY": " Auto "}).batch_delay == "auto"
    assert Counters(env={"FOLLOWER_BATCH_DELAY": "0.01"}).batch_delay == 0.01
    assert Counters(env={"COUNTERS_FOLLOWER_BATCH_DELAY": "0"}).batch_delay == 0.0
    assert issubclass(Counters, Follower)

    class Patient(Counters):
        batch_delay = 0.05

    assert Patient().batch_delay == 0.05
    assert Patient(env={"FOLLOWER_BATCH_DELAY": "0.001"}).batch_delay == 0.001

    class Adaptive(Counters):
        batch_delay = "auto"

    assert Adaptive().batch_delay == "auto"


def test_a_bad_class_delay_is_named_too() -> None:
    class Backwards(Counters):
        batch_delay = -0.5

    with pytest.raises(ValueError, match="FOLLOWER_BATCH_DELAY .* not '-0.5'"):
        Backwards()


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_delay_is_named_in_the_error(value) -> None:
    with pytest.raises(ValueError, match=f"FOLLOWER_BATCH_DELAY .* not '{value}'"):
        Counters(env={"FOLLOWER_BATCH_DELAY": value})
