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
from .codec import CodecParams  # noqa: E402
from .extract import decode_entry, extract_codes  # noqa: E402

__all__ = [
    "__version__",
    # store
    "open_store", "Store", "Entry", "content_key",
    # codes (foundation)
    "TrGrid", "CodecParams", "extract_codes", "decode_entry",
    # errors
    *_errors_all,
]
