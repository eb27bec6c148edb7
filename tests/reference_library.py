"""Throwaway virtual environments holding the reference library, for tests that make
data with it. Its package is also called ``eventsourcing``, so it never goes into our
environment: each version gets its own venv under the test session's temporary
directory, built once per session (versions in parallel) and removed with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The latest release of each line the old-data tests cover (9.3 tracks a row per
# processed position; 9.4 and 9.5 one row per upstream application).
VERSIONS = ("9.3.5", "9.4.6", "9.5.6")
INSTALL_TIMEOUT = 600  # seconds


@dataclass
class ReferenceLibrary:
    version: str
    python: Path

    def run(self, script: Path, *args: str, env: dict[str, str]) -> dict[str, Any]:
        """Run ``script`` under this library; return the JSON of its last output line."""
        return run_script(self.python, script, *args, env=env)


def run_script(python: Path | str, script: Path, *args: str, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [str(python), str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{script.name} {' '.join(args)} under {python} failed:\n{done.stderr}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def build(version: str, directory: Path, extras: str = "") -> ReferenceLibrary | str:
    """A venv with ``eventsourcing{extras}=={version}``, or why it could not be made."""
    venv = directory / f"reference-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        steps = [
            [sys.executable, "-m", "venv", "--without-pip", str(venv)],
            [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
            + ["--disable-pip-version-check", f"eventsourcing{extras}=={version}"],
        ]
        for step in steps:
            try:
                subprocess.run(
                    step, capture_output=True, text=True, check=True, timeout=INSTALL_TIMEOUT
                )
            except (subprocess.SubprocessError, OSError) as error:
                output = getattr(error, "stderr", None) or str(error)
                lines = [line for line in output.splitlines() if "WARNING" not in line]
                return f"eventsourcing=={version} cannot be installed: {(lines or [''])[-1]}"
    return ReferenceLibrary(version, python)


def build_all(directory: Path, extras: dict[str, str]) -> dict[str, ReferenceLibrary | str]:
    """Every version of VERSIONS, built in parallel (``extras`` per version, if any)."""
    with ThreadPoolExecutor(len(VERSIONS)) as pool:
        built = pool.map(lambda v: build(v, directory, extras.get(v, "")), VERSIONS)
        return dict(zip(VERSIONS, built))
