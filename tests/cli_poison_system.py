"""A system for the command-line tests: Counters cannot count "explode" until the
environment says POISON_FIXED=1 (as after a fix is deployed), and takes POLICY_DELAY
seconds per event."""

from __future__ import annotations

import os
import time
from typing import Any

from eventsourcing.system import ProcessingEvent, System
from examples import dogschool
from examples.dogschool import Dog, DogSchool


class Counters(dogschool.Counters):
    def policy(self, domain_event: Any, processing_event: ProcessingEvent) -> None:
        if isinstance(domain_event, Dog.TrickAdded):
            time.sleep(float(os.environ.get("POLICY_DELAY", "0")))  # a slow policy, for tests
            if domain_event.trick == "explode" and os.environ.get("POISON_FIXED") != "1":
                raise ValueError("cannot count explosions")
        super().policy(domain_event, processing_event)


system = System(pipes=[[DogSchool, Counters]])
