"""``python -m giblet_store.cli``: the ``giblet-store`` command."""

import sys

from .main import main

sys.exit(main())
