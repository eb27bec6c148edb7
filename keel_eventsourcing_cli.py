"""The ``eventsourcing`` command's entry point, kept outside the ``eventsourcing`` package.

keel-eventsourcing and another distribution both install the import package
``eventsourcing``, so installing one over the other replaces files of the first. Living
apart, this module can still run when that has happened, and says so in one line
(with the fix) instead of failing with an ImportError traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from types import ModuleType

DISTRIBUTION = "keel-eventsourcing"
EXIT_BROKEN_INSTALL = 2  # as for any other problem the operator must fix
FIX = (
    "uninstall both (pip uninstall -y eventsourcing keel-eventsourcing),"
    " then reinstall ours (pip install keel-eventsourcing)"
)


class NotOurPackage(Exception):
    """The ``eventsourcing`` package on the path is not (wholly) keel-eventsourcing's."""


def main(argv: Sequence[str] | None = None) -> int:
    _listen_for_stop_early(list(sys.argv[1:] if argv is None else argv))
    try:
        cli_main = our_cli_main()
    except NotOurPackage as problem:
        print(f"eventsourcing: error: {problem}; to fix it, {FIX}", file=sys.stderr)
        return EXIT_BROKEN_INSTALL
    return cli_main(argv)


def our_cli_main() -> Callable[[Sequence[str] | None], int]:
    """keel-eventsourcing's ``eventsourcing.cli.main``, or NotOurPackage saying what is wrong."""
    try:
        import eventsourcing
    except ImportError as error:
        raise NotOurPackage(f"the eventsourcing package cannot be imported ({error})") from error
    if getattr(eventsourcing, "__distribution__", None) != DISTRIBUTION:
        raise NotOurPackage(
            f"the eventsourcing package at {_location(eventsourcing)} is not {DISTRIBUTION}'s"
            + _other_distribution()
        )
    try:
        from eventsourcing.cli import main as cli_main
    except ImportError as error:
        raise NotOurPackage(
            f"eventsourcing.cli cannot be imported from {_location(eventsourcing)} ({error}):"
            f" files of {DISTRIBUTION} there may have been replaced" + _other_distribution()
        ) from error
    return cli_main


def _listen_for_stop_early(argv: list[str]) -> None:
    """A worker (``run``) hears SIGTERM/SIGINT before it imports the rest (see
    eventsourcing._signals); nothing here if that module is not ours to import."""
    try:
        from eventsourcing import _signals
    except ImportError:
        return
    if _signals.runs_a_worker(argv):
        _signals.listen_for_stop()


def _location(package: ModuleType) -> str:
    file = getattr(package, "__file__", None)
    if file:
        return os.path.dirname(file)
    return ", ".join(getattr(package, "__path__", [])) or "(unknown)"  # a namespace package


def _other_distribution() -> str:
    """Names the other distribution that installs ``eventsourcing``, if it is installed."""
    try:
        version = metadata.version("eventsourcing")
    except metadata.PackageNotFoundError:
        return ""
    return f" (the distribution eventsourcing {version} installs a package of that name)"
