"""Runs the async dog school (AsyncRunner, Counters after DogSchool) while commands
stream in, until killed.

Usage: python tests/async_crash_worker.py N_COMMANDS
Prints one line per completed command, so a test can kill it at a chosen moment,
and "done" once the counters have caught up. The store comes from the environment.
"""

import asyncio
import faulthandler
import sys

from examples.async_dogschool import DogSchool, make_runner
from examples.dogschool import Counters

TRICKS = ["roll over", "fetch ball", "play dead", "sit", "beg"]


def dump_tasks() -> None:
    """Print where each task of the loop waits (faulthandler shows threads only, and
    a task stuck in the loop leaves them all idle)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


async def main(commands: int) -> None:
    asyncio.get_running_loop().call_later(90, dump_tasks)
    async with make_runner(poll_interval=0.2) as runner:  # catches up an earlier run's events
        school = runner.get(DogSchool)
        dog_ids = [await school.register_dog(f"dog{i}") for i in range(3)]
        for i in range(commands):
            await school.add_trick(dog_ids[i % 3], TRICKS[i % len(TRICKS)])
            print(i, flush=True)
        await runner.wait(Counters, timeout=60)
    print("done", flush=True)


if __name__ == "__main__":
    # A worker that hangs shows where, in its stderr, and ends before the test's timeout.
    faulthandler.dump_traceback_later(100, exit=True)
    asyncio.run(main(int(sys.argv[1])))
