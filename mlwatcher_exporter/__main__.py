"""``python -m mlwatcher_exporter``: the same as the ``mlwatcher-exporter`` command."""

import sys

from .cli import main

sys.exit(main())
