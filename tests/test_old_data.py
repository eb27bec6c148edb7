"""Old data stays readable, and writable, both ways.

A database written by the reference library (9.3, 9.4 and 9.5, default settings) is
read and extended by ours with the same settings, and the reference then reads all
of it and goes on. A SQLite database made by earlier versions of ours keeps working.

The reference is installed (once per session) into throwaway venvs; where it cannot
be installed (no network), these tests skip with a one-line reason.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

import pytest
from recorder_contract import event
from reference_library import VERSIONS, ReferenceLibrary, build_all, run_script

from eventsourcing.persistence import Tracking, TrackingConflictError
from eventsourcing.sqlite import Factory
from eventsourcing.utils import Environment

SCRIPT = Path(__file__).with_name("old_data_app.py")
TEXT_IDS_SCRIPT = Path(__file__).with_name("old_data_text_ids.py")
OURS = Path(__file__).resolve().parents[1] / "eventsourcing"

# Our SQLite layout as it was made before the text layout was supported (kept here,
# not taken from the code, so that a change of the code cannot change the test).
OUR_EARLIER_DDL = [
    'CREATE TABLE IF NOT EXISTS "dogschool_events" ('
    "notification_id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "originator_id BLOB NOT NULL, originator_version INTEGER NOT NULL, "
    "topic TEXT NOT NULL, state BLOB NOT NULL, "
    "UNIQUE (originator_id, originator_version))",
    'CREATE TABLE IF NOT EXISTS "dogschool_snapshots" ('
    "originator_id BLOB NOT NULL, originator_version INTEGER NOT NULL, "
    "topic TEXT NOT NULL, state BLOB NOT NULL, "
    "PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID",
    'CREATE TABLE IF NOT EXISTS "counters_events" ('
    "notification_id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "originator_id BLOB NOT NULL, originator_version INTEGER NOT NULL, "
    "topic TEXT NOT NULL, state BLOB NOT NULL, "
    "UNIQUE (originator_id, originator_version))",
    'CREATE TABLE IF NOT EXISTS "counters_tracking" ('
    "application_name TEXT PRIMARY KEY, notification_id INTEGER NOT NULL)",
]


@pytest.fixture(scope="session")
def reference_libraries(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, ReferenceLibrary | str]:
    return build_all(tmp_path_factory.mktemp("reference"))


def reference(libraries: dict[str, ReferenceLibrary | str], version: str) -> ReferenceLibrary:
    library = libraries[version]
    if isinstance(library, str):
        pytest.skip(library)
    return library


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without any store settings, plus ``settings``."""
    prefixes = ("PERSISTENCE_", "SQLITE_", "POSTGRES_", "CREATE_TABLE", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, **settings}


def by_ours(*args: str, env: dict[str, str], script: Path = SCRIPT) -> dict[str, Any]:
    # This checkout's package, whatever this interpreter has installed.
    result = run_script(sys.executable, script, *args, env={**env, "PYTHONPATH": str(OURS.parent)})
    assert Path(result["library"]) == OURS
    return result


def by_reference(
    library: ReferenceLibrary, *args: str, env: dict[str, str], script: Path = SCRIPT
) -> dict[str, Any]:
    result = library.run(script, *args, env=env)
    assert Path(result["library"]) != OURS
    return result


def assert_each_trick_counted_once(state: dict[str, Any]) -> None:
    tricks = Counter(t for dog in state["dogs"].values() for t in dog["tricks"])
    assert state["counts"] == dict(tricks)


