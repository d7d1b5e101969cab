"""Stop 9, PyTorch Lightning. Same as `tour run lightning`; flags are the stop's (see --help).

Named lightning_demo.py, not lightning.py: running a script puts its folder first on sys.path, and a file called
lightning.py here would then shadow the real `lightning` package.
"""

import sys

from tour.lightning import main

sys.exit(main(sys.argv[1:]))
