"""A PyTorch Dataset that streams (subject, tr) samples: stimulus features joined with fMRI.

:class:`StoreDataset` is an :class:`~torch.utils.data.IterableDataset` over the samples ``(subject,
tr)`` of an fmri entry, each joined with per-TR stimulus features taken from any entries whose first
dimension is ``tr`` (codes, embeddings, mel, HRF-derived features), chosen by variable name. The
stimulus is stored once and shared by every subject: it is never copied per subject, in the store or
in memory (each worker caches decoded feature chunks once).

How it reads
------------
A **unit** is one stored fmri chunk: one subject x ``chunk_trs`` TRs x every voxel. Each epoch the
units are shuffled (``seed`` + epoch), sharded over ranks (``rank``/``world_size``) and DataLoader
workers (worker ``w`` of ``W`` takes every ``W``-th unit, so no two workers read the same chunk),
and read ``chunks_in_memory`` at a time (the next group is read by a background thread while the
current one is served); the samples of a group are shuffled together and served in batches. Every
sample is served exactly once per epoch. The store is opened lazily in each process, so the Dataset
pickles (fork and spawn) and holds no open file.

The documented path is PyTorch's own: ``DataLoader(ds, batch_size=B, num_workers=W,
pin_memory=True)`` on a Dataset that serves samples (its default). Reading, shuffling and the
per-group gathers stay inside the Dataset (whole chunks, one gather per unit and field); the
DataLoader only stacks the samples of a batch. ``StoreDataset(batch_size=B)`` makes the Dataset
batch itself (``DataLoader(ds, batch_size=None)`` or :meth:`StoreDataset.loader`); giving both
batch sizes is refused with a clear error instead of nesting batches.

Samples (or batches, with a leading batch axis) are dicts of tensors:

- ``fmri``: (voxel,) float32; (parcel,) for a parcellated entry (``derive(fmri, Parcellate(...))``)
- one tensor per feature, named by variable (or by the name given): the variable's per-TR shape,
  e.g. ``codes`` (codebook, frame) int64 and ``n_frames`` () int64; with ``window=k`` (any k >= 0,
  0 included) a leading axis of ``k + 1`` TRs ``t-k .. t`` (oldest first); with ``window=None`` (the
  default) no window axis. Integers come as int64, floats as float32.
- ``subject``: () int64, index into :attr:`StoreDataset.subjects`; ``tr``: () int64, the TR.
- ``run``: () int64, index into :attr:`StoreDataset.runs` (only for an fmri entry ingested with runs).

Runs: an fmri entry's runs lie one after the other along ``tr``; a unit, a sample and its window
never cross a run, and each run's samples are joined with its own stimulus (features given per run as
``{run: entry}``). Leave-one-run-out ranges come from ``split_trs(runs=entry, leave_out=run)``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import ParameterError
from .censoring import drop_censored, sample_at
from .samples import DatasetRequestError, SamplePlan, TrReader, out_dtype, plan_samples, split_trs
from ..store.core import Entry, Store, open_store
from ..validate import int_in_range

__all__ = ["StoreDataset", "Batch", "DatasetRequestError", "split_trs", "SamplePlan"]


class StoreDataset(IterableDataset):
    """(subject, tr) samples of an fmri entry joined with per-TR stimulus features, streamed by chunk.

    Parameters
    ----------
    store : Store or URL, reopened read-only in each worker process (a local path or an object store;
        a ``memory://`` store reaches forked workers only)
    fmri : the fmri entry or its key (prefix)
    features : what to join, any of
        - an entry or key: every data variable whose first dim is ``tr``, named by variable;
        - ``(entry, "var")`` or ``(entry, ["var", ...])``;
        - a list of those; or a mapping ``{name: (entry, "var")}`` to name them yourself;
        - for an entry with runs, ``{run: entry}`` in place of an entry (in a list or a tuple, e.g.
          ``[({"1": part1, "2": part2}, "codes")]``): each run joined with its own stimulus;
        - None: fMRI only.
    subjects : subject IDs to serve (default: all of the fmri entry)
    trs : (start, stop) TR range of the samples, or (entry with runs) a list of ranges (default: every
        TR that fmri and features share); make train/validation/test ranges with :func:`split_trs`
    window : k previous TRs joined to each sample (features get a leading axis of k + 1, of 1 for
        ``window=0``); samples start at TR ``max(start, k)`` so every window is real. None (the
        default): one TR per sample and no window axis
    batch_size : None (the default) serves samples: batch them with ``DataLoader(ds, batch_size=B)``;
        B makes the Dataset serve batches of B itself (then ``DataLoader(ds, batch_size=None)``)
    shuffle, seed : unit order and in-group order come from ``(seed, epoch)`` only: the same seed and
        ``num_workers`` give the same batches; call :meth:`set_epoch` each epoch for a new order
    drop_last : drop each worker's last short batch
    chunks_in_memory : units read and shuffled together (also the read-ahead)
    feature_cache_bytes : per process, for decoded feature chunks (shared by all subjects)
    rank, world_size : shard for distributed training (each rank gets different units)
    io_threads : threads reading units in the background (0: read in the iterating thread)
    include_censored : False (default): no (subject, tr) the entry marks ``censored`` (scrubbed) is served

    Raises
    ------
    DatasetRequestError
        The fmri entry is not one, a feature variable is not per-TR or not on the fMRI's TR grid
        (TR, stimulus, onset), unknown or duplicate subjects or names, or a TR range that does not
        lie within the TRs that fmri and every feature share (checked by
        :func:`giblet_store.training.samples.plan_samples`, before anything is read).

    Examples
    --------
    >>> from torch.utils.data import DataLoader
    >>> ds = StoreDataset("st", fmri_key, (codes_key, ["codes", "n_frames"]), trs=(0, 800),
    ...                   window=2, seed=0)                                      # doctest: +SKIP
    >>> dl = DataLoader(ds, batch_size=64, num_workers=2, pin_memory=True)      # doctest: +SKIP
    >>> for epoch in range(10):                                                  # doctest: +SKIP
    ...     ds.set_epoch(epoch)
    ...     for b in dl:
    ...         loss = fit(b["codes"], b["n_frames"], b["fmri"])
    """

    def __init__(
        self,
        store: Store | str,
        fmri: Entry | str,
        features: Any = None,
        *,
        subjects: Sequence[str] | None = None,
        trs: tuple[int, int] | None = None,
        window: int | None = None,
        batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        chunks_in_memory: int = 4,
        feature_cache_bytes: int = 512 << 20,
        rank: int = 0,
        world_size: int = 1,
        io_threads: int = 2,
        include_censored: bool = False,
    ):
        super().__init__()
        for name, v, lo in (("window", 0 if window is None else window, 0), ("chunks_in_memory", chunks_in_memory, 1), ("seed", seed, 0),
                            ("world_size", world_size, 1), ("rank", rank, 0), ("io_threads", io_threads, 0)):
            int_in_range(name, v, lo)
        if rank >= world_size:
            raise ParameterError(f"rank={rank} must be < world_size={world_size}")
        batch_size = int_in_range("batch_size", batch_size, 1, optional=True)
        self.window = None if window is None else int(window)
        self._k = self.window or 0  # previous TRs read before each sample
        self.batch_size, self.shuffle, self.seed = batch_size, bool(shuffle), int(seed)
        self.drop_last, self.chunks_in_memory, self.epoch = bool(drop_last), int(chunks_in_memory), 0
        self.feature_cache_bytes, self.rank, self.world_size = int(feature_cache_bytes), int(rank), int(world_size)
        self.io_threads = int(io_threads)

        plan = plan_samples(store, fmri, features, subjects=subjects, trs=trs, window=self._k,
                            include_censored=include_censored)
        self.plan = plan
        self.url, self.fmri_key, self.tr_s, self.n_voxels = plan.url, plan.fmri_key, plan.tr_s, plan.n_voxels
        self.subjects, self.trs, self.sample_trs = list(plan.subjects), plan.trs, plan.sample_trs
        self.feature_keys = plan.feature_keys
        self._specs, self._units, self._subject_index = plan.features, plan.units, plan.subject_index
        self.runs = list(plan.runs)

    def __repr__(self) -> str:
        p, shapes = self.plan, self.sample_shapes
        feats = ", ".join(f"{n} {shapes[n][0]} {str(shapes[n][1]).replace('torch.', '')}" for n in self._specs)
        return (f"<StoreDataset fmri {p.fmri_key[:12]}: subjects {self.subjects}, {len(self)} samples, TRs "
                f"{p.sample_trs[0]}:{p.sample_trs[1]}{f' runs {self.runs}' if p.has_runs else ''}, {p.n_voxels} {p.space}s, "
                f"window={self.window}, batch_size={self.batch_size}, shuffle={self.shuffle}; features: {feats or 'none'}>")

    # ------------------------------------------------------------------------------ properties
    def __len__(self) -> int:
        """Number of samples (subject x TR) per epoch over all ranks and workers."""
        return self.plan.n_samples

    @property
    def feature_names(self) -> list[str]:
        return list(self._specs)

    @property
    def sample_shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """name -> (shape, dtype) of one sample (add the batch axis for batches)."""
        w = () if self.window is None else (self.window + 1,)
        out = {n: (w + f.shape, _TORCH[out_dtype(f.dtype)]) for n, f in self._specs.items()}
        out["fmri"] = ((self.n_voxels,), torch.float32)
        out["subject"] = ((), torch.int64)
        out["tr"] = ((), torch.int64)
        if self.plan.has_runs:
            out["run"] = ((), torch.int64)
        return out

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (call before each epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def units_for(self, worker_id: int = 0, num_workers: int = 1) -> np.ndarray:
        """(unit, 3) rows (fmri subject index, start TR, stop TR) that a worker reads this epoch, in order."""
        order = np.arange(len(self._units))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self._units))
        return self._units[order[self.rank :: self.world_size][worker_id::num_workers]]

    def loader(
        self,
        batch_size: int | None = None,
        *,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        multiprocessing_context: Any = None,
    ):
        """A :class:`~torch.utils.data.DataLoader` over this Dataset, the same as writing it out.

        Parameters
        ----------
        batch_size : int, optional
            Samples per batch, batched by the DataLoader; leave None when the Dataset was made with
            ``batch_size=B`` (it batches itself). Giving both raises :class:`ParameterError`.
        num_workers, persistent_workers, multiprocessing_context : as for DataLoader
        pin_memory : bool, optional
            Page-locked batches for fast host-to-GPU copies (default: when CUDA is available).
        prefetch_factor : int, optional
            Batches each worker reads ahead (default 4 with workers).
        """
        from torch.utils.data import DataLoader

        if batch_size is not None and self.batch_size is not None:
            raise ParameterError(_BOTH_BATCHED.format(b=self.batch_size))
        if pin_memory is None:
            pin_memory = torch.cuda.is_available()
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 4
        return DataLoader(self, batch_size=batch_size, num_workers=num_workers, pin_memory=bool(pin_memory),
                          prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
                          multiprocessing_context=multiprocessing_context)

    # ------------------------------------------------------------------------------ reading
    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("_st", None)
        return d

    def _state(self) -> dict:
        st = self.__dict__.get("_st")
        if st is None or st["pid"] != os.getpid():
            import zarr

            store = open_store(self.url, mode="r")

            def arr(path, var):
                return zarr.open_group(store.zstore, path=path, mode="r", zarr_format=3)[var]

            paths = {(f.path, f.var) for feats in self.plan.run_features for f in feats.values()}
            budget = self.feature_cache_bytes // max(1, len(paths))
            shared = {pv: TrReader(arr(*pv), budget) for pv in paths}  # a stimulus shared by runs is read once
            readers = [{n: shared[(f.path, f.var)] for n, f in feats.items()} for feats in self.plan.run_features]
            st = {"pid": os.getpid(), "fmri": arr(self.plan.fmri_path, "fmri"), "readers": readers[0],
                  "run_readers": readers}
            self._st = st
        return st

    def _read_unit(self, unit) -> dict:
        st = self._state()
        s, a, b = (int(x) for x in unit)
        j = self.plan.run_of(a)  # a unit never crosses a run: its features are that run's stimulus
        off = int(self.plan.run_offsets[j])
        out = {"fmri": np.asarray(st["fmri"][s, a:b, :]), "run": j}
        for n, r in st["run_readers"][j].items():
            out[n] = r.rows(a - off - self._k, b - off)
        return out

    def _assemble(self, units: np.ndarray, parts: list[dict]) -> dict:
        """A group: its units' arrays as read (not concatenated) and per-sample unit/row/subject/tr."""
        sizes = units[:, 2] - units[:, 1]
        pos = {int(s): i for i, s in enumerate(self._subject_index)}
        return drop_censored({
            "parts": parts,
            "unit": np.repeat(np.arange(len(units)), sizes),
            "row": np.concatenate([np.arange(n) for n in sizes]),
            "subject": np.repeat([pos[int(s)] for s in units[:, 0]], sizes).astype(np.int64),
            "tr": np.concatenate([np.arange(a, b) for _, a, b in units]).astype(np.int64),
            "run": np.repeat([p["run"] for p in parts], sizes).astype(np.int64),
        }, self.plan.censored)

    def _alloc(self, n: int) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
        """Output arrays for ``n`` samples: numpy views to fill and the tensors that share their memory."""
        return self._alloc_batches(n, 1)[0]

    def _alloc_batches(self, n: int, count: int) -> list[tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]]:
        """``count`` outputs of ``n`` samples each: (numpy views to fill, tensors sharing their memory).

        In a DataLoader worker all ``count`` outputs (a group's batches) are views of ONE buffer
        allocated directly in shared memory, so a batch crosses to the trainer without being copied
        into a new shared-memory segment first, and the trainer maps each group's segment once
        (torch caches received storages) instead of once per batch. In the main process plain
        arrays are cheaper.
        """
        w = () if self.window is None else (self.window + 1,)
        fields = [("fmri", (self.n_voxels,), np.dtype(np.float32)), ("subject", (), np.dtype(np.int64)),
                  ("tr", (), np.dtype(np.int64))]
        fields += [("run", (), np.dtype(np.int64))] if self.plan.has_runs else []
        fields += [(name, w + f.shape, out_dtype(f.dtype)) for name, f in self._specs.items()]
        if get_worker_info() is None:
            out = []
            for _ in range(count):
                arrays = {name: np.empty((n, *shape), dt) for name, shape, dt in fields}
                out.append((arrays, {name: torch.from_numpy(a) for name, a in arrays.items()}))
            return out
        layout, total = [], 0
        for name, shape, dt in fields:
            nbytes = n * int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            layout.append((name, (n, *shape), dt, total, nbytes))
            total += -(-nbytes // 8) * 8  # keep every field 8-byte aligned
        total = max(total, 8)
        buf = _shared_bytes(total * count)
        out = []
        for i in range(count):
            tensors = {name: buf[i * total + o : i * total + o + nb].view(_TORCH[dt]).view(shape)
                       for name, shape, dt, o, nb in layout}
            out.append(({name: t.numpy() for name, t in tensors.items()}, tensors))
        return out

    def _fill(self, g: dict, idx: np.ndarray, out: dict[str, np.ndarray], at: int = 0) -> None:
        """Write the samples ``idx`` of group ``g`` into ``out[name][at:at + len(idx)]``.

        The samples are written grouped by unit (a stable sort of ``idx``; ``idx`` already sorted
        keeps its order), so each unit's rows are gathered with one ``np.take`` per field.
        """
        unit = g["unit"][idx]
        if len(idx) > 1 and np.any(np.diff(unit) < 0):
            idx = idx[np.argsort(unit, kind="stable")]
            unit = g["unit"][idx]
        out["subject"][at : at + len(idx)] = g["subject"][idx]
        out["tr"][at : at + len(idx)] = g["tr"][idx]
        if "run" in out:
            out["run"][at : at + len(idx)] = g["run"][idx]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(unit)) + 1, [len(idx)]])
        win = np.arange(self._k + 1)
        for a, b in zip(starts[:-1], starts[1:]):
            part = g["parts"][unit[a]]
            rows = g["row"][idx[a:b]]
            sl = slice(at + a, at + b)
            np.take(part["fmri"], rows, axis=0, out=out["fmri"][sl], mode="clip")
            frows = rows if self.window is None else rows[:, None] + win  # features start _k rows early
            for n in self._specs:
                if part[n].dtype == out[n].dtype:
                    np.take(part[n], frows, axis=0, out=out[n][sl], mode="clip")
                else:
                    out[n][sl] = part[n][frows]  # gather, then cast (int16 codes -> int64)

    def __getitem__(self, i: int) -> dict:
        """Sample ``i`` in canonical order (subject-major, then TR): for inspection, not for training."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} of {len(self)}")
        s_pos, t = sample_at(i % len(self), self.plan.sample_index, self.plan.censored)
        unit = np.array([[self._subject_index[s_pos], t, t + 1]])
        g = self._assemble(unit, [self._read_unit(unit[0])])
        arrays, tensors = self._alloc(1)
        self._fill(g, np.array([0]), arrays)
        return {k: v[0] for k, v in tensors.items()}

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        w, n_w = (info.id, info.num_workers) if info is not None else (0, 1)
        units = self.units_for(w, n_w)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, w])
        m = self.chunks_in_memory
        groups = [units[i : i + m] for i in range(0, len(units), m)]
        pool = ThreadPoolExecutor(self.io_threads, thread_name_prefix="giblet-read") if self.io_threads else None
        self._state()  # open in this thread before the readers start

        def submit(k):
            if pool is None:
                return [self._read_unit(u) for u in groups[k]]
            return [pool.submit(self._read_unit, u) for u in groups[k]]

        try:
            pending = submit(0) if groups else None
            carry = None
            for k in range(len(groups)):
                parts = [p.result() if pool is not None else p for p in pending]
                pending = submit(k + 1) if k + 1 < len(groups) else None
                g = self._assemble(groups[k], parts)
                if not (n := len(g["tr"])):  # every sample of the group censored
                    continue
                order = rng.permutation(n) if self.shuffle else np.arange(n)
                if self.batch_size is None:
                    arrays, tensors = self._alloc(n)
                    self._fill(g, np.arange(n), arrays)
                    for j in order:
                        yield {key: v[j] for key, v in tensors.items()}
                    continue
                bs, start = self.batch_size, 0
                if carry is not None:  # a batch begun in the previous group
                    arrays, tensors, filled = carry
                    take = order[: bs - filled]
                    self._fill(g, take, arrays, at=filled)
                    filled += len(take)
                    start = len(take)
                    if filled < bs:
                        carry = (arrays, tensors, filled)
                        continue
                    carry = None
                    yield Batch(tensors)
                slots = iter(self._alloc_batches(bs, -(-(n - start) // bs)))  # one buffer for the group
                for j in range(start, n, bs):
                    arrays, tensors = next(slots)
                    take = order[j : j + bs]
                    self._fill(g, take, arrays)
                    if len(take) < bs:
                        carry = (arrays, tensors, len(take))
                        break
                    yield Batch(tensors)
            if carry is not None and not self.drop_last:
                yield Batch({key: v[: carry[2]] for key, v in carry[1].items()})
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


def _shared_bytes(nbytes: int) -> torch.Tensor:
    """(nbytes,) uint8 tensor allocated in shared memory (what DataLoader's own collate does)."""
    try:
        storage = torch.UntypedStorage._new_shared(nbytes)
    except (AttributeError, TypeError):  # older torch: allocate, then move (one copy)
        return torch.empty(nbytes, dtype=torch.uint8).share_memory_()
    return torch.empty(0, dtype=torch.uint8).set_(storage)


_TORCH = {np.dtype(np.float32): torch.float32, np.dtype(np.int64): torch.int64, np.dtype(bool): torch.bool}


_BOTH_BATCHED = ("this StoreDataset already serves batches of {b} (StoreDataset(batch_size={b})), so a DataLoader "
                 "batch_size would nest them; use DataLoader(ds, batch_size=None), or make the Dataset without "
                 "batch_size and give the DataLoader batch_size=B (the documented path)")


class Batch(dict):
    """A batch served by a ``StoreDataset(batch_size=B)``: a dict of tensors with a leading batch axis.

    Its own type lets a DataLoader that batches again (``batch_size`` not None) fail with a clear
    message instead of returning nested shapes such as ``fmri (1, 3, 963)``.
    """


def _refuse_nested(batch, *, collate_fn_map=None):
    raise ParameterError(_BOTH_BATCHED.format(b=len(next(iter(batch[0].values()))) if batch and batch[0] else "B"))


def _register_collate() -> None:
    try:
        from torch.utils.data._utils.collate import default_collate_fn_map
    except ImportError:  # an older torch: nested batches are then not caught
        return
    default_collate_fn_map.setdefault(Batch, _refuse_nested)


_register_collate()
