"""The audio stop: torchaudio transforms on real speech, Silero VAD. Same as `tour run audio` (see --help)."""

import sys

from tour.audio import main

sys.exit(main(sys.argv[1:]))
