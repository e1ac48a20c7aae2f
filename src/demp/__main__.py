"""``python -m demp``: the ``demp`` command."""

import sys

from .experiments.cli.main import main

sys.exit(main())
