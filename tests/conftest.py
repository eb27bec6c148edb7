"""Shared test setup."""

import sys
from pathlib import Path

# Tests import example systems (examples.dogschool) from the repository root.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
