"""PyTorch datasets and loaders over :class:`~medssl.data.store.SliceStore` (memory-mapped).

Batches are built whole (``Dataset.__getitems__``: one sorted fancy-index read of the memmap per batch,
no per-sample collation), so a single loader process feeds a GPU comfortably. CPU batches are dicts:

* ``image``  float16 ``(B, 1, H, W)`` in [0, 1] (half the bytes to copy; :func:`batch_to_device` makes
  float32 on the device), ``label`` uint8 ``(B, H, W)`` when labels are requested,
* ``task``, ``group`` int64 ``(B,)`` (pretraining pool ids), ``row`` int64 ``(B,)`` (row in its store),
* sequence sampling (SSMTL): ``image`` = anchor x_j, ``prev`` = x_{j-t}, ``next`` = x_{j+t}, and with
  ``pair``: ``pair`` = x_k, k uniform in {j-2t..j-t-1} ∪ {j+t+1..j+2t} clipped to the scan.

Sequence anchors: an anchor j needs both neighbours j±t inside its own scan (``store.case_start`` /
``case_stop``); anchors without them are excluded, as are (with ``pair``) anchors whose k set is empty
after clipping (only the middle slice of a scan of exactly 2t+1 slices). Neighbours and pairs are drawn
from all slices of the scan even when the anchors are restricted (e.g. to foreground slices).

Data on the GPU (:func:`keep_on_device`): when a training job's stores fit in a share of the GPU's memory, their
arrays are copied to the GPU once and batches are indexed there (no loader workers, no copy per batch); the
datasets are the same, only where :class:`_StoreArrays` reads from changes (on the CPU, :func:`to_device` puts
them in memory as tensors: the same indexing, which is how the tests check it).

Randomness is deterministic per (seed, epoch, batch): :class:`EpochBatchSampler` permutes with
``numpy.random.default_rng([seed, epoch])`` and passes each batch a salt ``(seed, epoch, batch)`` that seeds
the pair draw, so results do not depend on the number of workers and a resumed run sees the same data.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from medssl.data.store import IMAGES, LABELS, SliceStore

log = logging.getLogger("medssl.data")


def worker_init_fn(worker_id: int) -> None:
    """DataLoader workers: derive numpy/python seeds from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _split_items(items) -> tuple[np.ndarray, tuple | None]:
    if len(items) and isinstance(items[0], tuple):
        return np.fromiter((i for i, _ in items), dtype=np.int64, count=len(items)), items[0][1]
    return np.asarray(items, dtype=np.int64), None


