"""``python -m eventsourcing``: the operator's command line (see eventsourcing.cli)."""

import sys

try:
    from keel_eventsourcing_cli import main
except ImportError:  # the package copied alone onto the path, without its entry module
    from eventsourcing.cli import main

sys.exit(main())
