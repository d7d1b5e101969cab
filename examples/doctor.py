"""Smoke-test the installed PyTorch stack. Same as `tour doctor`; flags: --quick, --json, --device D, --timeout S."""

import sys

from tour.tools.doctor import main

sys.exit(main(sys.argv[1:]))
