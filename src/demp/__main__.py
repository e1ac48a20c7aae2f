"""``python -m demp``: the ``demp`` command."""

import sys

from .cli.main import main

sys.exit(main())
