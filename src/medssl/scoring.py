"""Segmentation and denoising metrics (numpy/scipy, no torch).

Conventions (shared with the metrics JSON described in :mod:`medssl.train.evaluate`):

* Labels are integer class ids, 0 = background, ``1..n_classes-1`` = foreground classes.
* A class absent from both prediction and ground truth has an undefined Dice/IoU: the functions return NaN
  for it (``null`` in JSON) and :func:`nanmean_foreground` leaves it out of means. Means average foreground
  classes only (class 0 is never part of ``mean_dice``/``miou``).
* HD95 is the 95th percentile of the pooled symmetric surface distances (both directions stacked, as in
  medpy's ``hd95``), computed with ``scipy.ndimage`` Euclidean distance transforms. Distances are in the
  units of ``spacing`` (per axis; default 1 = voxels of the arrays given). A class empty in the prediction or
  in the ground truth has an undefined HD95 (NaN). One truth for its unit: the evaluation passes the store's
  per-case spacing of the *stored* grid (``[between slices, row, column]`` mm: the source pixel size times
  source / stored size in-plane, the slice spacing through-plane; written by the slicer for every case), so
  HD95 is in **mm**, and writes ``hd95_units`` (:data:`HD95_UNITS`) into the metrics JSON; a store without
  spacing for a test case gives voxels, said so in the same key. Tables print the unit those files state.
* PSNR = 10·log10(data_range² / MSE) in dB; MSE = 0 gives ``inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage


HD95_UNITS = {
    "mm": "mm (each test case's spacing of the stored slice grid: resized pixels in-plane, the slice spacing "
          "through-plane)",
    "voxels": "voxels of the stored slice grid (one resized pixel in-plane, one slice through-plane; the store "
              "gives no spacing for some test case)",
}


def hd95_units_note(units) -> str:
    """How to read the HD95 of metrics files whose ``hd95_units`` are ``units`` (e.g. for a table footnote)."""
    found = sorted({str(u) for u in units if u})
    if not found:
        return "in the units of the stored slice grid's spacing (the metrics files do not say which)"
    return " and ".join(f"in {HD95_UNITS.get(u, u)}" for u in found) + (
        " (mixed across the metrics files)" if len(found) > 1 else "")


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[t, p]`` = number of pixels with ground truth ``t`` predicted as ``p`` (int64, n×n)."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target differ in size: {pred.shape} vs {target.shape}")
    if pred.size and (pred.min() < 0 or pred.max() >= n_classes or target.min() < 0
                      or target.max() >= n_classes):
        raise ValueError(f"labels outside 0..{n_classes - 1}")
    return np.bincount(target * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def dice_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class Dice 2TP/(2TP+FP+FN); NaN where the class is absent from prediction and ground truth."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    denom = conf.sum(0) + conf.sum(1)  # (TP+FP) + (TP+FN)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU TP/(TP+FP+FN); NaN where the class is absent from prediction and ground truth."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)


def nanmean_foreground(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the foreground entries (index ≥ 1) that are defined; NaN if none is."""
    fg = np.asarray(values, dtype=np.float64)[1:]
    fg = fg[np.isfinite(fg)]
    return float(fg.mean()) if fg.size else math.nan


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    eroded = ndimage.binary_erosion(mask, structure=structure, border_value=0)
    return mask & ~eroded


def surface_distances(a: np.ndarray, b: np.ndarray, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each surface voxel of ``a`` to the surface of ``b``, and from ``b``'s to ``a``'s."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    sa, sb = _surface(a), _surface(b)
    dt_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    dt_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return dt_b[sa], dt_a[sb]


def hd95_binary(pred: np.ndarray, target: np.ndarray, spacing=None) -> float:
    """HD95 between two binary masks (NaN if either is empty)."""
    pred = np.asarray(pred, dtype=bool)
    target = np.asarray(target, dtype=bool)
    if not pred.any() or not target.any():
        return math.nan
    d_pt, d_tp = surface_distances(pred, target, spacing)
    return float(np.percentile(np.concatenate([d_pt, d_tp]), 95))


def hd95_per_class(pred: np.ndarray, target: np.ndarray, n_classes: int, spacing=None) -> np.ndarray:
    """HD95 of every class id ``0..n_classes-1`` (index 0 = background, reported for completeness)."""
    return np.array([hd95_binary(pred == c, target == c, spacing) for c in range(n_classes)])


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))


def psnr_from_mse(mse_value: float, data_range: float = 1.0) -> float:
    if mse_value <= 0:
        return math.inf
    return float(10.0 * math.log10(data_range ** 2 / mse_value))


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB."""
    return psnr_from_mse(mse(pred, target), data_range)


def segmentation_summary(conf: np.ndarray, class_names: Sequence[str]) -> dict:
    """Dice/IoU per foreground class (name -> value or None) and their means, from a confusion matrix."""
    dice = dice_from_confusion(conf)
    iou = iou_from_confusion(conf)
    return {
        "dice": {n: to_json_float(dice[i + 1]) for i, n in enumerate(class_names)},
        "iou": {n: to_json_float(iou[i + 1]) for i, n in enumerate(class_names)},
        "mean_dice": to_json_float(nanmean_foreground(dice)),
        "miou": to_json_float(nanmean_foreground(iou)),
    }


def to_json_float(x) -> float | None:
    """A float for JSON: NaN -> None (``null``); ``inf`` kept as a large finite sentinel is avoided: None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
