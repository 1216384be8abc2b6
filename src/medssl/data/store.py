"""Slice store: one dataset's 2D slices in a format made for fast random access; its reader and writer.

Layout of ``results/<experiment>/data/<dataset>/``::

    images.npy   float16 (N, H, W), intensities normalised to [0, 1]      (np.load(..., mmap_mode="r"))
    labels.npy   uint8   (N, H, W), contiguous class ids (0 = background)
    index.csv    one row per slice: row, case, patient, slice, n_slices, fg, c1..cK
                 (fg: any foreground in the slice; cK: class K present in the slice; 0/1 flags computed on
                 the stored labels)
    meta.json    dataset, title, modality, classes, n_classes, image_size, slice_axis, orientation,
                 synthetic, task, group, n_cases, n_patients, n_slices, normalisation,
                 class_slices (per class name: how many slices hold it; 0 = never labelled),
                 spacing (per case: [between slices, row, column] in mm of the stored 2D pixels, e.g. for
                 HD95 computed on the store), cases (per case: patient, first row, slice count, source size
                 and spacing, slice shape before resizing, intensity range used, channel/frame if picked)

Rows are ordered by case, then by slice index, and the slices of one case are contiguous: the neighbours
of row r in its scan are r-1 and r+1 (SSMTL relies on this). Memory-mapped arrays make a random slice a
page-cache read, so loaders scale to many workers without copying the dataset.

:class:`SliceStore` reads a store. :func:`write_store` writes one (:mod:`medssl.data.slicing` fills it): the
``.npy`` files are written with their final header and filled case by case with plain sequential writes
(not through a memory map, whose dirty pages would count in the process' resident set), in slabs of slices
(:meth:`StoreWriter.write_case`); the index is built from the stored labels. The store is written into a
hidden temporary folder beside its path and renamed onto it at the end (:func:`medssl.io.atomic_dir`); such
folders left by a killed job are removed by the next writer of the same store.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from medssl.io import atomic_dir

__all__ = ["IMAGES", "INDEX", "LABELS", "META", "SliceStore", "SplitMismatchError", "StoreWriter",
           "write_store"]

IMAGES = "images.npy"
LABELS = "labels.npy"
INDEX = "index.csv"
META = "meta.json"


class SplitMismatchError(ValueError):
    """A split's slices are not in the store it is used with: it was made from another slice store."""


