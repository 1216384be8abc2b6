"""Slice store: one dataset's 2D slices in a format made for fast random access.

Layout of ``results/<experiment>/data/<dataset>/``::

    images.npy   float16 (N, H, W), intensities normalised to [0, 1]      (np.load(..., mmap_mode="r"))
    labels.npy   uint8   (N, H, W), contiguous class ids (0 = background)
    index.csv    one row per slice: row, case, patient, slice, n_slices, fg, c1..cK
                 (fg: any foreground in the slice; cK: class K present in the slice)
    meta.json    dataset, title, modality, classes, n_classes, image_size, slice_axis, synthetic,
                 task, group, n_cases, n_slices, normalisation, spacing per case

Rows are ordered by case, then by slice index, and the slices of one case are contiguous: the neighbours
of row r in its scan are r-1 and r+1 (SSMTL relies on this). Memory-mapped arrays make a random slice a
page-cache read, so loaders scale to many workers without copying the dataset.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

IMAGES = "images.npy"
LABELS = "labels.npy"
INDEX = "index.csv"
META = "meta.json"


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
        """Row ids of the slices of ``patients`` (all if None), optionally only slices with foreground."""
        mask = np.ones(len(self.index), dtype=bool)
        if patients is not None:
            mask &= self.index["patient"].isin(list(patients)).to_numpy()
        if foreground_only:
            mask &= self.index["fg"].astype(bool).to_numpy()
        return np.flatnonzero(mask)

    def rows_of(self, pairs) -> np.ndarray:
        """Row ids of ``[case, slice]`` pairs (as written in split files)."""
        lookup = self.row_lookup
        try:
            return np.array([lookup[(str(c), int(s))] for c, s in pairs], dtype=np.int64)
        except KeyError as err:
            raise KeyError(f"slice {err.args[0]} not in store {self.path}") from None

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
