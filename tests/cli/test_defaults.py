"""CLI option defaults are the parameter dataclasses' field defaults, and ``--help`` shows them.

Changing a field default (``TrGrid.tr_s``, ``MelParams.n_fft``, ...) must change the option with it;
these tests change nothing and fail the day one of the two drifts from the other.
"""

import argparse
import dataclasses

import pytest

from giblet_store.cli import build_parser
from giblet_store.codec.encodec import CodecParams
from giblet_store.fmri.clean import CleanParams
from giblet_store.fmri.ingest import FmriParams, MaskParams
from giblet_store.grid import TrGrid
from giblet_store.features.hrf import Hrf
from giblet_store.features.mel import MelParams
from giblet_store.quality.metrics import QualityParams
from giblet_store.features.resample import Resample


def _not(x):
    return not x


def _joined(x):
    return ",".join(x)


#: (command, option dest, dataclass, field, how the field's default reads as the option's default)
MIRRORED = [
    ("extract", "model", CodecParams, "model", None),
    ("extract", "revision", CodecParams, "revision", None),
    ("extract", "bandwidth", CodecParams, "bandwidth_kbps", None),
    ("extract", "chunk_seconds", CodecParams, "chunk_s", None),
    ("extract", "context_seconds", CodecParams, "context_s", None),
    ("extract", "encoder", CodecParams, "encoder", None),
    ("extract", "tr", TrGrid, "tr_s", None),
    ("extract", "onset", TrGrid, "onset_s", None),
    ("extract", "n_trs", TrGrid, "n_trs", None),
    ("demo", "model", CodecParams, "model", None),
    ("import", "model", CodecParams, "model", None),
    ("import", "tr", TrGrid, "tr_s", None),
    ("import", "onset", TrGrid, "onset_s", None),
    ("import", "n_trs", TrGrid, "n_trs", None),
    ("mel", "tr", TrGrid, "tr_s", None),
    ("mel", "onset", TrGrid, "onset_s", None),
    ("mel", "n_trs", TrGrid, "n_trs", None),
    ("mel", "sample_rate", MelParams, "sample_rate_hz", None),
    ("mel", "n_fft", MelParams, "n_fft", None),
    ("mel", "hop", MelParams, "hop", None),
    ("mel", "n_mels", MelParams, "n_mels", None),
    ("mel", "fmin", MelParams, "fmin_hz", None),
    ("mel", "fmax", MelParams, "fmax_hz", None),
    ("mel", "power", MelParams, "power", None),
    ("mel", "no_db", MelParams, "db", _not),
    ("mel", "ref", MelParams, "ref", None),
    ("mel", "chunk_seconds", MelParams, "chunk_s", None),
    ("derive", "hrf_length", Hrf, "length_s", None),
    ("derive", "oversampling", Hrf, "oversampling", None),
    ("derive", "onset", Resample, "onset_s", None),
    ("derive", "n_trs", Resample, "n_trs", None),
    ("derive", "method", Resample, "method", None),
    ("derive", "no_antialias", Resample, "antialias", _not),
    ("ingest-fmri", "tr", FmriParams, "tr_s", None),
    ("ingest-fmri", "n_trs", FmriParams, "n_trs", None),
    ("ingest-fmri", "zscore_trs", FmriParams, "zscore_trs", None),
    ("ingest-fmri", "nan_policy", FmriParams, "nan_policy", None),
    ("ingest-fmri", "mask_percentile", MaskParams, "std_percentile", None),
    ("ingest-fmri", "mask_fraction", MaskParams, "min_subject_fraction", None),
    ("ingest-fmri", "high_pass", CleanParams, "high_pass_hz", None),
    ("ingest-fmri", "low_pass", CleanParams, "low_pass_hz", None),
    ("quality", "metrics", QualityParams, "metrics", _joined),
    ("quality", "onset", TrGrid, "onset_s", None),
    ("compare", "model", CodecParams, "model", None),
    ("compare", "metrics", QualityParams, "metrics", _joined),
    ("compare", "tr", TrGrid, "tr_s", None),
]

