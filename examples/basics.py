"""Stop 1, the building blocks. Same as `tour run basics`; flags are the stop's (see --help)."""

import sys

from tour.basics import main

sys.exit(main(sys.argv[1:]))
