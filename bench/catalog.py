"""find() over many entries: today's scan (one zarr.json read per entry, one after another) vs the catalogue.

    python bench/catalog.py [--n 10000] [--s3-n 10000] [--repeat 3] [--no-s3] [--no-local] [--no-parallel]
                            [--moto-list sorted|stock] [--templates DIR] [--json OUT]

Builds ``--n`` codes entries on a local directory and ``--s3-n`` on a moto S3 server (a separate
process on 127.0.0.1): byte copies, under new keys and sources, of ten real ``extract_codes`` entries
(5 bandwidths x 2 TRs, 3 s of audio, tiny arrays), so every entry lists, opens and verifies. The S3
entries are put into moto's backend inside the server process before it serves (seconds; 130,000 PUTs
over HTTP to a local moto would take over 10 minutes). moto's own LIST walks every key of the bucket
for each page of 1,000 (quadratic over a listing: ~17 s per listing of 10,000 entries here); by
default the server answers LIST from a sorted name list instead (:func:`sorted_moto_listing`, checked
equal to moto's), so a page costs what it costs on S3; ``--moto-list stock`` keeps moto's. Then it times
``find(kind="codes", bandwidth_kbps=6, tr_s=1.5)``:

* ``scan``: the pre-catalogue ``Store.entries`` -- list the kind folder, read every ``zarr.json`` in turn;
* ``no index``: a query on a store without a catalogue (every entry read, in parallel);
* ``reindex``: rebuilding the index (what the first publish on such a store does);
* ``catalogue``: queries with the index (one listing, one index read).

All return the same entries (checked), 10 % of them; ``find(kind="codes")`` lists all ``n``. Prints
times and ratios measured in this run (``--json OUT``: the figures of ``bench/benchjson.py``); not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchjson

QUERY = {"kind": "codes", "bandwidth_kbps": 6, "tr_s": 1.5}


BANDWIDTHS = (1.5, 3, 6, 12, 24)
TRS = (1.5, 2.0)


def make_templates(folder: Path) -> Path:
    """A local store with one real codes entry per (bandwidth, TR) of :data:`BANDWIDTHS` x :data:`TRS`.

    ``extract_codes`` of 3 s of synthetic audio with the random-weight model of the real 24 kHz
    architecture: real attributes (schema-valid), tiny arrays (2 TRs).
    """
    from giblet_store import CodecParams, TrGrid, extract_codes, open_store
    from giblet_store.cli.demo import random_model_dir
    from giblet_store.testing import synth_audio, write_wav

    store = open_store(folder / "templates")
    wav = write_wav(folder / "template.wav", synth_audio(3.0, 24000, seed=0), 24000)
    model = str(random_model_dir())
    for bw in BANDWIDTHS:
        for tr in TRS:
            extract_codes(store, wav, CodecParams(model=model, bandwidth_kbps=bw), TrGrid(tr_s=tr), scheduler="sync")
    return folder / "templates"


def synthetic_objects(n: int, templates: Path) -> dict[str, bytes]:
    """Objects of ``n`` codes entries: copies of the real template entries under new keys.

    Entry ``i`` is a byte copy of the template of bandwidth ``BANDWIDTHS[i % 5]`` and TR
    ``TRS[(i // 5) % 2]`` (10 % of the entries match the bench's query) whose ``zarr.json`` says it
    is the entry of another source file: its own ``key`` (whose first 16 hex digits name its folder),
    ``source_name`` and ``source_sha256`` (also in ``inputs``). Each lists, opens and verifies like an
    entry ``extract_codes`` wrote; its key is not the hash of its inputs (nothing recomputes it).
    """
    import hashlib

    by_combo = {}
    for group in sorted(p for p in (templates / "codes").iterdir() if p.is_dir()):
        files = {str(p.relative_to(group)): p.read_bytes() for p in sorted(group.rglob("*")) if p.is_file()}
        meta = json.loads(files.pop("zarr.json"))
        by_combo[(float(meta["attributes"]["bandwidth_kbps"]), float(meta["attributes"]["tr_s"]))] = (meta, files)
    out = {}
    for i in range(n):
        meta, files = by_combo[(float(BANDWIDTHS[i % 5]), TRS[(i // 5) % 2])]
        key = hashlib.sha256(f"bench entry {i}".encode()).hexdigest()
        sha = hashlib.sha256(f"bench source {i}".encode()).hexdigest()
        attrs = {**meta["attributes"], "key": key, "source_name": f"stim{i}.wav", "source_sha256": sha}
        if isinstance(attrs.get("inputs"), dict) and "source_sha256" in attrs["inputs"]:
            attrs["inputs"] = {**attrs["inputs"], "source_sha256": sha}
        out[f"codes/{key[:16]}/zarr.json"] = json.dumps({**meta, "attributes": attrs}, indent=2).encode()
        out.update({f"codes/{key[:16]}/{k}": v for k, v in files.items()})
    return out


def root_objects() -> dict[str, bytes]:
    """The objects ``open_store`` writes for a new store (made on fsspec's memory filesystem)."""
    import fsspec

    from giblet_store import open_store

    root = f"/bench-{uuid.uuid4().hex[:8]}/store"
    open_store(f"memory://{root}")
    fs = fsspec.filesystem("memory")
    out = {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}
    fs.rm(root, recursive=True)
    return out


def scan_find(store) -> list[str]:
    """The pre-catalogue find: every entry's zarr.json read one after another, then filtered."""
    from giblet_store.store.core import _MISSING, _lookup_attr, _match

    keys = []
    for info in store.fs.ls(store.storage.path("codes"), detail=True):
        if info.get("type") != "directory":
            continue
        attrs = store.storage.read_group_attrs(f"codes/{info['name'].rstrip('/').rsplit('/', 1)[-1]}")
        if not attrs or attrs.get("status") != "complete":
            continue
        if all((v := _lookup_attr(attrs, k)) is not _MISSING and _match(v, w) for k, w in QUERY.items() if k != "kind"):
            keys.append(attrs["key"])
    return sorted(keys)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def measure(url: str, n: int, repeat: int, parallel: bool = True) -> dict:
    from giblet_store import open_store, reindex
    from giblet_store.store import catalog

    store = open_store(url)
    t_scan, want = timed(lambda: scan_find(store), 1 if url.startswith("s3") else repeat)
    t_parallel, first = (timed(lambda: sorted(e.key for e in store.find(**QUERY)), 1)  # no index: parallel reads
                         if parallel else (float("nan"), want))
    t0 = time.perf_counter()
    reindex(store)  # what the first publish on such a store does
    t_rebuild = time.perf_counter() - t0
    assert store.fs.exists(store.storage.path(f"{catalog.CATALOG}/codes/{catalog.INDEX}"))
    t_cat, got = timed(lambda: sorted(e.key for e in store.find(**QUERY)), repeat)
    assert first == want == got, "catalogue and scan disagree"
    listed = store.find(kind="codes")  # ls: every entry, from the catalogue
    store.open(listed[0]).load()  # a real entry: opens and matches its schema
    assert len(listed) == n and len(got) == n // 10, (len(listed), len(got))
    return {"hits": len(got), "scan_s": t_scan, "parallel_s": t_parallel, "rebuild_s": t_rebuild,
            "catalogue_s": t_cat, "speedup": t_scan / t_cat}


def local(n: int, repeat: int, templates: Path, parallel: bool) -> dict:
    from giblet_store import open_store

    d = Path(tempfile.mkdtemp(prefix="bench-catalog-")) / "store"
    open_store(d)
    for path, data in synthetic_objects(n, templates).items():
        p = d / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return measure(str(d), n, repeat, parallel)


def sorted_moto_listing() -> None:
    """Make this process's moto answer a LIST page in time that grows with the page, as S3's does.

    moto's ``S3Backend.list_objects`` walks every key of the bucket for each request, so listing a
    folder of ``n`` entries (``n / 1000`` pages) in a bucket of ``k`` keys costs ``n / 1000 * k`` steps:
    at 10,000 entries (130,000 keys) each page took ~1.7 s here, far more than the one GET it saves.
    This replacement (same results: :func:`check_listing` compares them) bisects a sorted list of the
    bucket's key names, cached until the set of names changes, and steps over each folder at once.
    """
    import bisect

    from moto.s3.exceptions import MethodNotAllowed
    from moto.s3.models import FakeDeleteMarker, FakeTableStorageBucket, S3Backend

    cache: dict[str, tuple[set, list]] = {}

    def names_of(bucket) -> list[str]:
        got = cache.get(bucket.name)
        if got is None or dict.keys(bucket.keys) != got[0]:  # a set comparison at C speed
            names = sorted(dict.keys(bucket.keys))
            got = cache[bucket.name] = (set(names), names)
        return got[1]

    def list_objects(self, bucket, prefix, delimiter, marker, max_keys):
        if isinstance(bucket, FakeTableStorageBucket):
            raise MethodNotAllowed()
        names, prefix_ = names_of(bucket), prefix or ""
        keys, folders, i = [], [], bisect.bisect_left(names, prefix_)
        while i < len(names) and names[i].startswith(prefix_):
            rest = names[i][len(prefix_):]
            if delimiter and delimiter in rest:
                folders.append(f"{prefix_}{rest.split(delimiter)[0]}{delimiter}")
                i = bisect.bisect_left(names, folders[-1] + chr(0x10FFFF), i)  # past this folder
                continue
            keys.append(bucket.keys[names[i]])
            i += 1
        keys = sorted((k for k in keys if not isinstance(k, FakeDeleteMarker)), key=lambda k: k.name)
        if marker:
            keys = self._get_results_from_token(keys, self._pagination_tokens.get(marker) or marker)
        if max_keys is None:
            return keys, sorted(folders), False, None
        keys, truncated, next_marker = self._truncate_result(keys, max_keys)
        return keys, sorted(folders), truncated, next_marker

    S3Backend._stock_list_objects = S3Backend.list_objects
    S3Backend.list_objects = list_objects


def check_listing(backend, bucket: str) -> None:
    """Assert the sorted listing equals moto's own on this bucket's folders (with and without delimiter)."""
    b = backend.get_bucket(bucket)
    for prefix in ("store/codes/", "store/", "store/_catalog/codes/log/", "store/codes/" + "0" * 3):
        for delimiter in ("/", None):
            for max_keys in (None, 1000) if delimiter else (None,):
                want = type(backend)._stock_list_objects(backend, b, prefix, delimiter, None, max_keys)
                got = backend.list_objects(b, prefix, delimiter, None, max_keys)
                assert [k.name for k in got[0]] == [k.name for k in want[0]] and list(got[1:]) == list(want[1:]), \
                    (prefix, delimiter, max_keys)


def serve_moto(bucket: str, n: int, templates: Path, listing: str) -> None:
    """Child process: a moto S3 server on 127.0.0.1 (a free port) whose ``bucket`` holds ``n`` entries.

    The entries' objects are put into moto's own backend in this process before the server starts
    (the same objects a PUT stores; no HTTP request each): 130,000 objects in seconds, where 30,000
    PUTs to a local moto took ~11 minutes. Prints ``ready <port> <seconds> <objects>`` when serving;
    stops when stdin closes. ``listing``: ``sorted`` (:func:`sorted_moto_listing`) or ``stock``.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    t = time.perf_counter()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(bucket, "us-east-1")
    objects = {**root_objects(), **synthetic_objects(n, templates)}
    for key, data in objects.items():
        backend.put_object(bucket, f"store/{key}", data)
    if listing == "sorted":
        sorted_moto_listing()
        check_listing(backend, bucket)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # the OS picks a free port
    server.start()
    print(f"ready {server.get_host_and_port()[1]} {time.perf_counter() - t:.2f} {len(objects)}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


def _start_moto(n: int, templates: Path, listing: str) -> tuple[subprocess.Popen, str, float, int]:
    """(server process, bucket, seconds its entries took, objects); the AWS_* variables point at it."""
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen([sys.executable, __file__, "--serve-moto", bucket, str(n), str(templates), listing],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline().split()
    if not line or line[0] != "ready":
        server.kill()
        server.wait()
        raise SystemExit(f"the moto server did not start (exit {server.poll()})")
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{line[1]}")
    return server, bucket, float(line[2]), int(line[3])


def _stop(server: subprocess.Popen) -> None:
    server.stdin.close()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def s3(n: int, repeat: int, templates: Path, listing: str, parallel: bool) -> dict:
    server, bucket, t_fill, n_objects = _start_moto(n, templates, listing)
    try:
        from giblet_store import open_store

        print(f"  ({n_objects} objects of {n} entries put into moto's backend in {t_fill:.1f} s)", file=sys.stderr)
        url = f"s3://{bucket}/store"
        open_store(url)  # checks the bucket, credentials and a write over HTTP, like any store
        return {**measure(url, n, repeat, parallel), "fill_s": t_fill}
    finally:
        _stop(server)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--s3-n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--no-local", action="store_true")
    ap.add_argument("--no-parallel", action="store_true", help="skip the query without an index (parallel reads)")
    ap.add_argument("--templates", default=None, help="reuse the template store of an earlier run (a directory)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--moto-list", choices=("sorted", "stock"), default="sorted",
                    help="moto's LIST: sorted (a page costs what it does on S3; default) or moto's stock one")
    ap.add_argument("--serve-moto", nargs=4, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_moto:
        bucket, n, templates, listing = args.serve_moto
        serve_moto(bucket, int(n), Path(templates), listing)
        return 0
    templates = Path(args.templates) if args.templates else make_templates(
        Path(tempfile.mkdtemp(prefix="bench-catalog-templates-")))
    print(f"templates: {templates}", file=sys.stderr)
    rows = {} if args.no_local else {"local": local(args.n, args.repeat, templates, not args.no_parallel)}
    if not args.no_s3:
        rows[f"moto S3, {args.moto_list} LIST"] = s3(args.s3_n, args.repeat, templates, args.moto_list,
                                                     not args.no_parallel)
    print(f"find(kind='codes', bandwidth_kbps=6, tr_s=1.5) over {args.n} entries (local), {args.s3_n} (S3)")
    print(f"| store | hits | scan (s) | no index, parallel reads (s) | reindex (s) | catalogue (s) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['hits']} | {r['scan_s']:.3f} | {r['parallel_s']:.3f} | {r['rebuild_s']:.3f} | "
              f"{r['catalogue_s']:.3f} | {r['speedup']:.1f}x |")
    _write_figures(args.json, rows, args.n, args.s3_n)
    return 0


def _write_figures(path: str | None, rows: dict, n: int, s3_n: int) -> None:
    """The figures of bench/benchjson.py: the catalogue's find against the scan, per store."""
    from benchjson import row, write

    out = []
    if "local" in rows:
        r = rows["local"]
        out.append(row("catalog", f"find, {n:,} entries, local", "s", "scan, one read after another", r["scan_s"],
                       r["catalogue_s"], r["speedup"], "< 0.5 s", on="ours", op="<=", value=0.5))
    for name in [k for k in rows if k.startswith("moto S3")]:
        r = rows[name]
        out.append(row("catalog", f"find, {s3_n:,} entries, {name}", "s", "scan, one read after another",
                       r["scan_s"], r["catalogue_s"], r["speedup"], ">= 20x", value=20))
    write(path, out)


if __name__ == "__main__":
    sys.exit(main())
