"""``python -m server``: the same as ``xlsr-stream serve``."""

import sys

from .cli import main

sys.exit(main())
