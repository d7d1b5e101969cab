"""The tour's performance claims measured side by side. Same as `tour bench`; see --help for its flags."""

import sys

from tour.tools.bench import main

sys.exit(main(sys.argv[1:]))
