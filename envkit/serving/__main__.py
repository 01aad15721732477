"""``python -m envkit.serving MODEL``: the scoring server in this interpreter."""

from __future__ import annotations

import sys

from envkit.serving.server import main

if __name__ == "__main__":
    sys.exit(main())
