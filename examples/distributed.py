"""Stop 8, DDP and tensor parallel under torchrun. Same as `tour run distributed`; flags are the stop's (see --help)."""

import sys

from tour.distributed import main

sys.exit(main(sys.argv[1:]))
