"""The benchmark script keeps working: a quick run of ours only, no timing asserted."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IN_MEMORY_SCENARIOS = [
    "save",
    "get",
    "replay",
    "log",
    "system-st",
    "system-mt",
    "latency",
    "catchup",
    "memory",
]


def test_bench_quick_ours_only(tmp_path):
    output = tmp_path / "results.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            "--quick",
            "--ours-only",
            "--stores",
            "popo",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = output.read_text()
    for scenario in IN_MEMORY_SCENARIOS:
        assert f"### {scenario} " in report, scenario
    assert "error: " not in report and "failed" not in report, report
