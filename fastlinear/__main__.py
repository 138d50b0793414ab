"""``python -m fastlinear`` runs the ``fastlinear`` command."""

import sys

from .cli import main

sys.exit(main())
