"""The operator's command line: run followers of a system, watch them, tend their dead letters.

    eventsourcing run PACKAGE.MODULE:SYSTEM [--app NAME ...] [--partition K/N] [--repartition]
    eventsourcing status PACKAGE.MODULE:SYSTEM [--json] [--max-lag N] [--watch]
    eventsourcing dead-letters list|retry|skip PACKAGE.MODULE:SYSTEM [--app NAME] [--id ID]
    eventsourcing run|status --projection PACKAGE.MODULE:CLASS [--application ...] [--view ...]
    eventsourcing rebuild --projection PACKAGE.MODULE:CLASS [--from-scratch [--yes]]

Settings (PERSISTENCE_MODULE, POSTGRES_*, ...) come from the environment. Every
process pointed at the same database works on the same system, on any machine.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing import __distribution__, __version__
from eventsourcing import _projection_cli as projections
from eventsourcing._cli_views import (
    ProgressReporter,
    check_workers,
    dead_letter_rows,
    format_dead_letters,
    format_status,
    status_as_json,
    status_rows,
    unhealthy,
)
from eventsourcing._resilience import is_transient
from eventsourcing._signals import STOP_REQUESTED, listen_for_stop
from eventsourcing.application import Application
from eventsourcing.popo import POPOFactory
from eventsourcing.system import Follower, Partition, System, WorkerRunner
from eventsourcing.utils import Environment, EventSourcingError, resolve_topic

logger = logging.getLogger("eventsourcing.cli")

EXIT_USAGE = 2  # bad arguments or settings, a system that does not import, no database
EXIT_FAILED = 1  # a follower stopped on an error, or (status) is unhealthy

# Optional dependencies, by the module that is missing: the extra that installs it.
EXTRAS = {"psycopg": "postgres", "psycopg_pool": "postgres", "cryptography": "crypto"}


class CommandError(Exception):
    """A problem the operator must fix, told in one line."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        command: Callable[[argparse.Namespace], int] = args.handler
        return command(args)
    except (
        CommandError,
        projections.ProjectionSpecError,
        EventSourcingError,
        OSError,
        ValueError,
        ImportError,
    ) as error:
        print(f"eventsourcing: error: {_explained(error)}", file=sys.stderr)
        return EXIT_USAGE


