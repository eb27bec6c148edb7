"""The demo runs and prints what it does; CI runs the README's test command."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_dogschool_demo_prints_counts_under_both_runners() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "dogschool.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("dogs that can roll over: 3") == 2
    assert result.stdout.count("dogs that can play dead: 1") == 2
    assert "MultiThreadedRunner" in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    command = (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'"
        " && .venv/bin/python -m pytest"
    )
    assert command in readme
    assert command in (REPO / ".ci" / "run").read_text()
