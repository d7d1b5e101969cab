import sys

from tour.tools.cli import main

sys.exit(main())
