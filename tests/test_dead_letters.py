"""Poison events: retried, then parked as dead letters; the follower goes on with other
aggregates, parks later events of the same aggregate behind, and tracking moves
exactly once per upstream event. Operators retry or skip parked events."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from eventsourcing._deadletters import PARKED, RETRIED, SKIPPED
from eventsourcing._parking import DeadLetterError
from eventsourcing.system import (
    EventProcessingError,
    MultiThreadedRunner,
    ProcessingEvent,
    SingleThreadedRunner,
    System,
)
from examples import dogschool
from examples.dogschool import Dog, DogSchool

# Tricks the policy cannot count (until ``fixed`` is set, as after a fix).
POISON = {"explode"}


class Counters(dogschool.Counters):
    fixed = False

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        if isinstance(domain_event, Dog.TrickAdded):
            if domain_event.trick in POISON and not type(self).fixed:
                raise ValueError(f"cannot count {domain_event.trick!r}")
        super().policy(domain_event, processing_event)


system = System(pipes=[[DogSchool, Counters]])

QUICK = {"FOLLOWER_RETRY_DELAY": "0"}


@pytest.fixture(autouse=True)
def _not_fixed() -> Any:
    Counters.fixed = False
    yield
    Counters.fixed = False


def test_a_poison_event_is_parked_and_the_follower_goes_on(
    persistence_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventsourcing")
    env = dict(persistence_env, **QUICK)
    with MultiThreadedRunner(system, env=env) as runner:
        school = runner.get(DogSchool)
        counters = runner.get(Counters)
        poisoned, other = school.register_dog("Rex"), school.register_dog("Fido")
        school.add_trick(poisoned, "sit")  # 3
        school.add_trick(poisoned, "explode")  # 4: parked
        school.add_trick(other, "sit")  # 5: another aggregate: processed
        school.add_trick(poisoned, "beg")  # 6: parked behind 4
        school.add_trick(other, "beg")  # 7
        runner.wait(timeout=60)
        assert not runner.has_errored.is_set()
        assert counters.get_count("sit") == 2
        assert counters.get_count("beg") == 1  # Fido's only: Rex's waits behind
        assert counters.recorder.max_tracking_id("DogSchool") == 7
        letters = counters.dead_letters("DogSchool")
        assert [(d.notification_id, d.status) for d in letters] == [(4, PARKED), (6, PARKED)]
        first, behind = letters
        assert first.attempts == 4  # the first try and FOLLOWER_RETRIES (3) more
        assert first.error_type == "ValueError" and "cannot count" in first.error_message
        assert "ValueError" in first.traceback and first.upstream == "DogSchool"
        assert first.originator_id == str(poisoned) and first.topic.endswith("TrickAdded")
        assert first.first_failed <= first.last_failed
        assert behind.attempts == 0 and behind.error_type == "ParkedBehind"
        assert "notification 4" in behind.error_message
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "parked notification 4" in errors[0].getMessage()
    assert "Traceback" in errors[0].getMessage()


def test_retry_processes_parked_events_in_order_exactly_once(
    persistence_env: dict[str, str],
) -> None:
    env = dict(persistence_env, **QUICK)
    with MultiThreadedRunner(system, env=env) as runner:
        school = runner.get(DogSchool)
        counters = runner.get(Counters)
        dog = school.register_dog("Rex")
        for trick in ("explode", "sit", "explode"):
            school.add_trick(dog, trick)
        runner.wait(timeout=60)
        assert counters.get_count("sit") == 0
        # Not fixed yet: the first fails again, and the others stay behind it.
        done, failed = counters.retry_dead_letters("DogSchool")
        assert done == [] and [d.notification_id for d in failed] == [2]
        assert failed[0].attempts == 5
        Counters.fixed = True
        with pytest.raises(DeadLetterError, match="behind"):
            counters.retry_dead_letters("DogSchool", letter_id=failed[0].id + 1)
        done, failed = counters.retry_dead_letters("DogSchool")
        assert [d.notification_id for d in done] == [2, 3, 4] and failed == []
        assert counters.get_count("explode") == 2 and counters.get_count("sit") == 1
        assert {d.status for d in counters.dead_letters()} == {RETRIED}
        assert counters.retry_dead_letters("DogSchool") == ([], [])  # nothing twice
        assert counters.get_count("explode") == 2
        # The aggregate is no longer parked: its next event is processed at once.
        school.add_trick(dog, "sit")
        runner.wait(timeout=60)
        assert counters.get_count("sit") == 2
        assert len(counters.dead_letters()) == 3


def test_skip_drops_a_parked_event_and_records_it(persistence_env: dict[str, str]) -> None:
    env = dict(persistence_env, **QUICK)
    with SingleThreadedRunner(system, env=env) as runner:
        school = runner.get(DogSchool)
        counters = runner.get(Counters)
        dog = school.register_dog("Rex")
        with pytest.raises(EventProcessingError):
            school.add_trick(dog, "explode")
        (letter,) = counters.dead_letters()
        skipped = counters.skip_dead_letter(letter.id or 0)
        assert skipped.status == SKIPPED
        assert [d.status for d in counters.dead_letters()] == [SKIPPED]
        with pytest.raises(DeadLetterError, match="skipped"):
            counters.skip_dead_letter(letter.id or 0)
        school.add_trick(dog, "sit")  # no longer parked behind it
        assert counters.get_count("sit") == 1 and counters.get_count("explode") == 0


def test_single_threaded_runner_raises_once_for_the_command_whose_event_was_parked(
    persistence_env: dict[str, str],
) -> None:
    env = dict(persistence_env, **QUICK)
    with SingleThreadedRunner(system, env=env) as runner:
        school = runner.get(DogSchool)
        counters = runner.get(Counters)
        dog, other = school.register_dog("Rex"), school.register_dog("Fido")
        with pytest.raises(EventProcessingError) as info:
            school.add_trick(dog, "explode")
        message = str(info.value)
        assert "parked notification 3 of DogSchool" in message and str(dog) in message
        assert isinstance(info.value.__cause__, EventProcessingError)
        school.add_trick(other, "sit")  # later commands do not raise
        school.add_trick(dog, "sit")  # (parked behind: logged, not raised)
        assert counters.get_count("sit") == 1
        assert [d.notification_id for d in counters.dead_letters()] == [3, 5]
        assert counters.recorder.max_tracking_id("DogSchool") == 5


def test_parked_state_survives_a_restart(tmp_path: Any) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "db.sqlite"),
        **QUICK,
    }
    with MultiThreadedRunner(system, env=env) as runner:
        school = runner.get(DogSchool)
        dog = school.register_dog("Rex")
        school.add_trick(dog, "explode")
        runner.wait(timeout=60)
    with MultiThreadedRunner(system, env=env) as runner:
        runner.get(DogSchool).add_trick(dog, "sit")
        runner.wait(timeout=60)
        counters = runner.get(Counters)
        assert counters.get_count("sit") == 0  # parked behind, after the restart too
        assert [d.error_type for d in counters.dead_letters()] == ["ValueError", "ParkedBehind"]


def test_a_retry_that_succeeds_is_not_parked(persistence_env: dict[str, str]) -> None:
    failures = {"left": 2}

    class Flaky(Counters):
        name = "Counters"

        def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
            if failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("a passing glitch")
            super().policy(domain_event, processing_event)

    env = dict(persistence_env, **QUICK)
    with SingleThreadedRunner(System(pipes=[[DogSchool, Flaky]]), env=env) as runner:
        school = runner.get(DogSchool)
        school.add_trick(school.register_dog("Rex"), "sit")
        flaky = runner.get(Flaky)
        assert flaky.get_count("sit") == 1 and flaky.dead_letters() == []


def test_follower_on_error_stop_keeps_stopping(persistence_env: dict[str, str]) -> None:
    env = dict(persistence_env, FOLLOWER_ON_ERROR="stop")
    with SingleThreadedRunner(system, env=env) as runner:
        school = runner.get(DogSchool)
        dog = school.register_dog("Rex")
        for _ in range(2):
            with pytest.raises(EventProcessingError, match="failed to process"):
                school.add_trick(dog, "explode")
        assert runner.get(Counters).dead_letters() == []


@pytest.mark.parametrize(
    "key, value",
    [("FOLLOWER_RETRIES", "-1"), ("FOLLOWER_RETRY_DELAY", "soon"), ("FOLLOWER_ON_ERROR", "x")],
)
def test_bad_settings_are_named(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key):
        Counters(env={key: value})


def test_reading_dead_letters_creates_no_table(tmp_path: Any) -> None:
    import sqlite3

    db = tmp_path / "db.sqlite"
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    counters = Counters(env=env)
    assert counters.dead_letters() == []
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert not any("dead" in table for table in tables)
