"""The dog school with a poison trick, for benchmarks/distributed.py: Counters cannot
count "explode" (its worker retries, then parks such events and goes on)."""

from __future__ import annotations

from typing import Any

from eventsourcing.system import ProcessingEvent, System
from examples.dogschool import Counters, Dog, DogSchool


class PoisonedCounters(Counters):
    name = "Counters"

    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        if isinstance(domain_event, Dog.TrickAdded) and domain_event.trick == "explode":
            raise ValueError("cannot count explosions")
        super().policy(domain_event, processing_event)


system = System(pipes=[[DogSchool, PoisonedCounters]])
