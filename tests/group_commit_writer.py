"""A writer process for test_sqlite_group_commit: threads insert events into an
SQLite file and print each event's originator id once its insert has returned."""

import sys
import threading
from uuid import uuid4

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore


def main() -> None:
    path, threads = sys.argv[1], int(sys.argv[2])
    datastore = SQLiteDatastore(path, lock_timeout=30)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    printing = threading.Lock()

    def write() -> None:
        while True:
            originator = uuid4()
            recorder.insert_events([StoredEvent(originator, 1, "topic:K", b"k")])
            with printing:
                sys.stdout.write(f"{originator}\n")
                sys.stdout.flush()

    for _ in range(threads):
        threading.Thread(target=write, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
