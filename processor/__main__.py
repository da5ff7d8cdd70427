"""``python -m processor``: the command line (see :mod:`processor.cli`)."""

import sys

from processor.cli import main

sys.exit(main())
