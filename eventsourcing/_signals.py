"""A worker's stop request (SIGINT or SIGTERM), heard from the process's first steps.

A worker asked to stop while it is still starting (importing, loading the system,
opening connections) should stop as cleanly as a running one, not die of the
signal: the command line's entry point listens before anything heavy is imported,
and the ``run`` command then waits on the same event.
"""

from __future__ import annotations

import signal
import threading

STOP_REQUESTED = threading.Event()


def listen_for_stop() -> threading.Event:
    """From now on SIGINT and SIGTERM set ``STOP_REQUESTED`` (returned)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: STOP_REQUESTED.set())
    return STOP_REQUESTED


def runs_a_worker(argv: list[str]) -> bool:
    """Whether the command line asks for ``run`` (the one command that runs until told):
    its first word that is neither an option nor the value of ``--log-level``."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word == "run"
    return False
