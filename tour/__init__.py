"""torch-tour: see the PyTorch ecosystem work on your own machine.

Importing this package imports no torch: every heavy library loads inside the stop that needs it.
"""

__version__ = "0.1.0"