class _StoreArrays:
    """Memory maps opened lazily per process (a pickled dataset never carries the arrays), or the store's
    tensors on a device (:meth:`move_to`)."""

    def __init__(self, path: Path, labels: bool):
        self.path = Path(path)
        self.want_labels = labels
        self._images = self._labels = None
        self.resident: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __getstate__(self):
        return {"path": self.path, "want_labels": self.want_labels, "_images": None, "_labels": None,
                "resident": None}

    def nbytes(self) -> int:
        """Bytes of what :meth:`move_to` copies: the images, and the labels when wanted."""
        return self.images.nbytes + (self.labels.nbytes if self.want_labels else 0)

    def move_to(self, device: torch.device) -> None:
        """Read the store whole onto ``device``; later reads index it there."""
        images = torch.from_numpy(np.array(self.images)).to(device)  # read whole (a copy of the memmap)
        labels = torch.from_numpy(np.array(self.labels)).to(device) if self.want_labels else None
        self.resident = (images, labels)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path / IMAGES, mmap_mode="r")
        return self._images

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.load(self.path / LABELS, mmap_mode="r")
        return self._labels

    def read(self, rows: np.ndarray, labels: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (and labels) of ``rows`` in the given order: indexed on the device where the store is
        resident, else one sorted read of the memmap."""
        if self.resident is not None:
            index = torch.from_numpy(rows).to(self.resident[0].device, non_blocking=True)
            return self.resident[0][index], self.resident[1][index] if labels else None
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        img = torch.from_numpy(np.ascontiguousarray(self.images[srt][inv]))
        lab = torch.from_numpy(np.ascontiguousarray(self.labels[srt][inv])) if labels else None
        return img, lab


class SliceDataset(Dataset):
    """Slices ``rows`` of one store; ``labels=True`` adds the ``label`` maps."""

    def __init__(self, store: SliceStore, rows: Sequence[int] | None = None, *, task: int = 0, group: int = 0,
                 labels: bool = False):
        self.arrays = _StoreArrays(store.path, labels)
        self.rows = np.arange(len(store), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self.task, self.group, self.labels = int(task), int(group), labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, items) -> dict:
        idx, _ = _split_items(items)
        rows = self.rows[idx]
        img, lab = self.arrays.read(rows, self.labels)
        n = len(rows)
        batch = {"image": img.unsqueeze(1),
                 "task": torch.full((n,), self.task, dtype=torch.int64),
                 "group": torch.full((n,), self.group, dtype=torch.int64),
                 "row": torch.from_numpy(rows.copy())}
        if self.labels:
            batch["label"] = lab
        return batch

    def __getitem__(self, item) -> dict:
        return {k: v[0] for k, v in self.__getitems__([item]).items()}


def sequence_anchors(case_start: np.ndarray, case_stop: np.ndarray, offset: int, pair: bool,
                     candidates: np.ndarray | None = None) -> np.ndarray:
    """Rows j (among ``candidates``) with j±offset inside their scan and, if ``pair``, a non-empty k set."""
    if offset < 1:
        raise ValueError(f"sequence offset t must be >= 1, got {offset}")
    rows = np.arange(len(case_start)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    start, stop = case_start[rows], case_stop[rows]
    ok = (rows - offset >= start) & (rows + offset < stop)
    if pair:
        ok &= (rows - offset - 1 >= start) | (rows + offset + 1 < stop)
    return rows[ok]


def draw_pairs(anchors: np.ndarray, start: np.ndarray, stop: np.ndarray, offset: int,
               rng: np.random.Generator) -> np.ndarray:
    """k uniform in {j-2t..j-t-1} ∪ {j+t+1..j+2t} clipped to [start, stop) (vectorised)."""
    t = offset
    lo_a = np.maximum(anchors - 2 * t, start)
    n_low = np.maximum(anchors - t - lo_a, 0)  # count of {lo_a .. j-t-1}
    hi_b = np.minimum(anchors + 2 * t, stop - 1)
    n_high = np.maximum(hi_b - anchors - t, 0)  # count of {j+t+1 .. hi_b}
    total = n_low + n_high
    if np.any(total <= 0):
        raise ValueError("an anchor has no admissible pair slice")
    u = np.floor(rng.random(len(anchors)) * total).astype(np.int64)
    return np.where(u < n_low, lo_a + u, anchors + t + 1 + (u - n_low))


class SequenceDataset(Dataset):
    """SSMTL sampling within one scan: anchor, its ±t neighbours and (optionally) a pair slice."""

    def __init__(self, store: SliceStore, candidates: Sequence[int] | None = None, *, offset: int,
                 pair: bool = False, task: int = 0, group: int = 0, seed: int = 0):
        self.arrays = _StoreArrays(store.path, False)
        self.case_start = np.asarray(store.case_start, dtype=np.int64)
        self.case_stop = np.asarray(store.case_stop, dtype=np.int64)
        self.offset, self.pair = int(offset), bool(pair)
        self.anchors = sequence_anchors(self.case_start, self.case_stop, self.offset, self.pair,
                                        None if candidates is None else np.asarray(candidates))
        self.task, self.group, self.seed = int(task), int(group), int(seed)

    @property
    def rows(self) -> np.ndarray:
        return self.anchors

    def __len__(self) -> int:
        return len(self.anchors)

    def __getitems__(self, items) -> dict:
        idx, salt = _split_items(items)
        j = self.anchors[idx]
        t = self.offset
        n = len(j)
        parts = [j, j - t, j + t]
        if self.pair:
            rng = np.random.default_rng(list(salt) if salt is not None else [self.seed, *idx.tolist()])
            parts.append(draw_pairs(j, self.case_start[j], self.case_stop[j], t, rng))
        img, _ = self.arrays.read(np.concatenate(parts))
        img = img.unsqueeze(1)
        batch = {"image": img[:n], "prev": img[n:2 * n], "next": img[2 * n:3 * n]}
        if self.pair:
            batch["pair"] = img[3 * n:]
            batch["pair_row"] = torch.from_numpy(parts[3].copy())
        batch.update(task=torch.full((n,), self.task, dtype=torch.int64),
                     group=torch.full((n,), self.group, dtype=torch.int64),
                     row=torch.from_numpy(j.copy()))
        return batch

    def __getitem__(self, item) -> dict:
        return {k: v[0] for k, v in self.__getitems__([item]).items()}


class PoolDataset(Dataset):
    """Concatenation of datasets (one per store of a pretraining pool) with batched reads."""

    def __init__(self, parts: Sequence[Dataset]):
        self.parts = [p for p in parts]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitems__(self, items) -> dict:
        idx, salt = _split_items(items)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        pieces, positions = [], []
        for p in np.unique(which):
            sel = np.flatnonzero(which == p)
            local = idx[sel] - self.offsets[p]
            sub = [(int(i), (*salt, int(p))) for i in local] if salt is not None else local.tolist()
            pieces.append(self.parts[p].__getitems__(sub))
            positions.append(sel)
        if len(pieces) == 1:
            return pieces[0]
        inv = np.empty(len(idx), dtype=np.int64)
        inv[np.concatenate(positions)] = np.arange(len(idx))
        inv_t = torch.from_numpy(inv)
        return {k: torch.cat([pc[k] for pc in pieces])[inv_t] for k in pieces[0]}

    def __getitem__(self, item) -> dict:
        return {k: v[0] for k, v in self.__getitems__([item]).items()}


class EpochBatchSampler(Sampler):
    """Batches of ``(index, salt)``: a fresh permutation per epoch from (seed, epoch), at most ``max_batches``
    (or exactly ``batches``).

    ``drop_last`` drops a trailing partial batch only when at least one full batch exists (a dataset smaller
    than the batch still yields one batch). ``fill`` makes every batch full instead: an epoch is
    ``ceil(n / batch_size)`` batches drawn from successive permutations, so a set smaller than a batch (a 5 %
    label subset) repeats slices within a batch rather than producing batches of one (which BatchNorm
    cannot train on). ``batches`` fixes the number of full batches per epoch whatever the dataset size (a step
    budget, see :func:`medssl.train.loop.epoch_batches`): successive permutations are concatenated, as with
    ``fill``, so every slice is drawn about equally often. Call :meth:`set_epoch` before iterating.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, drop_last: bool = True, seed: int = 0,
                 max_batches: int | None = None, fill: bool = False, batches: int | None = None):
        if n <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        if batches is not None and int(batches) < 1:
            raise ValueError(f"batches per epoch must be >= 1, got {batches}")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, int(batch_size), shuffle, drop_last
        self.seed, self.max_batches, self.epoch = int(seed), max_batches, 0
        self.batches = None if batches is None else int(batches)
        self.fill = fill or self.batches is not None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.batches is not None:
            return self.batches
        full, rest = divmod(self.n, self.batch_size)
        if self.fill:
            n_batches = full + (1 if rest else 0)
        else:
            n_batches = full + (1 if rest and (not self.drop_last or full == 0) else 0)
        return min(n_batches, self.max_batches) if self.max_batches else n_batches

    def _order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        need = len(self) * self.batch_size if self.fill else self.n
        parts, total = [], 0
        while total < need:
            parts.append(rng.permutation(self.n) if self.shuffle else np.arange(self.n))
            total += self.n
            if not self.fill:
                break
        return np.concatenate(parts)

    def __iter__(self):
        order = self._order()
        for b in range(len(self)):
            chunk = order[b * self.batch_size:(b + 1) * self.batch_size]
            salt = (self.seed, self.epoch, b)
            yield [(int(i), salt) for i in chunk]


