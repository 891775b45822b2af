"""``python -m shared.bench backbone [--quick]`` and ``python -m shared.bench engine``."""

import sys

from .cli import main

sys.exit(main())
