"""``python -m pipelines.cli``: the same as ``agentic``."""

import sys

from pipelines.cli import main

sys.exit(main())
