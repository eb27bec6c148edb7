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
TIMEOUT = 600  # seconds for one installing command


@dataclass
class ReferenceLibrary:
    version: str
    python: Path
    has_postgres: bool  # whether its PostgreSQL driver could be installed too

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


def build(version: str, directory: Path) -> ReferenceLibrary | str:
    """A venv with ``eventsourcing=={version}`` (and, if it installs, a PostgreSQL
    driver of a version it accepts), or why it could not be made."""
    venv = directory / f"reference-{version}"
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    failure = install([sys.executable, "-m", "venv", "--without-pip", str(venv)]) or install(
        [*pip, f"eventsourcing=={version}"]
    )
    if failure:
        return f"eventsourcing=={version} cannot be installed: {failure}"
    # Binary wheels: nothing to compile (9.3 asks for psycopg's C build, < 3.3).
    driver = "psycopg[binary,pool]" + ("<3.3" if version.startswith("9.3.") else "")
    return ReferenceLibrary(version, python, has_postgres=not install([*pip, driver]))


def install(command: list[str]) -> str:
    """Run an installing command; return its last line of error ('' if it worked)."""
    try:
        subprocess.run(command, capture_output=True, text=True, check=True, timeout=TIMEOUT)
    except (subprocess.SubprocessError, OSError) as error:
        output = getattr(error, "stderr", None) or str(error)
        lines = [line for line in output.splitlines() if "WARNING" not in line]
        return (lines or ["failed"])[-1]
    return ""


def build_all(directory: Path) -> dict[str, ReferenceLibrary | str]:
    """Every version of VERSIONS, built in parallel."""
    with ThreadPoolExecutor(len(VERSIONS)) as pool:
        built = pool.map(lambda version: build(version, directory), VERSIONS)
        return dict(zip(VERSIONS, built))
