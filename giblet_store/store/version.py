"""The installed package's version (``giblet_store.__version__``), recorded in every store it creates."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("giblet_store")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
