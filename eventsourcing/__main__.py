"""``python -m eventsourcing``: the operator's command line (see eventsourcing.cli)."""

import sys

from eventsourcing.cli import main

sys.exit(main())