class SliceStore:
    """Read-only view of a slice store (see module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        for name in (IMAGES, LABELS, INDEX, META):
            if not (self.path / name).exists():
                raise FileNotFoundError(f"slice store {self.path} is incomplete: {name} missing")
        self.images = np.load(self.path / IMAGES, mmap_mode="r")
        self.labels = np.load(self.path / LABELS, mmap_mode="r")
        self.index = pd.read_csv(self.path / INDEX, dtype={"case": str, "patient": str})
        with open(self.path / META) as f:
            self.meta = json.load(f)
        if not (len(self.images) == len(self.labels) == len(self.index)):
            raise ValueError(f"slice store {self.path}: images, labels and index disagree in length")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def name(self) -> str:
        return self.meta["dataset"]

    @property
    def n_classes(self) -> int:
        return int(self.meta["n_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["classes"])

    def rows(self, patients=None, foreground_only: bool = False) -> np.ndarray:
        """Row ids of the slices of ``patients`` (all if None); ``foreground_only``: the slices with foreground
        that the dataset's sample holds (:func:`draw_sample`: all of them unless ``sample_slices`` was set)."""
        mask = np.ones(len(self.index), dtype=bool)
        if patients is not None:
            mask &= self.index["patient"].isin(list(patients)).to_numpy()
        if foreground_only:
            mask &= self.sampled
        return np.flatnonzero(mask)

    @property
    def sampled(self) -> np.ndarray:
        """Per row: a slice with foreground in the dataset's sample (stores written before sampling: every
        slice with foreground)."""
        column = "sampled" if "sampled" in self.index.columns else "fg"
        return self.index[column].astype(bool).to_numpy()

    def rows_of(self, pairs, split: str | Path | None = None) -> np.ndarray:
        """Row ids of ``[case, slice]`` pairs (as written in split files).

        ``split`` names the split file the pairs come from in messages (default: ``pairs.source``, which
        :func:`medssl.data.splits.read_split` sets). A pair that is not in this store means the split was
        made from another slice store of the dataset (sliced with other settings): :class:`SplitMismatchError`
        naming both, never a ``KeyError``.
        """
        source = split if split is not None else getattr(pairs, "source", None)
        where = f"split {source}" if source is not None else "the split"
        lookup = self.row_lookup
        rows, missing, n = [], [], 0
        for pair in pairs:
            n += 1
            try:
                case, slice_ = pair
                key = (str(case), int(slice_))
            except (TypeError, ValueError):
                raise SplitMismatchError(f"{where}: {pair!r} is not a [case, slice] pair") from None
            row = lookup.get(key)
            if row is None:
                missing.append(key)
            else:
                rows.append(row)
        if missing:
            cases = sorted({c for c, _ in missing})
            raise SplitMismatchError(
                f"{where}: {len(missing)} of its {n} slices are not in the slice store {self.path} (e.g. case "
                f"{missing[0][0]} slice {missing[0][1]}; cases {', '.join(cases[:5])}"
                f"{', ...' if len(cases) > 5 else ''}): the split was made from another slice store of "
                f"{self.meta.get('dataset', 'this dataset')}; make the split again from this store, or give "
                f"the store it was made from")
        return np.array(rows, dtype=np.int64)

    def classes_present(self, rows=None) -> list[int]:
        """Class ids (1..K, background excluded) with at least one pixel in the slices ``rows`` (all if None).

        Read from ``index.csv``'s per-slice class flags ``c1..cK`` (computed on the stored labels), so no
        label is read. A finetuning job calls it on its training rows: a class missing there cannot be
        learnt, and no class at all means nothing to learn (the job should fail rather than report a Dice of
        null at the end).
        """
        k = self.n_classes - 1
        cols = [f"c{c}" for c in range(1, k + 1)]
        if all(col in self.index.columns for col in cols):
            flags = self.index[cols].to_numpy()
            if rows is not None:
                flags = flags[np.asarray(rows, dtype=np.int64)]
            present = flags.astype(bool).any(axis=0)
            return [c for c in range(1, k + 1) if present[c - 1]]
        labels = self.labels if rows is None else self.labels[np.sort(np.asarray(rows, dtype=np.int64))]
        values = set(np.unique(np.asarray(labels)).tolist())
        return [c for c in range(1, k + 1) if c in values]

    def missing_classes(self, rows=None) -> list[str]:
        """Names of the classes with no pixel in ``rows`` (all slices if None): see :meth:`classes_present`."""
        present = set(self.classes_present(rows))
        names = self.class_names
        return [names[c - 1] if c - 1 < len(names) else f"class {c}" for c in range(1, self.n_classes)
                if c not in present]

    @cached_property
    def row_lookup(self) -> dict[tuple[str, int], int]:
        return {(c, int(s)): int(r) for r, c, s in
                zip(self.index["row"], self.index["case"], self.index["slice"])}

    @cached_property
    def case_start(self) -> np.ndarray:
        """For each row, the first row of its case."""
        first = self.index.groupby("case", sort=False)["row"].transform("min")
        return first.to_numpy()

    @cached_property
    def case_stop(self) -> np.ndarray:
        """For each row, one past the last row of its case."""
        last = self.index.groupby("case", sort=False)["row"].transform("max")
        return last.to_numpy() + 1


# --------------------------------------------------------------------------------------------------
# Writing


def _npy_header(f, dtype, shape) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})


