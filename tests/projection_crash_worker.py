"""Runs the trick-counting projection until killed (the store comes from the
environment: PERSISTENCE_MODULE and its settings). Prints "running" once started.

Usage: python tests/projection_crash_worker.py
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventsourcing.projection import ProjectionRunner  # noqa: E402
from tests.projection_views import SLOW_VIEWS, CountProjection, DogSchool  # noqa: E402


def main() -> None:
    view_class = SLOW_VIEWS[os.environ["PERSISTENCE_MODULE"]]
    with ProjectionRunner(
        application_class=DogSchool, projection_class=CountProjection, view_class=view_class
    ) as runner:
        print("running", flush=True)
        runner.run_forever()


if __name__ == "__main__":
    main()
