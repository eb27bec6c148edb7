"""What CI runs: the suite on every Python version the project declares (the README's
test command is checked in test_examples)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = (REPO / "pyproject.toml").read_text()
CI = (REPO / ".ci" / "run").read_text()


def test_declared_python_versions_start_at_requires_python_without_gaps() -> None:
    lowest = re.search(r'requires-python = ">=(3\.\d+)"', PYPROJECT)
    assert lowest, "pyproject.toml has no requires-python lower bound"
    declared = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', PYPROJECT)
    minors = [int(version.split(".")[1]) for version in declared]
    assert declared and declared[0] == lowest.group(1)
    assert minors == list(range(minors[0], minors[0] + len(minors))), declared
    assert "Programming Language :: Python ::" in CI  # the versions CI runs
