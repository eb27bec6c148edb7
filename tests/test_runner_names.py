"""Runner names of the documented 9.x API beyond the two classic ones: a system written
for that API runs under each of them, as it does under the runner of the same kind."""

from __future__ import annotations

import time
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest

from eventsourcing.application import AggregateNotFound, Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.system import (
    MultiThreadedRunner,
    ProcessApplication,
    Runner,
    SingleThreadedRunner,
    System,
)


class Pupil(Aggregate):
    @event("Enrolled")
    def __init__(self, name: str) -> None:
        self.name = name
        self.skills: list[str] = []

    @event("SkillLearned")
    def learn(self, skill: str) -> None:
        self.skills.append(skill)


class Academy(Application):
    def enrol(self, name: str) -> UUID:
        pupil = Pupil(name)
        self.save(pupil)
        return pupil.id

    def teach(self, pupil_id: UUID, skill: str) -> None:
        pupil = self.repository.get(pupil_id)
        pupil.learn(skill)
        self.save(pupil)


class Tally(Aggregate):
    def __init__(self, skill: str) -> None:
        self.skill = skill
        self.count = 0

    @classmethod
    def create_id(cls, skill: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/tallies/{skill}")

    @event("Counted")
    def count_one(self) -> None:
        self.count += 1


class Tallies(ProcessApplication):
    @singledispatchmethod
    def policy(self, domain_event, processing_event):  # type: ignore[no-untyped-def]
        """Other events change nothing here."""

    @policy.register(Pupil.SkillLearned)
    def _(self, domain_event, processing_event):  # type: ignore[no-untyped-def]
        try:
            tally = self.repository.get(Tally.create_id(domain_event.skill))
        except AggregateNotFound:
            tally = Tally(domain_event.skill)
        tally.count_one()
        processing_event.collect_events(tally)

    def count_of(self, skill: str) -> int:
        try:
            return self.repository.get(Tally.create_id(skill)).count
        except AggregateNotFound:
            return 0


LESSONS = [(0, "juggle"), (1, "juggle"), (2, "juggle"), (0, "whistle"), (1, "whistle"), (0, "dive")]
EXPECTED = {"juggle": 3, "whistle": 2, "dive": 1}


def teach_lessons(runner: Runner) -> Tallies:
    academy = runner.get(Academy)
    pupils = [academy.enrol(name) for name in ("Ann", "Bob", "Cy")]
    for index, skill in LESSONS:
        academy.teach(pupils[index], skill)
    return runner.get(Tallies)


def counts(tallies: Tallies) -> dict[str, int]:
    return {skill: tallies.count_of(skill) for skill in EXPECTED}


def test_new_single_threaded_runner_processes_before_each_command_returns() -> None:
    from eventsourcing.system import NewSingleThreadedRunner

    runner = NewSingleThreadedRunner(System(pipes=[[Academy, Tallies]]))
    runner.start()
    try:
        assert counts(teach_lessons(runner)) == EXPECTED
    finally:
        runner.stop()


def test_new_multi_threaded_runner_processes_in_its_threads() -> None:
    from eventsourcing.system import NewMultiThreadedRunner

    with NewMultiThreadedRunner(System(pipes=[[Academy, Tallies]])) as runner:
        tallies = teach_lessons(runner)
        deadline = time.monotonic() + 10
        while counts(tallies) != EXPECTED and time.monotonic() < deadline:
            time.sleep(0.01)
        assert counts(tallies) == EXPECTED
        assert runner.watch_for_errors(timeout=0) is False


@pytest.mark.parametrize(
    "name, same_as",
    [
        ("NewSingleThreadedRunner", SingleThreadedRunner),
        ("NewMultiThreadedRunner", MultiThreadedRunner),
    ],
)
def test_new_runner_names_are_exported_runners_of_the_same_kind(name: str, same_as: type) -> None:
    import eventsourcing.system

    assert name in eventsourcing.system.__all__
    assert issubclass(getattr(eventsourcing.system, name), same_as)
