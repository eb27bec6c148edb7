"""The dog school with a poison trick, for benchmarks/distributed.py: Counters cannot
count "explode" (its worker retries, then parks such events and goes on)."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import AggregateNotFound
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.system import ProcessingEvent, System
from examples.dogschool import Counter, Counters, Dog, DogSchool


class PoisonedCounters(Counters):
    name = "Counters"

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        """Other events are ignored."""

    @policy.register(Dog.TrickAdded)
    def _(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        if domain_event.trick == "explode":
            raise ValueError("cannot count explosions")
        try:
            counter = self.repository.get(Counter.create_id(domain_event.trick))
        except AggregateNotFound:
            counter = Counter(domain_event.trick)
        counter.increment()
        processing_event.collect_events(counter)


system = System(pipes=[[DogSchool, PoisonedCounters]])