def write_extend_check(library: ReferenceLibrary, env: dict[str, str]) -> None:
    """The reference writes, ours reads and extends, the reference reads and goes on."""
    written = by_reference(library, "write", env=env)["after"]
    assert written["dogs"]["Fido"]["snapshots"] == [4] and written["tracking"]
    extended = by_ours("extend", env=env)
    assert extended["before"] == written  # aggregates, snapshots, log, counts, tracking
    after = extended["after"]
    assert after["dogs"]["Rex"]["tricks"] == ["sit"]
    assert after["dogs"]["Fido"]["snapshots"] == [4, 6]
    assert after["log"][: len(written["log"])] == written["log"]
    assert [n[0] for n in after["log"]] == list(range(1, len(after["log"]) + 1))
    checked = by_reference(library, "check", env=env)
    assert checked["before"] == after
    assert checked["after"]["dogs"]["Rex"]["tricks"] == ["sit", "roll"]
    for state in (written, after, checked["after"]):
        assert_each_trick_counted_once(state)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_sqlite_database_of_the_reference_is_read_and_extended_both_ways(
    reference_libraries: dict[str, ReferenceLibrary | str], version: str, tmp_path: Path
) -> None:
    library = reference(reference_libraries, version)
    db = tmp_path / "events.db"
    env = environment(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=str(db))
    write_extend_check(library, env)
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    # Ours kept to the reference's tables: it made none of its own.
    assert {t for t in tables if not t.startswith("sqlite_")} == {
        "stored_events",
        "stored_snapshots",
        "tracking",
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_a_postgres_database_of_the_reference_is_read_and_extended_both_ways(
    reference_libraries: dict[str, ReferenceLibrary | str],
    version: str,
    postgres_env: dict[str, str],
) -> None:
    library = reference(reference_libraries, version)
    if not library.has_postgres:
        pytest.skip(f"no PostgreSQL driver could be installed for eventsourcing=={version}")
    env = environment(PERSISTENCE_MODULE="eventsourcing.postgres", **postgres_env)
    write_extend_check(library, env)


def test_a_sqlite_database_of_our_earlier_layout_keeps_working(tmp_path: Path) -> None:
    db = tmp_path / "ours.db"
    with sqlite3.connect(db) as conn:
        for statement in OUR_EARLIER_DDL:
            conn.execute(statement)
    env = environment(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=str(db))
    written = by_ours("write", env=env)["after"]
    extended = by_ours("extend", env=env)
    assert extended["before"] == written
    assert extended["after"]["dogs"]["Fido"]["snapshots"] == [4, 6]
    assert_each_trick_counted_once(extended["after"])
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        ids = {len(row[0]) for row in conn.execute("SELECT originator_id FROM dogschool_events")}
    assert {t for t in tables if not t.startswith("sqlite_")} == {
        "dogschool_events",
        "dogschool_snapshots",
        "counters_events",
        "counters_tracking",
    }
    assert ids == {16}  # UUIDs as their 16 bytes, as before


def test_string_ids_of_the_reference_are_read_and_extended_both_ways(
    reference_libraries: dict[str, ReferenceLibrary | str], tmp_path: Path
) -> None:
    library = reference(reference_libraries, "9.5.6")  # text ids came with 9.5
    env = environment(
        PERSISTENCE_MODULE="eventsourcing.sqlite",
        SQLITE_DBNAME=str(tmp_path / "pages.db"),
        ORIGINATOR_ID_TYPE="text",
    )
    written = by_reference(library, "page-home", "page-about", env=env, script=TEXT_IDS_SCRIPT)
    extended = by_ours("page-home", "page-new", env=env, script=TEXT_IDS_SCRIPT)
    checked = by_reference(library, "page-about", env=env, script=TEXT_IDS_SCRIPT)
    expected = [
        [1, "page-home", "str", 1],
        [2, "page-about", "str", 1],
        [3, "page-home", "str", 2],
        [4, "page-new", "str", 1],
        [5, "page-about", "str", 2],
    ]
    assert written["notifications"] == expected[:2]
    assert extended["notifications"] == expected[:4]
    assert checked["notifications"] == expected


# ---------------------------------------------------------------------------
# The text layout without the reference (these run without a network too).

# The tables the reference makes, as it makes them (kept here, as data).
TEXT_LAYOUT_EVENTS_DDL = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, "
    "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
)
ROW_PER_POSITION_TRACKING_DDL = (  # 9.3: a row per processed notification
    "CREATE TABLE tracking (application_name TEXT, notification_id INTEGER, "
    "PRIMARY KEY (application_name, notification_id)) WITHOUT ROWID"
)


def text_layout_database(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as conn:
        for statement in (TEXT_LAYOUT_EVENTS_DDL, *statements):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO stored_events VALUES (?, 1, 'dogs:Registered', x'7b7d')",
            (uuid5(NAMESPACE_URL, "/dogs/Fido").hex,),
        )


def test_new_tables_of_a_text_layout_database_take_its_layout(tmp_path: Path) -> None:
    db = tmp_path / "text.db"
    text_layout_database(db)
    factory = Factory(Environment("DogSchool", {"SQLITE_DBNAME": str(db)}))
    recorder = factory.process_recorder()
    snapshots = factory.aggregate_recorder("snapshots")
    fido, rex = uuid5(NAMESPACE_URL, "/dogs/Fido"), uuid4()
    assert recorder.select_notifications(1, 10)[0].originator_id == fido
    assert recorder.insert_events([event(rex, 1)], tracking=Tracking("Upstream", 5)) == [2]
    snapshots.insert_events([event(fido, 1)])
    assert snapshots.select_events(fido) == [event(fido, 1)]
    assert recorder.tracking_positions() == {"Upstream": 5}
    factory.close()
    with sqlite3.connect(db) as conn:
        schema = {name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master")}
        tracked = conn.execute("SELECT * FROM tracking ORDER BY application_name").fetchall()
        kept_ids = conn.execute("SELECT originator_id FROM stored_snapshots").fetchall()
    assert set(schema) == {"stored_events", "stored_snapshots", "tracking"} | {
        name for name in schema if name.startswith("sqlite_autoindex")
    }
    assert "originator_id TEXT" in schema["stored_snapshots"]
    assert "PRIMARY KEY (application_name))" in schema["tracking"]
    # Marked as a table of one row per application, as the reference marks its own.
    assert tracked == [("Upstream", 5), ("__migration__", 1)]
    assert kept_ids == [(fido.hex,)]


def test_a_tracking_table_of_a_row_per_position_gets_a_row_per_batch(tmp_path: Path) -> None:
    db = tmp_path / "rows.db"
    text_layout_database(db, ROW_PER_POSITION_TRACKING_DDL)
    factory = Factory(Environment("Counters", {"SQLITE_DBNAME": str(db)}))
    recorder = factory.process_recorder()
    recorder.insert_events([], tracking=Tracking("DogSchool", 1))
    recorder.insert_events([event(uuid4(), 1)], tracking=Tracking("DogSchool", 4, 1))
    with pytest.raises(TrackingConflictError, match="Notification 3 of 'DogSchool'"):
        recorder.insert_events([], tracking=Tracking("DogSchool", 3))
    assert recorder.max_tracking_id("DogSchool") == 4
    assert recorder.tracking_positions() == {"DogSchool": 4}
    factory.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT * FROM tracking ORDER BY notification_id").fetchall()
    assert rows == [("DogSchool", 1), ("DogSchool", 4)]
