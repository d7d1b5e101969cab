import sys

from tour.cli import main

sys.exit(main())
