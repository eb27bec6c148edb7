"""Type checking of user code: mypy on the typed programs in tests/typing.

A program marks each line mypy must flag with a comment ``E: <error code>`` and each
``reveal_type`` with a comment ``R: <type>``; mypy must report exactly those, nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = REPO / "tests" / "typing"
ERROR = re.compile(r"^.+?:(\d+): error: .*\[([a-z-]+)\]$")
REVEALED = re.compile(r'^.+?:(\d+): note: Revealed type is "(.*)"$')
EXPECTED = re.compile(r"# ([ER]): (.+)$")


def expectations(program: Path) -> dict[int, tuple[str, str]]:
    marks = {}
    for number, line in enumerate(program.read_text().splitlines(), start=1):
        match = EXPECTED.search(line)
        if match:
            marks[number] = (match[1], match[2].strip())
    return marks


def mypy_findings(program: Path, cache: Path) -> dict[int, tuple[str, str]]:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), str(program)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings: dict[int, tuple[str, str]] = {}
    for line in result.stdout.splitlines():
        if match := ERROR.match(line):
            assert int(match[1]) not in findings, f"two findings on one line: {line}"
            findings[int(match[1])] = ("E", match[2])
        elif match := REVEALED.match(line):
            findings[int(match[1])] = ("R", match[2].replace("builtins.", ""))
        elif ": note:" not in line and not line.startswith(("Found ", "Success")):
            raise AssertionError(f"unexpected mypy output: {line}\n{result.stderr}")
    return findings


@pytest.mark.parametrize("program", sorted(PROGRAMS.glob("*.py")), ids=lambda p: p.name)
def test_mypy_reports_exactly_the_marked_lines(program: Path, tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    expected = expectations(program)
    assert expected, f"{program.name} marks no line"
    assert mypy_findings(program, tmp_path) == expected
