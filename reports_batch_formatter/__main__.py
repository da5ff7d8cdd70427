"""``python -m reports_batch_formatter``: the same command as ``python formatter.py``."""

import sys

from reports_batch_formatter.formatter import main

sys.exit(main())
