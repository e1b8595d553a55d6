"""giblet_store: movie stimuli and fMRI in one chunked, labelled, versioned Zarr store.

Heavy dependencies (torch, transformers, librosa, nibabel, distributed) are imported only by the
functions that use them, so ``import giblet_store`` and opening a store stay light.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("giblet_store")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from .errors import *  # noqa: E402,F401,F403
from .errors import __all__ as _errors_all  # noqa: E402
from .params import content_key  # noqa: E402
from .store import Entry, Store, open_store  # noqa: E402
from .grid import TrGrid  # noqa: E402
from .codec import CodecParams  # noqa: E402
from .extract import decode_entry, extract_codes  # noqa: E402
from .mel import MelParams, decode_mel, extract_mel  # noqa: E402
from .hrf import Fir, Hrf, convolve_causal, delay, hrf_kernel  # noqa: E402
from .resample import Resample  # noqa: E402
from .derive import Embeddings, lineage  # noqa: E402
from .fmri import FmriParams, MaskParams, ingest_fmri  # noqa: E402
from .nifti import to_nifti  # noqa: E402
from .predictions import entry_to_nifti, evaluate, write_predictions  # noqa: E402
from .samples import plan_samples, split_trs  # noqa: E402
from .stream import StreamDecoder, StreamEncoder, stream_decode, stream_encode  # noqa: E402

__all__ = [
    "__version__",
    # store
    "open_store", "Store", "Entry", "content_key",
    # codes
    "TrGrid", "CodecParams", "extract_codes", "decode_entry",
    # features
    "MelParams", "extract_mel", "decode_mel", "Embeddings", "Hrf", "Fir", "hrf_kernel", "convolve_causal",
    "delay", "Resample", "lineage",
    # fMRI, predictions, training
    "FmriParams", "MaskParams", "ingest_fmri", "to_nifti", "write_predictions", "evaluate", "entry_to_nifti",
    "split_trs", "plan_samples", "StoreDataset",
    # exact streaming encode/decode
    "StreamEncoder", "StreamDecoder", "stream_encode", "stream_decode",
    # batch
    "run_batch", "BatchReport", "load_manifest", "Manifest",
    # errors
    *_errors_all,
]

_LAZY = {
    "StoreDataset": ("giblet_store.torch", "StoreDataset"),  # imports torch
    "run_batch": ("giblet_store.distributed", "run_batch"),
    "BatchReport": ("giblet_store.distributed", "BatchReport"),
    "load_manifest": ("giblet_store.manifest", "load_manifest"),
    "Manifest": ("giblet_store.manifest", "Manifest"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'giblet_store' has no attribute {name!r}")