class StoreWriter:
    """Fills the open ``images.npy``/``labels.npy`` of a store being written (:func:`write_store`) case by
    case, collects ``index.csv``, and writes ``index.csv`` and ``meta.json`` in :meth:`finish`."""

    def __init__(self, folder: Path, fi, fl, n_slices: int, image_size: int, n_classes: int):
        self.folder, self._fi, self._fl = folder, fi, fl
        self.n_slices, self.image_size, self.n_fg = int(n_slices), int(image_size), int(n_classes) - 1
        self._rows: list[pd.DataFrame] = []
        self.rows_written = 0
        #: per class 1..K, how many slices written so far hold it (``meta.json``'s ``class_slices``)
        self.class_slices = np.zeros(self.n_fg, dtype=np.int64)
        self.finished = False
        _npy_header(fi, np.float16, (self.n_slices, self.image_size, self.image_size))
        _npy_header(fl, np.uint8, (self.n_slices, self.image_size, self.image_size))
        self._offsets = fi.tell(), fl.tell()

    def write_case(self, case: str, patient: str, slabs: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Append one case's slices, given as slabs ``(images float16 (n, S, S), labels uint8 (n, S, S))`` in
        slice order, and its index rows; return its per-slice foreground flags (bool, one per slice)."""
        size, first = self.image_size, self.rows_written
        parts = []
        for images, labels in slabs:
            if (images.dtype != np.float16 or labels.dtype != np.uint8 or images.shape[1:] != (size, size)
                    or labels.shape != images.shape):
                raise ValueError(f"slab of case {case}: images {images.dtype} {images.shape} / labels "
                                 f"{labels.dtype} {labels.shape}; float16 / uint8 (n, {size}, {size}) expected")
            if self.rows_written + len(images) > self.n_slices:
                raise ValueError(f"case {case}: more slices than the {self.n_slices} the store was opened for")
            images.tofile(self._fi)
            labels.tofile(self._fl)
            self.rows_written += len(images)
            parts.append(np.stack([(labels == c).any(axis=(1, 2)) for c in range(1, self.n_fg + 1)], axis=1)
                         if self.n_fg else np.zeros((len(labels), 0), dtype=bool))
            del images, labels  # a slab's arrays are not kept while the next one is computed
        n = self.rows_written - first
        present = np.concatenate(parts) if parts else np.zeros((0, self.n_fg), dtype=bool)
        self.class_slices += present.sum(axis=0)
        fg = present.any(axis=1)
        part = {"row": np.arange(first, first + n), "case": case, "patient": patient, "slice": np.arange(n),
                "n_slices": n, "fg": fg.astype(np.uint8)}
        part.update({f"c{k}": present[:, k - 1].astype(np.uint8) for k in range(1, self.n_fg + 1)})
        self._rows.append(pd.DataFrame(part))
        return fg

    def finish(self, meta: dict, sample_slices: int | None = None) -> None:
        """Check that every slice was written, close the arrays, write ``index.csv`` (with the ``sampled``
        column of :func:`draw_sample`) and ``meta.json``."""
        size = self.image_size
        for f, name, itemsize, offset in ((self._fi, IMAGES, 2, self._offsets[0]),
                                          (self._fl, LABELS, 1, self._offsets[1])):
            if f.tell() != offset + self.n_slices * size * size * itemsize:
                raise ValueError(f"{meta.get('dataset')}: {name} holds {f.tell() - offset} data bytes, expected "
                                 f"{self.n_slices * size * size * itemsize}")
        self._fi.close()
        self._fl.close()
        index = pd.concat(self._rows, ignore_index=True)
        index["sampled"] = draw_sample(index, sample_slices).astype(np.uint8)
        meta = {**meta, "sample": {"slices": sample_slices, "seed": SAMPLE_SEED, "drawn": int(index["sampled"].sum()),
                                   "foreground_slices": int(index["fg"].astype(bool).sum())}}
        index.to_csv(self.folder / INDEX, index=False)
        with open(self.folder / META, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        self.finished = True


SAMPLE_SEED = 0


def draw_sample(index: pd.DataFrame, n: int | None, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Which slices with foreground a dataset's sample holds: all of them without ``n``, else ``n`` of them
    (all when it has no more), spread over its patients: each patient's share is proportional to its
    foreground slices (largest remainder; ties to the patient first in sorted order), drawn at random within
    the patient with ``numpy.random.default_rng([seed, k])`` for the k-th patient (sorted). Paper A's Table 1
    counts such a sample of each dataset's slices (e.g. 4,342 of the liver's); drawn before the patient split,
    so pretraining, the label subsets, validation and test all come from it."""
    fg = index["fg"].astype(bool).to_numpy()
    if n is None or n >= fg.sum():
        return fg
    patients = index["patient"].astype(str).to_numpy()
    names = sorted(set(patients[fg]))
    counts = np.array([int((fg & (patients == p)).sum()) for p in names])
    exact = counts * n / counts.sum()
    quota = np.floor(exact).astype(int)
    for k in sorted(range(len(names)), key=lambda k: (-(exact[k] - quota[k]), k))[: n - int(quota.sum())]:
        quota[k] += 1
    out = np.zeros(len(index), dtype=bool)
    for k, (name, q) in enumerate(zip(names, quota)):
        rows = np.flatnonzero(fg & (patients == name))
        out[np.random.default_rng([seed, k]).choice(rows, size=int(q), replace=False)] = True
    return out


@contextlib.contextmanager
def write_store(path: str | Path, *, n_slices: int, image_size: int, n_classes: int) -> Iterator[StoreWriter]:
    """Write a store of ``n_slices`` slices of ``image_size`` x ``image_size`` pixels and ``n_classes`` classes
    (background included) at ``path``: yield a :class:`StoreWriter` on a hidden temporary folder, renamed onto
    ``path`` if the block succeeds and calls :meth:`StoreWriter.finish`; else ``path`` is left unchanged."""
    with atomic_dir(path) as tmp:
        with open(tmp / IMAGES, "wb") as fi, open(tmp / LABELS, "wb") as fl:
            writer = StoreWriter(tmp, fi, fl, n_slices, image_size, n_classes)
            yield writer
        if not writer.finished:
            raise RuntimeError(f"slice store {path}: written without StoreWriter.finish()")
