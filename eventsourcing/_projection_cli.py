"""Projections on the command line: run them where followers run, and show their lag.

    python -m eventsourcing._projection_cli run --projection PACKAGE.MODULE:CLASS ...
    python -m eventsourcing._projection_cli status --projection PACKAGE.MODULE:CLASS ...

(``eventsourcing run``/``status`` hand their ``--projection`` options here: see
``add_run_arguments``, ``run_projections`` and ``projection_status_rows``.)

A projection names what it needs in class attributes: a ``Projection`` subclass
its ``application_class`` and ``view_class``, an ``EventSourcedProjection``
subclass its ``application_class``; ``--application`` and ``--view`` (topics
``PACKAGE.MODULE:CLASS``) give or override them. Settings come from the
environment, the view's prefixed with the projection's name.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import InfrastructureFactory, PersistenceError
from eventsourcing.projection import (
    BaseProjectionRunner,
    EventSourcedProjection,
    EventSourcedProjectionRunner,
    Projection,
    ProjectionRunner,
)
from eventsourcing.utils import Environment, resolve_topic

logger = logging.getLogger("eventsourcing")

EXIT_USAGE = 2
EXIT_FAILED = 1


class ProjectionSpecError(Exception):
    """A projection that cannot be run as named, told in one line."""


@dataclass(frozen=True)
class ProjectionSpec:
    """What to run: a projection class, the application it follows, and its view class
    (None for an event-sourced projection, which is an application itself)."""

    projection_class: type[Any]
    application_class: type[Any]
    view_class: type[Any] | None

    @property
    def name(self) -> str:
        return str(self.projection_class.name)

    def runner(self, env: Mapping[str, str] | None = None) -> BaseProjectionRunner[Any]:
        if self.view_class is None:
            return EventSourcedProjectionRunner(
                application_class=self.application_class,
                projection_class=self.projection_class,
                env=env,
            )
        return ProjectionRunner(
            application_class=self.application_class,
            projection_class=self.projection_class,
            view_class=self.view_class,
            env=env,
        )


def _resolve_class(topic: str, what: str) -> type[Any]:
    if ":" not in topic:
        raise ProjectionSpecError(f"{what} {topic!r} is not of the form PACKAGE.MODULE:CLASS")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would
    try:
        obj = resolve_topic(topic)
    except Exception as error:  # any import-time failure of the user's module
        raise ProjectionSpecError(f"cannot import {what} {topic!r}: {_one_line(error)}") from error
    if not isinstance(obj, type):
        raise ProjectionSpecError(f"{what} {topic!r} is a {type(obj).__name__}, not a class")
    return obj


def load_projection(
    topic: str, application: str | None = None, view: str | None = None
) -> ProjectionSpec:
    """The projection ``topic`` names, with the classes it needs (see the module docstring)."""
    projection_class = _resolve_class(topic, "projection")
    event_sourced = issubclass(projection_class, EventSourcedProjection)
    if not event_sourced and not issubclass(projection_class, Projection):
        raise ProjectionSpecError(
            f"{topic!r} is neither a Projection nor an EventSourcedProjection subclass"
        )
    application_class = (
        _resolve_class(application, "application")
        if application
        else getattr(projection_class, "application_class", None)
    )
    if application_class is None:
        raise ProjectionSpecError(
            f"{topic!r} names no application_class: give --application PACKAGE.MODULE:CLASS"
        )
    view_class = None
    if not event_sourced:
        view_class = (
            _resolve_class(view, "view") if view else getattr(projection_class, "view_class", None)
        )
        if view_class is None:
            raise ProjectionSpecError(
                f"{topic!r} names no view_class: give --view PACKAGE.MODULE:CLASS"
            )
    return ProjectionSpec(projection_class, application_class, view_class)


# -- run ------------------------------------------------------------------------


def run_projections(
    specs: Sequence[ProjectionSpec],
    env: Mapping[str, str] | None = None,
    stop_requested: threading.Event | None = None,
) -> int:
    """Run the projections until ``stop_requested`` is set (by SIGINT or SIGTERM when not
    given), or one of them fails; return the exit status (0, or EXIT_FAILED)."""
    if stop_requested is None:
        stop_requested = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop_requested.set())
    runners: list[tuple[ProjectionSpec, BaseProjectionRunner[Any]]] = []
    status = 0
    try:
        for spec in specs:
            runners.append((spec, spec.runner(env)))
            logger.info("running projection %s of %s", spec.name, spec.application_class.name)
        while not stop_requested.is_set():
            if any(runner.is_interrupted.is_set() for _, runner in runners):
                break
            stop_requested.wait(0.2)
    finally:
        logger.info("stopping projections")
        for spec, runner in runners:
            try:
                runner.__exit__(None, None, None)
            except Exception as error:
                logger.error("projection %s stopped on an error: %s", spec.name, _one_line(error))
                status = EXIT_FAILED
    return status


# -- status ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectionStatus:
    projection: str
    application: str
    position: int
    last_id: int

    @property
    def lag(self) -> int:
        return max(0, self.last_id - self.position)


def projection_status_rows(
    specs: Sequence[ProjectionSpec], env: Mapping[str, str] | None = None
) -> list[ProjectionStatus]:
    """Each projection's position in its application's log, and how far behind it is."""
    merged = dict(os.environ)
    merged.update(env or {})
    rows = []
    for spec in specs:
        app = spec.application_class(env)
        try:
            last_id = app.recorder.max_notification_id() or 0
            position = _position_of(spec, merged, app.name)
        finally:
            app.close()
        rows.append(ProjectionStatus(spec.name, app.name, position, last_id))
    return rows


def _position_of(spec: ProjectionSpec, env: dict[str, str], application_name: str) -> int:
    if spec.view_class is None:
        projection = spec.projection_class(env=env)
        try:
            return int(projection.recorder.max_tracking_id(application_name) or 0)
        finally:
            projection.close()
    factory = InfrastructureFactory.construct(Environment(spec.name, env))
    try:
        view = factory.tracking_recorder(spec.view_class)
        return int(view.max_tracking_id(application_name) or 0)
    finally:
        factory.close()


def format_projection_status(rows: Sequence[ProjectionStatus]) -> str:
    header = ("projection", "follows", "position", "last id", "lag")
    table = [header] + [
        (r.projection, r.application, str(r.position), str(r.last_id), str(r.lag)) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table
    )


# -- the command ----------------------------------------------------------------


def add_projection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``status`` take to name projections."""
    parser.add_argument(
        "--projection",
        action="append",
        default=[],
        metavar="PACKAGE.MODULE:CLASS",
        help="a projection to run (repeatable)",
    )
    parser.add_argument("--application", help="the application it follows (PACKAGE.MODULE:CLASS)")
    parser.add_argument("--view", help="its view class (PACKAGE.MODULE:CLASS)")


def specs_from(args: argparse.Namespace) -> list[ProjectionSpec]:
    if not args.projection:
        raise ProjectionSpecError("name a projection: --projection PACKAGE.MODULE:CLASS")
    return [load_projection(topic, args.application, args.view) for topic in args.projection]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eventsourcing", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run projections until stopped")
    add_projection_arguments(run_parser)
    status_parser = commands.add_parser("status", help="show each projection's position and lag")
    add_projection_arguments(status_parser)
    status_parser.add_argument("--watch", action="store_true", help="repeat until interrupted")
    status_parser.add_argument("--interval", type=float, default=2.0, help="seconds (--watch)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        specs = specs_from(args)
        if args.command == "run":
            return run_projections(specs)
        return _show_status(specs, args.watch, args.interval, print)
    except (ProjectionSpecError, PersistenceError, OSError, ValueError) as error:
        print(f"eventsourcing: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE


def _show_status(
    specs: Sequence[ProjectionSpec], watch: bool, interval: float, out: Callable[[str], None]
) -> int:
    while True:
        out(format_projection_status(projection_status_rows(specs)))
        if not watch:
            return 0
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
