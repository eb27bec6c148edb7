"""The distribution: its version on the command line, its entry point when another
distribution's ``eventsourcing`` files have replaced ours, its declared metadata."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import eventsourcing
from eventsourcing.cli import main

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = (REPO / "pyproject.toml").read_text()


# -- eventsourcing --version ------------------------------------------------------


def test_version_prints_the_distribution_name_and_installed_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    installed = importlib.metadata.version("keel-eventsourcing")
    assert capsys.readouterr().out == f"keel-eventsourcing {installed}\n"


def test_version_falls_back_to_the_package_version_when_not_installed(capsys, monkeypatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"keel-eventsourcing {eventsourcing.__version__}\n"


# -- the entry point, when the other distribution's files replaced ours ------------

ENTRY = "import sys; from keel_eventsourcing_cli import main; sys.exit(main({argv!r}))"


def fake_package(root: Path, files: dict[str, str]) -> Path:
    """An ``eventsourcing`` package under ``root``, to put first on the path."""
    package = root / "eventsourcing"
    package.mkdir()
    for name, text in files.items():
        (package / name).write_text(text)
    return root


def run_entry_point(path_first: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path_first), str(REPO)]))
    return subprocess.run(
        [sys.executable, "-c", ENTRY.format(argv=argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=path_first,
        timeout=60,
    )


def assert_says_in_one_line(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("eventsourcing: error: ")
    for phrase in phrases + ("pip uninstall -y eventsourcing keel-eventsourcing",):
        assert phrase in lines[0], lines[0]


def test_entry_point_names_another_package_in_place_of_ours(tmp_path: Path) -> None:
    root = fake_package(tmp_path, {"__init__.py": "", "system.py": ""})
    result = run_entry_point(root, ["status", "examples.dogschool:system"])
    assert_says_in_one_line(
        result, f"the eventsourcing package at {root / 'eventsourcing'}", "is not keel-"
    )


def test_entry_point_says_when_our_cli_cannot_be_imported(tmp_path: Path) -> None:
    # Our __init__ left in place, but the other distribution's system module over ours.
    root = fake_package(
        tmp_path,
        {
            "__init__.py": Path(str(eventsourcing.__file__)).read_text(),
            "cli.py": "from eventsourcing.system import WorkerRunner\n",
            "system.py": "",
        },
    )
    result = run_entry_point(root, ["--version"])
    assert_says_in_one_line(result, "eventsourcing.cli cannot be imported", "WorkerRunner")


def test_entry_point_runs_our_command_line_when_the_package_is_ours(tmp_path: Path) -> None:
    result = run_entry_point(tmp_path, ["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("keel-eventsourcing ")


def test_console_script_says_in_one_line_when_another_package_replaced_ours(
    tmp_path: Path,
) -> None:
    script = Path(sys.executable).with_name("eventsourcing")
    if not script.exists():
        pytest.skip(f"no console script at {script} (the project is not installed)")
    if "keel_eventsourcing_cli" not in script.read_text():
        pytest.skip(f"{script} predates keel_eventsourcing_cli: reinstall (pip install -e .)")
    root = fake_package(tmp_path, {"__init__.py": ""})
    env = dict(os.environ, PYTHONPATH=str(root))
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert_says_in_one_line(result, "is not keel-eventsourcing's")


# -- declared metadata ----------------------------------------------------------------


def test_license_is_declared_in_spdx_form_with_its_file() -> None:
    assert re.search(r'^license = "BSD-3-Clause"$', PYPROJECT, flags=re.MULTILINE)
    assert re.search(r'^license-files = \["LICENSE"\]$', PYPROJECT, flags=re.MULTILINE)
    assert re.search(r'"setuptools>=(7[7-9]|[89]\d)', PYPROJECT), "license-files needs >=77"
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the keel-eventsourcing authors" in license_text
