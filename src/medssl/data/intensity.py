"""Image intensities of the slice store: normalisation to [0, 1] per modality, resizing, float16.

* :func:`intensity_range`: the intensities mapped to 0 and 1. CT: ``settings.ct_window`` (HU). MRI: the
  ``settings.mri_percentiles`` (percent) of every voxel of the 3D volume, exactly ``numpy.percentile``'s
  linear interpolation (:func:`percentiles`).
* :func:`normalise`: clip to that range and scale linearly; a constant volume maps to 0; NaN voxels of float
  volumes map to 0 (Inf are clipped like any value outside the range; :func:`count_nonfinite` counts them).
* :func:`resize_images`: every slice to ``image_size`` x ``image_size`` (aspect ratio not kept) with bilinear
  interpolation (``torch.nn.functional.interpolate`` on a stack of slices at once, ``align_corners=False``;
  anti-aliased when shrinking by more than 2x).
* :func:`to_float16`: the stored dtype.

Whole-volume scans (:func:`percentiles` of 8/16-bit volumes, :func:`count_nonfinite`) run in chunks of
:data:`SCAN_CHUNK` voxels, so they need no full-size temporary.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SCAN_CHUNK", "count_nonfinite", "intensity_range", "normalise", "percentiles", "resize_images",
           "to_float16"]

SCAN_CHUNK = 1 << 20  # voxels per chunk of a whole-volume scan (histograms, value sets, NaN counts)


def intensity_range(volume: np.ndarray, modality: str, *, ct_window, mri_percentiles) -> tuple[float, float]:
    """The (low, high) intensities mapped to 0 and 1: the CT window, or the MRI volume's percentiles."""
    if modality == "CT":
        lo, hi = ct_window
    elif modality == "MRI":
        lo, hi = percentiles(volume, mri_percentiles)
    else:
        raise ValueError(f"unknown modality {modality!r}")
    return float(lo), float(hi)


def _order_stats_hist(flat: np.ndarray, ranks: list[int]) -> dict[int, float]:
    """Values of rank ``r`` (0-based, ascending) of an 8/16-bit integer array, from a histogram built in
    chunks (no full-size temporary)."""
    unsigned = np.dtype(f"u{flat.dtype.itemsize}")
    offset = 1 << (8 * flat.dtype.itemsize - 1) if flat.dtype.kind == "i" else 0
    counts = np.zeros(1 << (8 * flat.dtype.itemsize), dtype=np.int64)
    for i in range(0, flat.size, SCAN_CHUNK):
        chunk = flat[i:i + SCAN_CHUNK]
        if offset:  # signed -> unsigned with the order kept (flip the sign bit)
            chunk = chunk.view(unsigned) ^ unsigned.type(offset)
        counts += np.bincount(chunk.view(unsigned).astype(np.intp), minlength=counts.size)
    cum = np.cumsum(counts)
    pos = np.searchsorted(cum, np.asarray(ranks) + 1)  # first bin whose cumulative count exceeds r
    return {r: float(int(p) - offset) for r, p in zip(ranks, pos)}


def percentiles(volume: np.ndarray, qs) -> list[float]:
    """``numpy.percentile(volume, qs)`` (default 'linear' method), exact, but faster: 8/16-bit integer
    volumes (the usual MRI storage) go through a histogram, others through one ``np.partition`` in their
    own dtype (``numpy.percentile`` first converts integer volumes to float64)."""
    flat = np.asarray(volume).reshape(-1)
    n = flat.size
    if n == 0:
        raise ValueError("percentiles of an empty volume")
    qs = [float(q) for q in qs]
    if any(not 0.0 <= q <= 100.0 for q in qs):
        raise ValueError(f"percentiles must be in [0, 100], got {qs}")
    pos = [(n - 1) * q / 100.0 for q in qs]
    ranks = sorted({k for h in pos for k in (int(np.floor(h)), min(int(np.floor(h)) + 1, n - 1))})
    if flat.dtype.kind in "iu" and flat.dtype.itemsize <= 2:
        value = _order_stats_hist(flat, ranks)
    else:
        part = np.partition(flat, ranks)
        value = {r: float(part[r]) for r in ranks}
    out = []
    for h in pos:
        lo = int(np.floor(h))
        a, b = value[lo], value[min(lo + 1, n - 1)]
        out.append(a + (h - lo) * (b - a))
    return out


def count_nonfinite(volume: np.ndarray) -> tuple[int, int]:
    """(NaN count, Inf count) of a volume, in chunks; (0, 0) for non-float dtypes."""
    if volume.dtype.kind != "f":
        return 0, 0
    n_nan = n_inf = 0
    flat = volume.reshape(-1)
    for i in range(0, flat.size, SCAN_CHUNK):
        chunk = flat[i:i + SCAN_CHUNK]
        n_nan += int(np.isnan(chunk).sum())
        n_inf += int(np.isinf(chunk).sum())
    return n_nan, n_inf


def normalise(stack: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip to [lo, hi] and scale to [0, 1]; a C-contiguous float32 copy of ``stack`` (any dtype/view)."""
    if not hi > lo:
        return np.zeros(stack.shape, dtype=np.float32)
    out = stack.astype(np.float32, order="C")  # one conversion pass, then in-place arithmetic
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    if stack.dtype.kind == "f":
        np.nan_to_num(out, copy=False, nan=0.0)  # NaN voxels (float volumes only) become 0
    return out


def resize_images(stack: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a float32 (n, h, w) stack to (n, size, size), ``align_corners=False``.

    Shrinking by at most 2x uses plain bilinear interpolation (every source pixel already contributes to
    an output pixel); shrinking by more than 2x along an axis uses torch's anti-aliased bilinear filter
    (triangle kernel widened by the scale), which is 3-5x slower but keeps small structures and noise
    from aliasing."""
    n, h, w = stack.shape
    if (h, w) == (size, size):
        return stack
    t = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)).unsqueeze(1)
    antialias = h > 2 * size or w > 2 * size
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    return out.squeeze(1).clamp_(0.0, 1.0).numpy()


def to_float16(x: np.ndarray) -> np.ndarray:
    """float32 -> float16 through torch (vectorised; numpy's conversion is ~10x slower), same rounding."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).half().numpy()
