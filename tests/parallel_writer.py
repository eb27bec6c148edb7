"""A writer process for test_postgres_parallel_commits: inserts batches of three
events into one events table and prints the notification ids it was given."""

import json
import sys
from uuid import uuid4

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore


def main() -> None:
    settings = json.loads(sys.argv[1])
    table, batches = sys.argv[2], int(sys.argv[3])
    datastore = PostgresDatastore(
        settings["dbname"],
        settings["host"],
        settings["port"],
        settings["user"],
        settings["password"],
        pool_size=1,
    )
    recorder = PostgresApplicationRecorder(datastore, table)
    ids: list[int] = []
    for _ in range(batches):
        originator = uuid4()
        events = [StoredEvent(originator, v, "topic:P", b"p") for v in (1, 2, 3)]
        ids.extend(recorder.insert_events(events) or [])
    print(json.dumps(ids))
    datastore.close()


if __name__ == "__main__":
    main()
