"""Runs the dog-school system while commands stream in, until killed.

Usage: python tests/crash_worker.py single|multi N_COMMANDS
Prints one line per completed command, so a test can kill it at a chosen moment.
The store comes from the environment (PERSISTENCE_MODULE and its settings).
"""

import sys

from eventsourcing.system import MultiThreadedRunner, SingleThreadedRunner
from examples.dogschool import DogSchool, system

TRICKS = ["roll over", "fetch ball", "play dead", "sit", "beg"]


def main() -> None:
    runner_cls = {"single": SingleThreadedRunner, "multi": MultiThreadedRunner}[sys.argv[1]]
    commands = int(sys.argv[2])
    runner = runner_cls(system)
    runner.start()  # catches up whatever an earlier, killed run left unprocessed
    school = runner.get(DogSchool)
    dog_ids = [school.register_dog(f"dog{i}") for i in range(3)]
    for i in range(commands):
        school.add_trick(dog_ids[i % 3], TRICKS[i % len(TRICKS)])
        print(i, flush=True)
    if isinstance(runner, MultiThreadedRunner):
        runner.wait(timeout=60)
    runner.stop()
    print("done", flush=True)


if __name__ == "__main__":
    main()
