"""``Follower.pull_and_process(leader_name, start=...)`` asked to process again what
the follower has processed is refused (an IntegrityError, as in 9.5), changing nothing."""

from __future__ import annotations

from typing import Any

import pytest

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, TrackingConflictError
from eventsourcing.system import ProcessApplication, ProcessingEvent


class Pet(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name


class Kennel(Application):
    pass


class Listener(ProcessApplication):
    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self.seen: list[str] = []

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        self.seen.append(domain_event.name)


def _listener_of(kennel: Kennel, env: dict[str, str]) -> Listener:
    listener = Listener(env=env)
    listener.follow(kennel.name, kennel.notification_log)
    return listener


def test_processing_again_from_before_the_position_is_refused(persistence_env) -> None:
    kennel = Kennel(env=persistence_env)
    kennel.save(Pet("Fido"), Pet("Rex"))
    listener = _listener_of(kennel, persistence_env)
    listener.pull_and_process(kennel.name)
    assert listener.recorder.max_tracking_id(kennel.name) == 2

    for start in (0, 1):
        with pytest.raises(IntegrityError) as raised:
            listener.pull_and_process(kennel.name, start=start)
        assert isinstance(raised.value, TrackingConflictError)
        message = str(raised.value)
        assert f"start={start}" in message and "up to 2" in message
    assert listener.seen == ["Fido", "Rex"]
    assert listener.recorder.max_tracking_id(kennel.name) == 2


def test_start_at_the_position_continues_after_it(persistence_env) -> None:
    kennel = Kennel(env=persistence_env)
    kennel.save(Pet("Fido"))
    listener = _listener_of(kennel, persistence_env)
    listener.pull_and_process(kennel.name)
    listener.pull_and_process(kennel.name, start=1)  # nothing new: nothing done
    kennel.save(Pet("Rex"))
    listener.pull_and_process(kennel.name, start=1)
    assert listener.seen == ["Fido", "Rex"]
    assert listener.recorder.max_tracking_id(kennel.name) == 2


def test_a_stop_before_the_start_processes_nothing() -> None:
    kennel = Kennel()
    kennel.save(Pet("Fido"), Pet("Rex"))
    listener = _listener_of(kennel, {})
    listener.pull_and_process(kennel.name)
    listener.pull_and_process(kennel.name, start=1, stop=1)  # (an empty range: no error)
    assert listener.seen == ["Fido", "Rex"]
