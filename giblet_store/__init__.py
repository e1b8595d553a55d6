"""giblet_store: movie stimuli and fMRI in one chunked, labelled, versioned Zarr store.

Heavy dependencies (torch, transformers, librosa, nibabel, distributed) are imported only by the
functions that use them, so ``import giblet_store`` and opening a store stay light.
"""

import os as _os

# Intel MKL (torch's BLAS on x86) sums in an order that depends on the thread count unless its
# strict conditional-numerical-reproducibility mode is on, and an argmin tie in the quantiser then
# flips a code: a single-process extract (2 threads) and a batch worker (1 thread) would store
# different codes under one key. The mode is read once, when MKL first runs, so it is set here,
# before anything imports torch; a value the user set is kept. Dask workers inherit it.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from .store.version import __version__  # noqa: E402

from .errors import *  # noqa: E402,F401,F403
from .errors import __all__ as _errors_all  # noqa: E402
from .params import content_key  # noqa: E402
from .store.core import Entry, Store, open_store  # noqa: E402
from .grid import TrGrid  # noqa: E402
from .codec.encodec import CodecParams  # noqa: E402
from .features.codes import decode_entry, extract_codes  # noqa: E402
from .features.mel import MelParams, decode_mel, extract_mel  # noqa: E402
from .features.hrf import Fir, Hrf, convolve_causal, delay, hrf_kernel  # noqa: E402
from .features.resample import Resample  # noqa: E402
from .features.derive import Embeddings, lineage  # noqa: E402
from .fmri.ingest import FmriParams, MaskParams, ingest_fmri  # noqa: E402
from .fmri.bids import ingest_bids  # noqa: E402
from .fmri.clean import CleanParams  # noqa: E402
from .fmri.parcels import Parcellate  # noqa: E402
from .training import parcel_derive as _parcel_derive  # noqa: E402,F401 (registers Parcellate with derive)
from .fmri.nifti_write import to_nifti  # noqa: E402
from .training.predictions import entry_to_gifti, entry_to_nifti, write_predictions  # noqa: E402
from .fmri.surface import ingest_surface  # noqa: E402
from .fmri.surface_export import to_gifti  # noqa: E402
from .training.evaluation import evaluate  # noqa: E402
from .fmri.runs import run_table, select_run  # noqa: E402
from .training.reconstruction import write_reconstruction  # noqa: E402
from .features.quantise import Quantise, codebooks, dequantise, quantise  # noqa: E402
from .features.decoding import decode_codes, decode_reconstruction, reconstruction_audio  # noqa: E402
from .training.scores import identify, identify_reconstruction  # noqa: E402
from .training.samples import plan_samples, split_trs  # noqa: E402
from .quality.metrics import QualityParams, lsd_db, mel_distance_db, pesq_scores, si_sdr_db, snr_db, stoi_scores  # noqa: E402
from .quality.run import QualityResult, score_audio  # noqa: E402
from .validate import KINDS, parse_key, parse_kind, parse_output_path  # noqa: E402
from .store.verify import QuarantineWarning, VerifyReport, verify_store  # noqa: E402
from .store.codecs_allowed import ALLOWED_CODECS, UnsafeCodecError  # noqa: E402
from .bounds import check_grid_bounds  # noqa: E402
from .fmri.join import join, open_dataset  # noqa: E402
from .progress import progress_bar  # noqa: E402
from .features.exchange import export_codes, import_codes  # noqa: E402
from .store.catalog import reindex  # noqa: E402
from .store.gc import collect as collect_garbage  # noqa: E402
from .codec.stream import StreamDecoder, StreamEncoder, stream_decode, stream_encode  # noqa: E402
from .audio.channels import ChannelsMixedWarning  # noqa: E402
from .features.codes_normalised import DecodeIncompleteWarning  # noqa: E402

__all__ = [
    "__version__",
    # store
    "open_store", "Store", "Entry", "content_key", "open_dataset", "join", "progress_bar",
    # codes
    "TrGrid", "CodecParams", "extract_codes", "decode_entry", "ChannelsMixedWarning", "DecodeIncompleteWarning",
    # features
    "MelParams", "extract_mel", "decode_mel", "Embeddings", "Hrf", "Fir", "hrf_kernel", "convolve_causal",
    "delay", "Resample", "lineage",
    # fMRI, predictions, training
    "FmriParams", "MaskParams", "ingest_fmri", "ingest_bids", "CleanParams", "Parcellate", "to_nifti", "write_predictions", "evaluate", "entry_to_nifti",
    "ingest_surface", "to_gifti", "entry_to_gifti",
    "split_trs", "plan_samples", "StoreDataset", "run_table", "select_run",
    # audio quality
    "QualityParams", "QualityResult", "score_audio", "snr_db", "si_sdr_db", "lsd_db", "mel_distance_db",
    "stoi_scores", "pesq_scores", "compare_codecs", "CompareReport",
    # reconstruction (brain -> stimulus)
    "write_reconstruction", "Quantise", "codebooks", "quantise", "dequantise",
    "decode_codes", "decode_reconstruction", "reconstruction_audio", "identify", "identify_reconstruction",
    # codes files in and out
    "export_codes", "import_codes",
    # object stores and maintenance
    "reindex", "collect_garbage",
    # exact streaming encode/decode
    "StreamEncoder", "StreamDecoder", "stream_encode", "stream_decode",
    # batch
    "run_batch", "BatchReport", "load_manifest", "Manifest",
    # reliability: user-given path segments, store checks, resource bounds
    "KINDS", "parse_kind", "parse_key", "parse_output_path", "verify_store", "VerifyReport", "QuarantineWarning",
    "ALLOWED_CODECS", "UnsafeCodecError", "check_grid_bounds",
    # errors
    *_errors_all,
]

_LAZY = {
    "StoreDataset": ("giblet_store.training.dataset", "StoreDataset"),  # imports torch
    "run_batch": ("giblet_store.batch.run", "run_batch"),
    "BatchReport": ("giblet_store.batch.run", "BatchReport"),
    "load_manifest": ("giblet_store.batch.manifest", "load_manifest"),
    "Manifest": ("giblet_store.batch.manifest", "Manifest"),
    "compare_codecs": ("giblet_store.quality.compare", "compare_codecs"),
    "CompareReport": ("giblet_store.quality.compare", "CompareReport"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'giblet_store' has no attribute {name!r}")


def __dir__():
    """Every public name, the lazy ones included (tab completion, ``dir(gs)``)."""
    return sorted(set(globals()) | set(_LAZY))
