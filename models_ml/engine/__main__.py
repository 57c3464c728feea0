"""``python -m models_ml.engine``: see ``cli.py``."""

import sys

from .cli import main

sys.exit(main())
