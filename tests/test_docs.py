"""Runs the Python blocks of each page of the user guide (docs/*.md), in order, one
program per page."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDE = DOCS / "guide.md"
PAGES = sorted(DOCS.glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_guide_has_examples():
    assert len(python_blocks(GUIDE)) >= 8


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_guide_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch):
    for key in ("PERSISTENCE_MODULE", "CIPHER_TOPIC", "CIPHER_KEY", "COMPRESSOR_TOPIC"):
        monkeypatch.delenv(key, raising=False)
    # Classes defined by the guide need a module that topics can name.
    module = types.ModuleType("guide_examples")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for number, block in enumerate(python_blocks(page), start=1):
        code = compile(block, f"{page.name} (python block {number})", "exec")
        exec(code, module.__dict__)
