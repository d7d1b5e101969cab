"""Naive attention vs scaled_dot_product_attention. Same as `tour run attention`; flags are the stop's (see --help)."""

import sys

from tour.attention import main

sys.exit(main(sys.argv[1:]))
