"""giblet_store: movie stimuli and fMRI in one chunked, labelled, versioned Zarr store."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("giblet_store")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from .errors import *  # noqa: E402,F401,F403
from .errors import __all__ as _errors_all  # noqa: E402
from .grid import TrGrid  # noqa: E402
from .params import content_key  # noqa: E402
from .store import Entry, Store, open_store  # noqa: E402

__all__ = ["__version__", "open_store", "Store", "Entry", "TrGrid", "content_key", *_errors_all]
