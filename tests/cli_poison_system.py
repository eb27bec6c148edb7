"""A system for the command-line tests: Counters cannot count "explode" until the
environment says POISON_FIXED=1 (as after a fix is deployed), and takes POLICY_DELAY
seconds per event."""

from __future__ import annotations

import os
import time
from typing import Any

from eventsourcing.application import AggregateNotFound
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.system import ProcessApplication, ProcessingEvent, System
from examples.dogschool import Counter, Dog, DogSchool


class Counters(ProcessApplication):
    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Other events are ignored."""

    @policy.register(Dog.TrickAdded)
    def _(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        time.sleep(float(os.environ.get("POLICY_DELAY", "0")))  # a slow policy, for tests
        if domain_event.trick == "explode" and os.environ.get("POISON_FIXED") != "1":
            raise ValueError("cannot count explosions")
        try:
            counter = self.repository.get(Counter.create_id(domain_event.trick))
        except AggregateNotFound:
            counter = Counter(domain_event.trick)
        counter.increment()
        processing_event.collect_events(counter)

    def get_count(self, trick: str) -> int:
        try:
            return int(self.repository.get(Counter.create_id(trick)).count)
        except AggregateNotFound:
            return 0


system = System(pipes=[[DogSchool, Counters]])
