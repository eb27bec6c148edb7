"""Run by tests/test_old_data.py under the reference library and under ours: events of
string originator ids (ORIGINATOR_ID_TYPE=text) recorded and read at the recorder level.

    python old_data_text_ids.py ID...

records one event for each ID (at its next version), then prints every notification
as one JSON line. The store comes from the environment.
"""

from __future__ import annotations

import json
import os
import sys

import eventsourcing
from eventsourcing.persistence import InfrastructureFactory, StoredEvent
from eventsourcing.utils import Environment


def main(ids: list[str]) -> None:
    factory = InfrastructureFactory.construct(Environment("", dict(os.environ)))
    recorder = factory.application_recorder()
    for originator_id in ids:
        version = len(recorder.select_events(originator_id)) + 1  # type: ignore[arg-type]
        event = StoredEvent(originator_id, version, "pages:Edited", b"{}")  # type: ignore[arg-type]
        recorder.insert_events([event])
    notifications = recorder.select_notifications(1, 100)  # type: ignore[attr-defined]
    rows = [
        [n.id, n.originator_id, type(n.originator_id).__name__, n.originator_version]
        for n in notifications
    ]
    library = os.path.dirname(eventsourcing.__file__)
    print(json.dumps({"notifications": rows, "library": library}))


if __name__ == "__main__":
    main(sys.argv[1:])
