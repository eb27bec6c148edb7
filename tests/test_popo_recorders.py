"""The in-memory store runs the shared recorder contract (it is the reference)."""

from __future__ import annotations

from recorder_contract import RecorderContract

from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, ProcessRecorder
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder, POPOProcessRecorder


class TestPOPORecorders(RecorderContract):
    supports_concurrency = True

    def create_aggregate_recorder(self) -> AggregateRecorder:
        return POPOAggregateRecorder()

    def create_application_recorder(self) -> ApplicationRecorder:
        return POPOApplicationRecorder()

    def create_process_recorder(self) -> ProcessRecorder:
        return POPOProcessRecorder()
