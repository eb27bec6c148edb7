"""The seed script, run unchanged against this project."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed" / "seed_example.py"


def run_seed(extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, str(SEED)], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.skipif(not SEED.exists(), reason=f"seed not found at {SEED} (../shared absent)")
def test_seed_example_runs_unchanged_in_memory() -> None:
    result = run_seed()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "seed example OK"
