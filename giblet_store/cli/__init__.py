"""The ``giblet-store`` command line: one module per command family, the demo, terminal display.

The top floor: may import every package; nothing imports it.
"""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
