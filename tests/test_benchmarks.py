"""The benchmark script keeps working: a quick run of ours only, no timing asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_quick_bench(tmp_path, *options):
    output = tmp_path / "results.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            "--quick",
            "--ours-only",
            *options,
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return output.read_text()


def test_bench_quick_ours_only(tmp_path):
    report = run_quick_bench(tmp_path, "--stores", "popo")
    for scenario in IN_MEMORY_SCENARIOS:
        assert f"### {scenario} " in report, scenario
    assert "error: " not in report and "failed" not in report, report


def test_bench_sets_saves_against_the_raw_limit_measured_in_the_same_rounds(tmp_path):
    report = run_quick_bench(tmp_path, "--stores", "sqlite", "--scenarios", "save,system-st")
    assert "## Raw store limits" in report, report
    assert "| sqlite | " in report, report
    # One line per scenario relates its figure to the raw commit rate.
    assert report.count("Against the raw limit") == 2, report
    assert "commits twice" in report, report
    # The less durable option is measured too, and reported apart from ours.
    assert report.count("Less durable option, not counted as ours") == 2, report


def test_concurrency_bench_runs_every_section_on_sqlite(tmp_path):
    """benchmarks/concurrency.py (bench.py --concurrency), tiny: ours stands in for
    the reference library, so no other install is needed. Its figures go into a
    section of the results file, which a later bench.py report keeps."""
    results = tmp_path / "results.md"
    results.write_text("# An earlier report\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "concurrency.py"),
            "--stores",
            "sqlite",
            "--threads",
            "1,4",
            "--processes",
            "2",
            "--seconds",
            "0.3",
            "--sections",
            "saves,contended,catchup",
            "--backlog",
            "2000",
            "--reference",
            sys.executable,
            "--write",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert sum("ours/raw" in line for line in lines) == 3, proc.stdout
    assert not any("error" in line for line in lines), proc.stdout
    assert any("contended" in line and "conflicts" in line for line in lines), proc.stdout
    assert any("'skipped': 0" in line and "'twice or out of order': 0" in line for line in lines)
    written = results.read_text()
    assert written.startswith("# An earlier report"), written
    assert "<!-- concurrency -->" in written and "<!-- /concurrency -->" in written, written
    assert "- SQLite, 8 threads" not in written  # (4 threads here: that target is not judged)
    assert "follower catching up 2,000 events" in written, written
    report = run_quick_bench(tmp_path, "--stores", "popo", "--scenarios", "save")
    assert "## Store: popo" in report, report
    assert "<!-- concurrency -->" in report and "follower catching up 2,000 events" in report


@pytest.mark.parametrize("threaded", [False, True])
def test_the_seed_commands_with_no_library_count_every_trick_once(threaded):
    """benchmarks/raw_seed.py (the seed rows' no-library stand-in) checks its own
    counts: it fails unless its follower recorded each trick exactly once."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "raw_seed.py"), "--store", "sqlite"]
        + ["--n", "60"]
        + (["--threaded"] if threaded else []),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH-RESULT "))
    assert json.loads(line.split(" ", 1)[1])["metrics"]["commands/s"] > 0
