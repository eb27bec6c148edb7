"""The DCB benchmark script keeps working: a quick run of ours on SQLite (no timing
asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dcb_benchmark_quick_run_of_ours_on_sqlite(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS-dcb.md"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "dcb.py"),
        "--quick",
        "--ours-only",
        "--stores",
        "sqlite",
        "--threads",
        "1,2",
        "--output",
        str(output),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = output.read_text()
    assert "error" not in report, report
    for size in ("1,000", "5,000"):
        for threads in (1, 2):
            assert f"| ours | sqlite | {size} | {threads} |" in report, report