#: options of those commands whose defaults mirror no dataclass field (inputs, outputs, devices, switches)
NOT_MIRRORED = {
    "extract": {"audio", "store", "audio_stream", "device", "json", "no_progress"},
    "demo": {"store"},
    "import": {"file", "store", "format", "device", "json"},
    "mel": {"audio", "store", "audio_stream", "json", "no_progress"},
    "derive": {"store", "key", "hrf", "resample_tr", "stretch", "embeddings", "quantise", "variables", "axis",
               "reference_codes", "model", "device", "json", "no_progress", "parcellate", "resample_atlas"},
    "ingest-fmri": {"store", "nifti", "subject", "run", "mask", "stimulus", "chunk_trs", "json",
                    "no_progress", "bids", "task", "derivatives", "space", "subjects", "runs", "session", "event",
                    "event_column", "confounds", "detrend", "fd_threshold"},
    "quality": {"ref", "deg", "store", "trs", "align", "tr", "deg_start", "model", "device", "json", "no_progress"},
    "compare": {"audio", "output", "bandwidths", "n_mels", "store"},
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def _field_default(cls, name):
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return f.default


@pytest.mark.parametrize("command, dest, cls, field, read", MIRRORED,
                         ids=[f"{c}--{d}" for c, d, *_ in MIRRORED])
def test_option_default_is_the_dataclass_default(command, dest, cls, field, read):
    parser = _subparsers()[command]
    expected = _field_default(cls, field)
    expected = read(expected) if read else expected
    assert parser.get_default(dest) == expected
    assert type(parser.get_default(dest)) is type(expected)


def test_every_defaulted_option_of_those_commands_is_listed():
    """A new option added to one of these commands is either in MIRRORED or deliberately in NOT_MIRRORED."""
    subs = _subparsers()
    listed = {(c, d) for c, d, *_ in MIRRORED}
    for command, skip in NOT_MIRRORED.items():
        dests = {a.dest for a in subs[command]._actions if not isinstance(a, argparse._HelpAction)}
        assert skip <= dests, f"{command}: {sorted(skip - dests)} are no options (any more)"
        missing = dests - skip - {d for c, d in listed if c == command}
        assert not missing, f"{command}: say whether {sorted(missing)} mirror a dataclass field"


@pytest.mark.parametrize("command", ["extract", "mel", "derive", "import", "compare", "ingest-fmri"])
def test_help_shows_the_dataclass_defaults(command):
    text = " ".join(_subparsers()[command].format_help().split())
    shown = [(d, cls, f, read) for c, d, cls, f, read in MIRRORED if c == command and read is None]
    for dest, cls, field, _ in shown:
        value = _field_default(cls, field)
        if value is not None:
            assert f"(default: {value})" in text, (command, dest)


FOLLOWING = [row for row in MIRRORED if row[4] is not _not]  # a --no-X switch is False whatever the field says


@pytest.mark.parametrize("command, dest, cls, field, read", FOLLOWING,
                         ids=[f"{c}--{d}" for c, d, *_ in FOLLOWING])
def test_option_default_follows_a_changed_field_default(command, dest, cls, field, read, monkeypatch):
    """Equal values could be a hand-written copy: change the field's default and the option must follow."""
    (f,) = [f for f in dataclasses.fields(cls) if f.name == field]
    changed = {bool: lambda v: not v, str: lambda v: v + "-changed", int: lambda v: v + 7,
               float: lambda v: v + 0.25, tuple: lambda v: (*v, "changed")}.get(type(f.default), lambda v: 3)
    monkeypatch.setattr(f, "default", changed(f.default))
    expected = read(f.default) if read else f.default
    assert _subparsers()[command].get_default(dest) == expected
