"""``python3 -m roienc``: the ``roienc`` command."""
import sys

from .cli import main

sys.exit(main())
