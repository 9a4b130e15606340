"""``python -m sanode.cli``."""

import sys

from . import main

sys.exit(main())
