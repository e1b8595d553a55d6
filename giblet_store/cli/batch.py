"""``giblet-store batch``: every entry of a manifest on a Dask cluster, resumable.

Registered by :mod:`giblet_store.cli`; the work is done by :mod:`giblet_store.batch.run`.
"""

from __future__ import annotations

import sys

from .common import dump_entries
from .util import EXIT_ERROR
from ..errors import ParameterError

__all__ = ["add_batch"]


def add_batch(sub) -> None:
    from .util import field_default
    from ..codec.encodec import CodecParams

    p = sub.add_parser("batch", help="extract every entry of a manifest on a Dask cluster (resumable)")
    p.add_argument("manifest", help="CSV, YAML or JSON manifest: stimuli x kinds x bandwidths x TRs")
    p.add_argument("--store", required=True, help="store directory or fsspec URL (created if absent)")
    p.add_argument("--scheduler", default="local",
                   help="'local' (a LocalCluster, the default) or a scheduler address (tcp://host:8786)")
    p.add_argument("--workers", type=int, default=None, help="local cluster workers (default: one per core)")
    p.add_argument("--tr-chunk", type=int, default=None,
                   help="TRs per Zarr chunk and write task (default: the store's, as extract writes)")
    p.add_argument("--connect-timeout", type=float, default=5.0, help="seconds to wait for a scheduler address")
    p.add_argument("--model", default=None, metavar="NAME_OR_DIR",
                   help="hub name or save_pretrained directory for stimuli that name none "
                        f"(default: the manifest's, else {field_default(CodecParams, 'model')})")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (a bar is shown on stderr only when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args) -> int:
    from ..batch.run import run_batch
    from ..progress import progress_enabled

    if args.workers is not None and args.workers < 1:
        raise ParameterError(f"--workers must be >= 1, got {args.workers}")
    # a tqdm bar on stderr, only on a terminal (distributed's own bar writes to stdout, which --json owns)
    bar = "tqdm" if not args.no_progress and progress_enabled() else False
    report = run_batch(args.manifest, args.store, scheduler=args.scheduler, workers=args.workers,
                       progress=bar, connect_timeout=args.connect_timeout,
                       tr_chunk=args.tr_chunk, model=args.model)
    if args.json:
        doc = report.to_json()
        dump_entries(doc.pop("items"), **doc)
    else:
        print(report.table())
    for item in report.failed:
        print(f"giblet-store: error: {item.source} ({item.kind} {item.params}): {item.reason}", file=sys.stderr)
    return 0 if report.ok else EXIT_ERROR