def _configure_logging(level: str) -> None:
    """Only the command line configures logging (the library never does)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


# -- arguments ------------------------------------------------------------------


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def lag_limit(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, not {text!r}")
    return int(text)


def partition_arg(text: str) -> Partition:
    try:
        return Partition.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{error} (K/N: partition K of N, from 0, with 0 <= K < N)"
        ) from None


LOG_LEVELS = ["debug", "info", "warning", "error"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventsourcing", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    # (Also after the subcommand: it is given there as often as before it.)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS)
    common.add_argument("system", help="where the System is: PACKAGE.MODULE:NAME")
    # run and status take a system, or projections (--projection) instead.
    system_or_projections = argparse.ArgumentParser(add_help=False)
    system_or_projections.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS)
    system_or_projections.add_argument(
        "system", nargs="?", help="where the System is: PACKAGE.MODULE:NAME"
    )
    projections.add_projection_arguments(system_or_projections)
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser(
        "run", parents=[system_or_projections], help="run followers of a system until stopped"
    )
    run_parser.add_argument(
        "--app", action="append", help="a follower to run (repeatable; default: all)"
    )
    run_parser.add_argument(
        "--partition", type=partition_arg, help="K/N: run partition K of N (from 0)"
    )
    run_parser.add_argument(
        "--repartition",
        action="store_true",
        help="start although the recorded partition layout differs: carry positions over",
    )
    run_parser.add_argument(
        "--poll-interval",
        type=positive_number,
        default=1.0,
        help="seconds between reads if no wake-up arrives (default 1)",
    )
    run_parser.set_defaults(handler=run)

    status_parser = commands.add_parser(
        "status",
        parents=[system_or_projections],
        help="show each follower's position, lag and parked events",
    )
    status_parser.add_argument("--json", action="store_true", help="as JSON")
    status_parser.add_argument(
        "--max-lag", type=lag_limit, help="exit 1 if a follower lags more than this"
    )
    status_parser.add_argument(
        "--workers",
        action="store_true",
        help="also show whether a worker runs each follower (exit 1 if one does not)",
    )
    status_parser.add_argument("--watch", action="store_true", help="repeat until interrupted")
    status_parser.add_argument(
        "--interval", type=positive_number, default=2.0, help="seconds between (--watch)"
    )
    status_parser.set_defaults(handler=status)

    rebuild_parser = commands.add_parser(
        "rebuild", help="rebuild a projection's view without downtime (PostgreSQL)"
    )
    rebuild_parser.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS)
    projections.add_projection_arguments(rebuild_parser)
    rebuild_parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="instead, destroy the view (asks first) for its runner to rebuild from the start",
    )
    rebuild_parser.add_argument("--yes", action="store_true", help="do not ask (--from-scratch)")
    rebuild_parser.set_defaults(handler=rebuild)

    letters = commands.add_parser("dead-letters", help="list, retry or skip parked events")
    actions = letters.add_subparsers(dest="action", required=True)
    list_parser = actions.add_parser("list", parents=[common], help="list parked events")
    list_parser.add_argument("--app", help="of this follower only")
    list_parser.add_argument("--all", action="store_true", help="also those retried or skipped")
    list_parser.add_argument("--json", action="store_true", help="as JSON")
    list_parser.set_defaults(handler=dead_letters_list)
    retry_parser = actions.add_parser(
        "retry", parents=[common], help="process parked events again, in order"
    )
    retry_parser.add_argument("--app", help="of this follower only")
    retry_parser.add_argument("--id", type=int, help="this dead letter only")
    retry_parser.set_defaults(handler=dead_letters_retry)
    skip_parser = actions.add_parser(
        "skip", parents=[common], help="drop a parked event (recorded as skipped)"
    )
    skip_parser.add_argument("--app", required=True, help="the follower")
    skip_parser.add_argument("--id", type=int, required=True, help="the dead letter")
    skip_parser.set_defaults(handler=dead_letters_skip)
    return parser


def version_line() -> str:
    """The distribution's name and installed version (the package's own, if not installed)."""
    try:
        version = importlib.metadata.version(__distribution__)
    except importlib.metadata.PackageNotFoundError:
        version = __version__
    return f"{__distribution__} {version}"


# -- loading the system -----------------------------------------------------------


def load_system(path: str) -> System:
    """Import the ``System`` that ``PACKAGE.MODULE:NAME`` names."""
    module_name, sep, attr = path.partition(":")
    if not (sep and module_name and attr):
        raise CommandError(f"system {path!r} is not of the form PACKAGE.MODULE:NAME")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would, for the console script
    _import_module(module_name, path)
    try:
        system = resolve_topic(path)
    except Exception as error:
        raise CommandError(f"cannot find system {path!r}: {_one_line(error)}") from error
    if not isinstance(system, System):
        raise CommandError(f"{path!r} is a {type(system).__name__}, not a System")
    return system


def _import_module(module_name: str, path: str) -> None:
    """Import the system's module: "not found" only if it is not there; an error
    raised while importing it is reported as itself, with where it was raised."""
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise CommandError(
                f"cannot import system {path!r}: module {missing!r} not found "
                f"(is its directory the current one, or on PYTHONPATH?)"
            ) from error
        raise CommandError(
            f"cannot import system {path!r}: {_explained(error)}{_where(error)}"
        ) from error
    except Exception as error:  # any failure of the user's module while importing
        raise CommandError(
            f"cannot import system {path!r}: {type(error).__name__}: {_one_line(error)}"
            f"{_where(error)}"
        ) from error


def _where(error: BaseException) -> str:
    """`` (at FILE:LINE)``: where ``error`` was raised (for a syntax error: the bad line)."""
    if isinstance(error, SyntaxError) and error.filename:
        return f" (at {error.filename}:{error.lineno})"
    frames = traceback.extract_tb(error.__traceback__)
    user_frames = [f for f in frames if "importlib" not in f.filename]
    if not user_frames:
        return ""
    frame = user_frames[-1]
    return f" (at {frame.filename}:{frame.lineno})"


def construct_apps(system: System, names: Sequence[str], read_only: bool = False) -> dict[str, Any]:
    """The applications ``names`` of ``system``; with ``read_only``, making no tables."""
    env = {"CREATE_TABLE": "false"} if read_only else None
    apps: dict[str, Any] = {}
    try:
        for name in names:
            with settings_of([name]):
                apps[name] = system.get_app_cls(name)(env=env)
            refuse_in_memory(apps[name])
    except BaseException:
        close_apps(apps)
        raise
    return apps


@contextmanager
def settings_of(app_names: Sequence[str]) -> Iterator[None]:
    """Say which application a bad setting was read for, and the prefix that targets it."""
    try:
        yield
    except (ValueError, TypeError, ImportError, OSError, EventSourcingError) as error:
        missing = _missing_module(error) or ""
        if (
            isinstance(error, CommandError)
            or missing.split(".")[0] in EXTRAS
            or is_transient(error)  # (a database out of reach: not a setting)
        ):
            raise
        names = ", ".join(app_names)
        prefix = Environment(app_names[0]).create_keys("")[0] if len(app_names) == 1 else ""
        hint = (
            f"{prefix}NAME sets NAME for {names} alone"
            if prefix
            else ("a setting prefixed with an application's name (DOGSCHOOL_NAME) is for it alone")
        )
        raise CommandError(
            f"{names}: {_one_line(error)} (settings come from the environment; {hint})"
        ) from error


def refuse_in_memory(app: Application) -> None:
    if isinstance(app.factory, POPOFactory):
        raise CommandError(
            f"{app.name} uses the in-memory store, which no other process can see: set "
            "PERSISTENCE_MODULE (eventsourcing.sqlite or eventsourcing.postgres) and its settings"
        )


def close_apps(apps: dict[str, Any]) -> None:
    for app in apps.values():
        app.close()


# -- run --------------------------------------------------------------------------


class _ReportingRunner(WorkerRunner):
    """Checks the store is durable, and reports catch-up and live progress."""

    reporter: ProgressReporter | None = None

    def _construct_apps(self) -> None:
        with settings_of(self.app_names):
            super()._construct_apps()
        for app in self.apps.values():
            refuse_in_memory(app)

    def _progress_of(self, follower: Follower, leader_name: str, position: int) -> None:
        if self.reporter is not None:
            self.reporter.update(follower.name, leader_name, position)


def _wants_projections(args: argparse.Namespace) -> bool:
    """Whether run or status was given projections (--projection) rather than a system."""
    if args.projection and args.system:
        raise CommandError("name a system or projections (--projection), not both")
    if not args.projection and not args.system:
        raise CommandError(
            "name a system (PACKAGE.MODULE:NAME) "
            "or a projection (--projection PACKAGE.MODULE:CLASS)"
        )
    return bool(args.projection)


def run(args: argparse.Namespace) -> int:
    if threading.current_thread() is threading.main_thread():  # (signals go only there)
        listen_for_stop()  # before loading the system: a stop asked meanwhile is heard
    if _wants_projections(args):
        return projections.run_projections(
            projections.specs_from(args), stop_requested=STOP_REQUESTED
        )
    system = load_system(args.system)
    partition: Partition | None = args.partition
    runner = _ReportingRunner(
        system,
        apps=args.app,
        partition=partition,
        poll_interval=args.poll_interval,
        repartition=args.repartition,
        worker_name=_worker_name(args.app or system.followers, partition),
    )
    stop_requested = STOP_REQUESTED  # (a request made while starting is kept)
    runner.start()
    where = f" partition {partition}" if partition else ""
    logger.info("running %s%s of %s", ", ".join(runner.app_names), where, args.system)
    runner.reporter = ProgressReporter(runner, sys.stderr)
    runner.reporter.show_backlog()
    while not stop_requested.is_set() and not runner.has_errored.is_set():
        stop_requested.wait(0.2)
        runner.reporter.tick()
    logger.info("stopping: finishing the batch in hand")
    try:
        runner.stop()
    except Exception as error:
        logger.error("stopped on an error: %s", _one_line(error))
        return EXIT_FAILED
    logger.info("stopped")
    return 0


def _worker_name(names: Sequence[str], partition: Partition | None) -> str:
    """How the worker names itself to the database (POSTGRES_APPLICATION_NAME)."""
    return f"{'+'.join(names)} worker{'' if partition is None else f' {partition}'}"


def rebuild(args: argparse.Namespace) -> int:
    return projections.rebuild(projections.specs_from(args), args.from_scratch, args.yes)


# -- status -----------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    if _wants_projections(args):
        specs = projections.specs_from(args)
        return projections.show_status(specs, args.watch, args.interval, print)
    system = load_system(args.system)
    apps = construct_apps(system, list(system.nodes), read_only=True)
    try:
        if not args.watch:
            rows = _status_rows(system, apps, args)
            print(status_as_json(rows) if args.json else format_status(rows))
            return EXIT_FAILED if unhealthy(rows, args.max_lag) else 0
        return _watch(system, apps, args)
    finally:
        close_apps(apps)


def _status_rows(system: System, apps: dict[str, Any], args: argparse.Namespace) -> Any:
    rows = status_rows(system, apps)
    if args.workers:
        check_workers(rows, apps)
    return rows


def _watch(system: System, apps: dict[str, Any], args: argparse.Namespace) -> int:
    """Show the status every ``--interval`` seconds until interrupted, riding out outages:
    on a terminal redrawn in place, otherwise one block after another."""
    on_terminal = sys.stdout.isatty() and not args.json
    try:
        while True:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                rows = _status_rows(system, apps, args)
                text = status_as_json(rows) if args.json else format_status(rows)
            except Exception as error:
                if not is_transient(error):
                    raise
                text = f"the database is out of reach ({_one_line(error)}); trying again"
            if on_terminal:
                sys.stdout.write("\x1b[H\x1b[2J")  # home, clear: redraw in place
            print(text if args.json else f"{args.system} at {stamp}\n{text}")
            if not on_terminal and not args.json:
                print()
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


# -- dead letters -----------------------------------------------------------------


def _followers(system: System, app: str | None) -> list[str]:
    if app is None:
        return list(system.followers)
    if app not in system.followers:
        raise CommandError(
            f"{app!r} is not a follower of the system (followers: {', '.join(system.followers)})"
        )
    return [app]


def dead_letters_list(args: argparse.Namespace) -> int:
    system = load_system(args.system)
    apps = construct_apps(system, _followers(system, args.app), read_only=True)
    try:
        rows = dead_letter_rows(apps, include_all=args.all)
        print(format_dead_letters(rows, as_json=args.json))
        return 0
    finally:
        close_apps(apps)


def dead_letters_retry(args: argparse.Namespace) -> int:
    system = load_system(args.system)
    names = _followers(system, args.app)
    leaders = {leader for name in names for leader in system.follows[name]}
    apps = construct_apps(system, list(dict.fromkeys([*names, *leaders])))
    failures = 0
    try:
        targets = _retry_targets(system, apps, names, args.id)
        for name, leader in targets:
            follower: Follower = apps[name]
            follower.follow(leader, apps[leader].notification_log, apps[leader].notify_topics)
            done, failed = follower.retry_dead_letters(leader, args.id)
            for letter in done:
                print(
                    f"{name}: retried dead letter {letter.id} "
                    f"(notification {letter.notification_id} of {leader})"
                )
            for letter in failed:
                print(
                    f"{name}: dead letter {letter.id} failed again: "
                    f"{letter.error_type}: {_one_line_text(letter.error_message)}"
                )
            failures += len(failed)
        return EXIT_FAILED if failures else 0
    finally:
        close_apps(apps)


def _retry_targets(
    system: System, apps: dict[str, Any], names: list[str], letter_id: int | None
) -> list[tuple[str, str]]:
    """(follower, leader) pairs to retry: all, or the one holding dead letter ``letter_id``
    (whose ids are a follower's own: --app tells which follower's, if several have it)."""
    pairs = [(name, leader) for name in names for leader in system.follows[name]]
    if letter_id is None:
        return pairs
    holding = [
        (name, leader)
        for name, leader in pairs
        if any(letter.id == letter_id for letter in apps[name].dead_letters(leader))
    ]
    if not holding:
        raise CommandError(f"no dead letter {letter_id} of {', '.join(names)}")
    if len({name for name, _ in holding}) > 1:
        raise CommandError(
            f"dead letter {letter_id} is in several followers' tables "
            f"({', '.join(name for name, _ in holding)}): say which with --app"
        )
    return holding


def dead_letters_skip(args: argparse.Namespace) -> int:
    system = load_system(args.system)
    apps = construct_apps(system, _followers(system, args.app))
    try:
        follower: Follower = apps[args.app]
        letter = follower.skip_dead_letter(args.id)
        print(
            f"{args.app}: skipped dead letter {letter.id} "
            f"(notification {letter.notification_id} of {letter.upstream})"
        )
        return 0
    finally:
        close_apps(apps)


# -- errors -----------------------------------------------------------------------


def _explained(error: BaseException) -> str:
    """One line; for a missing optional dependency, the extra that installs it."""
    missing = _missing_module(error)
    if missing is not None and missing.split(".")[0] in EXTRAS:
        extra = EXTRAS[missing.split(".")[0]]
        return (
            f"the module {missing!r} is not installed: install the {extra!r} extra "
            f"(pip install '{__distribution__}[{extra}]')"
        )
    return _one_line(error)


def _missing_module(error: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name
        current = current.__cause__ or current.__context__
    return None


def _one_line(error: BaseException) -> str:
    return _one_line_text(str(error)) or type(error).__name__


def _one_line_text(text: str) -> str:
    return " ".join(text.split())
