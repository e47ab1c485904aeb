"""`python -m benchmarks.e2e`: see `benchmarks.e2e.cli`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
