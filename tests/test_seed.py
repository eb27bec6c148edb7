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


# -- the seed on durable stores ------------------------------------------------
#
# The seed asserts absolute counts in both of its runner sections, which hold only
# on an empty store. On a database that outlives the first runner (a file per
# application, or PostgreSQL), the second section would also see the first one's
# dogs. So there, each section runs (its code unchanged, after the seed's class
# definitions) on a store of its own.

MULTI_THREADED_SECTION = "from eventsourcing.system import MultiThreadedRunner"
SINGLE_THREADED_SECTION = "from eventsourcing.system import SingleThreadedRunner"


def seed_sections(tmp_path: Path) -> list[Path]:
    source = SEED.read_text()
    definitions, _, rest = source.partition(SINGLE_THREADED_SECTION)
    single, _, multi = rest.partition(MULTI_THREADED_SECTION)
    assert single and multi, "the seed's runner sections were not found"
    scripts = []
    for name, section in [
        ("single", SINGLE_THREADED_SECTION + single + "\nprint('seed example OK')\n"),
        ("multi", MULTI_THREADED_SECTION + multi),
    ]:
        script = tmp_path / f"seed_{name}.py"
        script.write_text(definitions + section)
        scripts.append(script)
    return scripts


def run_script(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=full_env, timeout=120
    )


needs_seed = pytest.mark.skipif(not SEED.exists(), reason=f"seed not found at {SEED}")


@needs_seed
@pytest.mark.parametrize(
    "dbname",
    [":memory:", "file:{app}?mode=memory&cache=shared"],
    ids=["memory", "shared-cache-uri"],
)
def test_seed_runs_unchanged_on_sqlite_in_memory(dbname: str) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "DOGSCHOOL_SQLITE_DBNAME": dbname.format(app="dogschool"),
        "COUNTERS_SQLITE_DBNAME": dbname.format(app="counters"),
    }
    result = run_seed(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("seed example OK")


@needs_seed
def test_seed_sections_on_a_sqlite_file_per_application(tmp_path: Path) -> None:
    for script in seed_sections(tmp_path):
        store = tmp_path / script.stem
        store.mkdir()
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "DOGSCHOOL_SQLITE_DBNAME": str(store / "dogschool.db"),
            "COUNTERS_SQLITE_DBNAME": str(store / "counters.db"),
        }
        result = run_script(script, env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("seed example OK")
        assert (store / "dogschool.db").exists() and (store / "counters.db").exists()


@needs_seed
@pytest.mark.parametrize("section", [0, 1], ids=["single", "multi"])
def test_seed_sections_on_postgres(
    section: int, tmp_path: Path, postgres_env: dict[str, str]
) -> None:
    script = seed_sections(tmp_path)[section]
    result = run_script(script, dict(postgres_env, PERSISTENCE_MODULE="eventsourcing.postgres"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("seed example OK")
