"""Stop 3, torchvision end to end. Same as `tour run vision`; flags are the stop's (see --help)."""

import sys

from tour.vision import main

sys.exit(main(sys.argv[1:]))
