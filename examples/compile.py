"""Stop 5, torch.compile vs eager. Same as `tour run compile`; flags are the stop's (see --help)."""

import sys

from tour.compile import main

sys.exit(main(sys.argv[1:]))
