"""``--help`` that shows defaults and explains positional arguments, for every subcommand."""

from __future__ import annotations

import argparse

__all__ = ["DefaultsFormatter", "document", "POSITIONAL_HELP"]

#: help of positional arguments that subcommands share, by dest
POSITIONAL_HELP = {
    "store": "store directory or fsspec URL (s3://..., memory://...)",
    "key": "an entry's key or a unique prefix of it (`giblet-store ls STORE` lists them)",
    "audio": "audio files (wav, flac, ogg, ...) or video/audio containers (mp4, mov, mkv, webm, m4a, mp3, ...)",
    "nifti": "4D NIfTI files (.nii / .nii.gz), one per subject",
    "manifest": "CSV, YAML or JSON manifest: stimuli x kinds x bandwidths x TRs",
}


class DefaultsFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to options that have a default worth showing (not None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is False or default is argparse.SUPPRESS
                or default == [] or not action.option_strings
                or isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def document(subparsers) -> None:
    """Give every subcommand the defaults formatter and help for its positional arguments."""
    for parser in subparsers.choices.values():
        parser.formatter_class = DefaultsFormatter
        for action in parser._actions:
            if not action.option_strings and not action.help and action.dest in POSITIONAL_HELP:
                action.help = POSITIONAL_HELP[action.dest]
            if action.dest == "json":
                action.help = 'print JSON: always an object {"entries": [entry, ...], ...}'
            if action.dest == "audio":
                action.help = POSITIONAL_HELP["audio"]
