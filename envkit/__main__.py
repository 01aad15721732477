"""``python -m envkit``: the envkit command line."""

from __future__ import annotations

import sys

from envkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
