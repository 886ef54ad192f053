"""``python -m tkshm``: the same as the ``tkshm`` command."""

import sys

from .cli import main

sys.exit(main())
