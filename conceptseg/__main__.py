"""``python -m conceptseg``: the same as the ``conceptseg`` command."""

import sys

from .cli import main

sys.exit(main())
