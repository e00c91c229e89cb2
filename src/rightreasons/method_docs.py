"""Old import path of :mod:`rightreasons.report.methods_page` (kept for existing code and commands)."""

import sys

from .report.methods_page import *  # noqa: F401,F403
from .report.methods_page import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
