"""``python -m conceptseg.cli``: the same as the ``conceptseg`` command."""

import sys

from . import main

sys.exit(main())
