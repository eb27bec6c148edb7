"""Projections on the command line (eventsourcing run|status --projection): naming them,
running them until SIGTERM, and their position and lag."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eventsourcing._projection_cli import (
    ProjectionSpecError,
    load_projection,
    projection_status_rows,
)
from eventsourcing.cli import main
from eventsourcing.persistence import InfrastructureFactory, TrackingRecorder
from eventsourcing.utils import Environment
from tests.projection_views import CountProjection, DogSchool, SQLiteTrickCounts

REPO = Path(__file__).resolve().parents[1]
HERE = "tests.test_projection_cli"


class CliCounts(CountProjection):
    application_class = DogSchool
    view_class = SQLiteTrickCounts


class Unfinished(CountProjection):
    application_class = DogSchool


def set_env(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> dict[str, str]:
    """``settings``, in this process's environment too (the CLI reads it)."""
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return settings


def run_projection_until(topic: str, position: Callable[[], int], last: int) -> None:
    """Run ``eventsourcing run --projection topic`` in a process until ``position()``
    of its view is ``last``; it must then exit with status 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "eventsourcing", "run", "--projection", topic],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        deadline = time.monotonic() + 60
        while position() < last and time.monotonic() < deadline:
            time.sleep(0.05)
        assert position() == last
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return set_env(
        monkeypatch,
        {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "DOGSCHOOL_SQLITE_DBNAME": str(tmp_path / "school.db"),
            "CLICOUNTS_SQLITE_DBNAME": str(tmp_path / "view.db"),
        },
    )


def test_load_projection_takes_classes_from_the_projection_or_the_options() -> None:
    spec = load_projection(f"{HERE}:CliCounts")
    assert (spec.application_class, spec.view_class, spec.name) == (
        DogSchool,
        SQLiteTrickCounts,
        "CliCounts",
    )
    spec = load_projection(f"{HERE}:Unfinished", view="tests.projection_views:SQLiteTrickCounts")
    assert spec.view_class is SQLiteTrickCounts


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("tests.test_projection_cli.CliCounts", "not of the form"),
        (f"{HERE}:Nowhere", "cannot import projection"),
        (f"{HERE}:DogSchool", "neither a Projection nor an EventSourcedProjection"),
        (f"{HERE}:Unfinished", "names no view_class"),
        ("tests.projection_views:CountProjection", "names no application_class"),
    ],
)
def test_load_projection_says_what_is_wrong(topic: str, message: str) -> None:
    with pytest.raises(ProjectionSpecError, match=message):
        load_projection(topic)


def view_position(
    env: dict[str, str], projection: str, view_class: type[TrackingRecorder], application: str
) -> int:
    """How far the view of ``projection`` has processed the events of ``application``."""
    factory = InfrastructureFactory.construct(Environment(projection, env))
    try:
        return factory.tracking_recorder(view_class).max_tracking_id(application) or 0
    finally:
        factory.close()


def test_run_until_sigterm_then_status_shows_no_lag(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with DogSchool(env=env) as school:
        school.register_dog("Fido")
        last = school.add_trick("Fido", "sit")
    (row,) = projection_status_rows([load_projection(f"{HERE}:CliCounts")])
    assert (row.projection, row.application, row.position, row.last_id, row.lag) == (
        "CliCounts",
        "DogSchool",
        0,
        last,
        last,
    )
    run_projection_until(
        f"{HERE}:CliCounts",
        lambda: view_position(env, "CliCounts", SQLiteTrickCounts, "DogSchool"),
        last,
    )
    assert main(["status", "--projection", f"{HERE}:CliCounts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["projection", "follows", "position", "last", "id", "lag"]
    assert lines[1].split() == ["CliCounts", "DogSchool", str(last), str(last), "0"]


def test_a_bad_projection_is_one_line_and_exit_status_2(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--projection", f"{HERE}:Unfinished"]) == 2
    assert "names no view_class" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "name a system" in capsys.readouterr().err
    assert main(["run", "tests.cli_poison_system:system", "--projection", f"{HERE}:CliCounts"]) == 2
    assert "not both" in capsys.readouterr().err
