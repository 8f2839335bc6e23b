"""`python -m dsflexinet`: the CLI without relying on the console script (conda environments, clusters)."""

import sys

from dsflexinet.cli import main

sys.exit(main())
