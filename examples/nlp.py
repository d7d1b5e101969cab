"""Stop 2, NLP with transformers + datasets. Same as `tour run nlp`; flags are the stop's (see --help)."""

import sys

from tour.nlp import main

sys.exit(main(sys.argv[1:]))