def _identity(batch):
    return batch


def _store_arrays(dataset: Dataset) -> list[_StoreArrays]:
    parts = getattr(dataset, "parts", [dataset])
    return [p.arrays for p in parts]


def to_device(dataset: Dataset, device: torch.device) -> None:
    """Put the stores ``dataset`` reads (a pool's: each of them) on ``device`` once."""
    for arrays in _store_arrays(dataset):
        arrays.move_to(device)


def keep_on_device(dataset: Dataset, device: torch.device, mode: str, fraction: float) -> bool:
    """:func:`to_device` when ``mode`` is ``auto``, ``device`` a GPU and the stores take at most ``fraction``
    of its memory (config ``data_on_gpu``, ``data_on_gpu_fraction``); whether it did. The batches are then
    drawn on the GPU by the main process: a loader of no workers and no pinned memory."""
    if mode != "auto" or torch.device(device).type != "cuda":
        return False
    need = sum(a.nbytes() for a in _store_arrays(dataset))
    room = fraction * torch.cuda.get_device_properties(device).total_memory
    if need > room:
        log.info("data stay on the host: the stores take %.2f GB, more than %.2f GB (data_on_gpu_fraction %.2f)",
                 need / 1e9, room / 1e9, fraction)
        return False
    to_device(dataset, device)
    log.info("data on the GPU: %.2f GB of stores copied once; batches are drawn there", need / 1e9)
    return True


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = True, drop_last: bool = True,
                seed: int = 0, num_workers: int = 0, pin_memory: bool = False,
                max_batches: int | None = None, fill: bool = False, batches: int | None = None) -> DataLoader:
    """A DataLoader with an :class:`EpochBatchSampler` (reach it as ``loader.batch_sampler``)."""
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                                max_batches=max_batches, fill=fill, batches=batches)
    kw = {}
    if num_workers > 0:
        kw = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": worker_init_fn}
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=_identity, num_workers=num_workers,
                      pin_memory=pin_memory, **kw)


IMAGE_KEYS = ("image", "prev", "next", "pair")


def batch_to_device(batch: dict, device: torch.device,
                    memory_format: torch.memory_format = torch.contiguous_format) -> dict:
    """Move a CPU batch to ``device`` (non-blocking): images -> float32 (N,1,H,W), labels -> int64."""
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        if k in IMAGE_KEYS:
            v = v.to(torch.get_default_dtype())  # float32 (float16 in the store)
            if memory_format is not torch.contiguous_format:
                v = v.contiguous(memory_format=memory_format)
        elif k == "label":
            v = v.long()
        out[k] = v
    return out
