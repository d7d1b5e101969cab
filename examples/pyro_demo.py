"""Stop 10, Pyro. Same as `tour run pyro`; flags are the stop's (see --help).

Named pyro_demo.py, not pyro.py: running a script puts its folder first on sys.path, and a file called pyro.py
here would then shadow the real `pyro` package.
"""

import sys

from tour.pyro import main

sys.exit(main(sys.argv[1:]))
