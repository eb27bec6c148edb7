"""A leader's ``notify_topics`` (9.x ``Application.notify_topics``): in a system, its
followers are told of, and process, only its events of those topics."""

from __future__ import annotations

from typing import Any

import pytest

from eventsourcing.domain import Aggregate, event
from eventsourcing.system import (
    Leader,
    MultiThreadedRunner,
    ProcessApplication,
    ProcessingEvent,
    RecordingEvent,
    SingleThreadedRunner,
    System,
)
from eventsourcing.utils import get_topic


class Pet(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name

    @event("Barked")
    def bark(self) -> None:
        pass


BARKED = get_topic(Pet.Barked)
REGISTERED = get_topic(Pet.Registered)


class Kennel(ProcessApplication):
    def register_and_bark(self, name: str, barks: int = 1) -> int:
        pet = Pet(name)
        for _ in range(barks):
            pet.bark()
        return self.save(pet)[-1].notification.id


class BarkingKennel(Kennel):
    notify_topics = [BARKED]


class Listener(ProcessApplication):
    """Remembers the class names of the events its policy is given."""

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self.seen: list[str] = []

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        self.seen.append(type(domain_event).__name__)


class RegistrationListener(Listener):
    topics = [REGISTERED]


def test_an_application_notifies_every_topic_by_default() -> None:
    assert list(Kennel.notify_topics) == []
    with SingleThreadedRunner(System(pipes=[[Kennel, Listener]])) as runner:
        runner.get(Kennel).register_and_bark("Fido")
        assert runner.get(Listener).seen == ["Registered", "Barked"]


@pytest.mark.parametrize("runner_class", [SingleThreadedRunner, MultiThreadedRunner])
def test_followers_process_only_the_notified_topics(runner_class: Any, persistence_env) -> None:
    with runner_class(System(pipes=[[BarkingKennel, Listener]]), env=persistence_env) as runner:
        kennel = runner.get(BarkingKennel)
        kennel.register_and_bark("Fido", barks=2)
        last = kennel.register_and_bark("Rex")
        if isinstance(runner, MultiThreadedRunner):
            runner.wait(timeout=10)
        listener = runner.get(Listener)
        assert listener.seen == ["Barked", "Barked", "Barked"]
        assert listener.recorder.max_tracking_id("BarkingKennel") == last


def test_a_follower_with_topics_processes_those_also_notified() -> None:
    # Registered is the follower's, and not notified: it processes nothing of this leader.
    with SingleThreadedRunner(System(pipes=[[BarkingKennel, RegistrationListener]])) as runner:
        runner.get(BarkingKennel).register_and_bark("Fido")
        listener = runner.get(RegistrationListener)
        assert listener.seen == []
        assert listener.topics_for("BarkingKennel") != ()  # (not "all topics")


def test_the_recordings_passed_to_followers_are_of_the_notified_topics() -> None:
    received: list[RecordingEvent] = []

    class Receiver(Listener):
        def receive_recording_event(self, recording_event: RecordingEvent) -> None:
            received.append(recording_event)

    class BarkingLeader(Leader):
        notify_topics = [BARKED]

    leader = BarkingLeader()
    leader.lead(Receiver())
    leader.save(Pet("Fido"))  # (nothing notified: no Barked)
    pet = Pet("Rex")
    pet.bark()
    leader.save(pet)
    assert len(received) == 1
    assert [r.notification.topic for r in received[0].recordings] == [BARKED]
