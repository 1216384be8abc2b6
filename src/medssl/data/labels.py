"""Label maps of the slice store: resizing, remapping source values to class ids, the values present.

* :func:`resize_labels`: every slice to ``image_size`` x ``image_size`` with centred nearest neighbour
  (index selection, so label values stay a subset of the original ones).
* :func:`remap_labels`: source label values -> contiguous class ids (``spec.label_map()``) through a lookup
  table (:func:`label_lut`); unlisted values, negative ones included, become 0.
* :func:`label_values`: the distinct values of a label volume (the slicer warns about values outside the
  class map and about labels with no voxel of any class).
"""

from __future__ import annotations

import numpy as np

from medssl.data.intensity import SCAN_CHUNK

__all__ = ["label_lut", "label_values", "remap_labels", "resize_labels"]


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Centred nearest-neighbour source index for each output pixel (like torch 'nearest-exact')."""
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp)
    return np.minimum(idx, n_in - 1)


def resize_labels(stack: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an (n, h, w) label stack to (n, size, size) (values are only copied)."""
    _, h, w = stack.shape
    rows, cols = _nearest_index(h, size), _nearest_index(w, size)
    return np.take(stack, rows, axis=1)[:, :, cols]


def label_lut(label_map: dict[int, int]) -> np.ndarray:
    """Lookup table for :func:`remap_labels`: length max source value + 2, last entry 0 (for values out of
    range, which are clipped onto it)."""
    if any(k < 0 for k in label_map):
        raise ValueError("source label values must be >= 0")
    if any(not 0 <= v <= 255 for v in label_map.values()):
        raise ValueError("class ids must fit in uint8")
    lut = np.zeros(max(label_map, default=0) + 2, dtype=np.uint8)
    for src, dst in label_map.items():
        lut[src] = dst
    return lut


def remap_labels(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Source values -> contiguous class ids (uint8); values missing from the table (negative or larger
    than any listed value, or non-listed in between) become 0. Float labels are rounded first."""
    if labels.dtype.kind == "u" and labels.dtype.itemsize <= 2:
        # the usual case: a table covering the whole dtype, and one np.take (no clipping pass)
        full = np.zeros(1 << (8 * labels.dtype.itemsize), dtype=np.uint8)
        m = min(len(lut) - 1, full.size)
        full[:m] = lut[:m]
        return np.take(full, labels)
    if labels.dtype.kind == "f":
        labels = np.rint(labels)
    idx = np.clip(labels, -1, len(lut) - 1).astype(np.intp, copy=False)
    return lut[idx]  # index -1 is the last entry, 0


def label_values(labels: np.ndarray) -> np.ndarray:
    """The distinct values of a label volume (sorted; float labels rounded), in chunks: a histogram for
    integer labels of a small value range, else ``np.unique`` per chunk."""
    flat = np.asarray(labels).reshape(-1)
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    if flat.dtype.kind in "iub":
        lo, hi = int(flat.min()), int(flat.max())
        if hi - lo < 1 << 20:
            counts = np.zeros(hi - lo + 1, dtype=np.int64)
            for i in range(0, flat.size, SCAN_CHUNK):
                counts += np.bincount(flat[i:i + SCAN_CHUNK].astype(np.int64) - lo, minlength=counts.size)
            return np.flatnonzero(counts) + lo
    found: set = set()
    for i in range(0, flat.size, SCAN_CHUNK):
        chunk = flat[i:i + SCAN_CHUNK]
        found.update(np.unique(np.rint(chunk) if chunk.dtype.kind == "f" else chunk).tolist())
    return np.array(sorted(v for v in found if v == v), dtype=np.float64)  # NaN labels are dropped
