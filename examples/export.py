"""torch.export + AOTInductor, run in a fresh process. Same as `tour run export`; flags are the stop's (see --help)."""

import sys

from tour.export import main

sys.exit(main(sys.argv[1:]))
