"""The operator's command line: run followers of a system, and show how far behind they are.

    eventsourcing run PACKAGE.MODULE:SYSTEM [--app NAME ...] [--partition K/N]
    eventsourcing status PACKAGE.MODULE:SYSTEM [--watch]

Settings (PERSISTENCE_MODULE, POSTGRES_*, ...) come from the environment. Every
process pointed at the same database works on the same system, on any machine.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO, cast

from eventsourcing import __distribution__, __version__
from eventsourcing._resilience import is_transient
from eventsourcing.application import Application
from eventsourcing.persistence import PersistenceError, ProcessRecorder
from eventsourcing.system import Follower, Partition, System, WorkerRunner
from eventsourcing.utils import resolve_topic

logger = logging.getLogger("eventsourcing")

EXIT_USAGE = 2  # bad arguments, a system that does not import, an unreachable database
EXIT_FAILED = 1  # a follower stopped on an error while running


class CommandError(Exception):
    """A problem the operator must fix, told in one line."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "run":
            return run(args)
        return status(args)
    except (CommandError, PersistenceError, OSError, ValueError) as error:
        print(f"eventsourcing: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventsourcing", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run followers of a system until stopped")
    run_parser.add_argument("system", help="where the System is: PACKAGE.MODULE:NAME")
    run_parser.add_argument(
        "--app", action="append", help="a follower to run (repeatable; default: all)"
    )
    run_parser.add_argument("--partition", help="K/N: run partition K of N (from 0)")
    run_parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="seconds between reads if no wake-up arrives (default 1)",
    )
    status_parser = commands.add_parser("status", help="show each follower's position and lag")
    status_parser.add_argument("system", help="where the System is: PACKAGE.MODULE:NAME")
    status_parser.add_argument("--watch", action="store_true", help="repeat until interrupted")
    status_parser.add_argument("--interval", type=float, default=2.0, help="seconds (--watch)")
    return parser


def version_line() -> str:
    """The distribution's name and installed version (the package's own, if not installed)."""
    try:
        version = importlib.metadata.version(__distribution__)
    except importlib.metadata.PackageNotFoundError:
        version = __version__
    return f"{__distribution__} {version}"


def load_system(path: str) -> System:
    """Import the ``System`` that ``PACKAGE.MODULE:NAME`` names."""
    if ":" not in path:
        raise CommandError(f"system {path!r} is not of the form PACKAGE.MODULE:NAME")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would, for the console script
    try:
        system = resolve_topic(path)
    except Exception as error:  # any import-time failure of the user's module
        raise CommandError(f"cannot import system {path!r}: {_one_line(error)}") from error
    if not isinstance(system, System):
        raise CommandError(f"{path!r} is a {type(system).__name__}, not a System")
    return system


# -- run ------------------------------------------------------------------------


class _ReportingRunner(WorkerRunner):
    """Logs what it does, with a progress bar on a terminal while catching up."""

    def _progress_of(self, follower: Follower, leader_name: str, position: int) -> None:
        bar = self.progress_bars.get((follower.name, leader_name))
        if bar is not None:
            bar.update(position)

    progress_bars: dict[tuple[str, str], _ProgressBar]


def run(args: argparse.Namespace) -> int:
    system = load_system(args.system)
    partition = Partition.parse(args.partition) if args.partition else None
    runner = _ReportingRunner(
        system, apps=args.app, partition=partition, poll_interval=args.poll_interval
    )
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())
    runner.progress_bars = {}
    runner.start()
    where = f" partition {partition}" if partition else ""
    logger.info("running %s%s of %s", ", ".join(runner.app_names), where, args.system)
    _show_backlog(runner)
    while not stop_requested.is_set() and not runner.has_errored.is_set():
        stop_requested.wait(0.2)
    logger.info("stopping: finishing the batch in hand")
    try:
        runner.stop()
    except Exception as error:
        logger.error("stopped on an error: %s", _one_line(error))
        return EXIT_FAILED
    logger.info("stopped")
    return 0


def _show_backlog(runner: _ReportingRunner) -> None:
    try:
        lags = runner.lag()
    except Exception as error:
        if not is_transient(error):
            raise
        logger.warning("cannot tell the backlog now: %s", _one_line(error))
        return  # the followers ride the outage out themselves
    for (follower, leader), lag in lags.items():
        if lag:
            logger.info("%s is %d notifications behind %s: catching up", follower, lag, leader)
        if lag >= 1000 and sys.stderr.isatty():
            recorded = runner.apps[leader].recorder.max_notification_id() or 0
            runner.progress_bars[(follower, leader)] = _ProgressBar(
                f"{follower} <- {leader}", recorded - lag, recorded, sys.stderr
            )


class _ProgressBar:
    """A one-line bar on a terminal: ``Counters <- DogSchool [#####     ] 52% 5200/10000``."""

    def __init__(self, label: str, start: int, end: int, stream: TextIO, width: int = 30):
        self.label, self.start, self.end, self.stream, self.width = label, start, end, stream, width

    def update(self, position: int) -> None:
        done = min(1.0, (position - self.start) / max(1, self.end - self.start))
        filled = int(done * self.width)
        bar = "#" * filled + " " * (self.width - filled)
        line = f"\r{self.label} [{bar}] {done:4.0%} {min(position, self.end)}/{self.end}"
        self.stream.write(line + ("\n" if position >= self.end else ""))
        self.stream.flush()


# -- status ---------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    system = load_system(args.system)
    apps: dict[str, Application] = {}
    try:
        for name in system.nodes:
            apps[name] = system.get_app_cls(name)()
        while True:
            print(format_status(system, apps))
            if not args.watch:
                return 0
            try:
                time.sleep(args.interval)
            except KeyboardInterrupt:
                return 0
            print()
    finally:
        for app in apps.values():
            app.close()


def status_rows(system: System, apps: dict[str, Any]) -> list[tuple[str, str, int, int, int]]:
    """(follower, leader, position, leader's last id, lag) for each follower and partition."""
    rows = []
    for leader_name, follower_name in system.edges:
        recorded = apps[leader_name].recorder.max_notification_id() or 0
        recorder = cast(ProcessRecorder, apps[follower_name].recorder)
        positions = {
            name: position
            for name, position in recorder.tracking_positions().items()
            if name == leader_name or name.startswith(leader_name + "[")
        } or {leader_name: 0}
        for name, position in sorted(positions.items()):
            label = follower_name + name[len(leader_name) :]
            rows.append((label, leader_name, position, recorded, max(0, recorded - position)))
    return rows


def format_status(system: System, apps: dict[str, Any]) -> str:
    header = ("follower", "follows", "position", "last id", "lag")
    rows = [header] + [tuple(str(v) for v in row) for row in status_rows(system, apps)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
