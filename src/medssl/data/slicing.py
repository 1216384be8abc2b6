"""Slicing: 3D (or 4D) cases -> one dataset's 2D slice store (format: :mod:`medssl.data.store`).

Per case, :func:`slice_dataset`

1. reads image and label with SimpleITK. A file that cannot be read, or a NIfTI file whose data are shorter
   than its header promises (ITK silently zero-fills truncated ``.nii``/``.nii.gz`` files, so this is checked
   here), raises :class:`SlicingError` naming the file. Image and label must agree in size, spacing, origin
   and direction (tolerances :data:`SPACING_RTOL`, :data:`ORIGIN_TOL`, :data:`DIRECTION_ATOL`), else
   :class:`SlicingError` names the case. Header-level checks of all cases run before any volume is read.
2. reduces 4D data to 3D: ``case.channel`` picks a channel of a multi-channel image, stored either as the 4th
   NIfTI dimension of a scalar image (MSD prostate) or as the components of a vector-pixel image;
   ``case.frame`` picks one time frame of a cine image *and* of its label (a 3D label is used as is).
   A 4th dimension of size 1 is dropped; any other unresolved 4th dimension is an error; ``channel`` is
   ignored for a 3D scalar image.
3. reorients to ONE canonical orientation, **LPS** in ITK/DICOM terms: index axes i, j, k run towards the
   patient's Left, Posterior and Superior; the direction matrix becomes (the closest permutation/flip of)
   the identity. This is what ``SimpleITK.DICOMOrient(image, "LPS")`` does (checked by the tests); here it
   is done with transposed/flipped numpy *views* of the voxel array, so no copy of the volume is made.
   With the canonical numpy array ``a[k, j, i]`` (numpy order is z, y, x) the slice axes are:

   ==============  ========================  ======================  ============================
   slice_axis      slice index s (order)     slice rows (top->down)  slice columns (left->right)
   ==============  ========================  ======================  ============================
   axial           k: inferior -> superior   j: anterior->posterior  i: patient right -> left
   coronal         j: anterior -> posterior  k: superior->inferior   i: patient right -> left
   sagittal        i: right -> left          k: superior->inferior   j: anterior -> posterior
   acquisition     3rd index axis of the     2nd index axis of the   1st index axis of the file
                   file (no reorientation)   file
   ==============  ========================  ======================  ============================

   Axial slices are thus in the usual radiological display (anterior up, patient's right on the left);
   coronal and sagittal slices have superior up. A volume whose direction matrix is flipped or permuted
   (with voxels rearranged so that physical space is the same) gives exactly the same slices.
4. normalises intensities to [0, 1] per modality: CT is clipped to ``settings.ct_window`` (HU) and scaled
   linearly; MRI is clipped to the ``settings.mri_percentiles`` (percent, exactly ``numpy.percentile``'s
   linear interpolation over every voxel of the 3D volume, see :func:`percentiles`) and scaled. A constant
   volume maps to 0; NaN voxels of float volumes map to 0.
5. resizes every slice to ``image_size`` x ``image_size`` (aspect ratio not kept): images with bilinear
   interpolation (``torch.nn.functional.interpolate`` on a stack of slices at once, ``align_corners=False``;
   anti-aliased when shrinking by more than 2x, see :func:`resize_images`), labels with centred nearest
   neighbour (index selection, so label values stay a subset of the original ones).
6. remaps source label values to contiguous class ids with ``spec.label_map()`` through a lookup table
   (unlisted values, negative ones included, become 0).

Warnings (logger ``medssl.data``; slicing goes on): label values outside the class map (one message per
dataset naming the values and the cases holding them), a case whose label holds no voxel of any class, and
an image holding NaN/Inf voxels (counted; NaN become 0, Inf are clipped like any value outside the range;
ITK's NIfTI reader already reads NaN/Inf as 0, so this concerns MetaImage/NRRD sources).

Rows follow the order of cases sorted by case id, then the slice index; slices of a case are contiguous.
``index.csv`` has ``row, case, patient, slice, n_slices, fg, c1..cK`` (0/1 flags computed on the stored,
resized labels). ``meta.json`` holds the keys listed in :mod:`medssl.data.store` plus ``orientation``,
``cases`` (per case: patient, first row, slice count, source size and spacing, intensity range used) and
``spacing`` (per case: ``[between slices, row, column]`` in mm of the *stored* 2D pixels, after resizing,
e.g. for HD95 computed on the store).

Memory: a first pass reads only headers (``ImageFileReader.ReadImageInformation``) to count slices and check
geometry; the output ``.npy`` files are then written with their final header and filled case by case with
plain sequential writes (not through a memory map, whose dirty pages would count in the process' resident
set). Within a case, slices are normalised, resized and written in slabs of about :data:`SLAB_VOXELS`
source voxels, so the peak memory is one volume (image and label as stored in the file, plus SimpleITK's
own read buffer while reading) and a slab's float32 working copy, independent of the number of cases.
The store is written into a hidden temporary folder beside ``out_dir`` and renamed onto it at the end
(:func:`medssl.io.atomic_dir`); such folders left by a killed job are removed by the next slicing of the same
store.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from medssl.config import DatasetSettings
from medssl.data.cases import Case
from medssl.data.orientation import canonical_axes
from medssl.data.store import IMAGES, INDEX, LABELS, META
from medssl.io import atomic_dir

log = logging.getLogger("medssl.data")

__all__ = ["SlicingError", "slice_dataset", "read_case", "normalise", "resize_images",
           "resize_labels", "remap_labels", "percentiles", "slice_stack", "CANONICAL_ORIENTATION"]

CANONICAL_ORIENTATION = "LPS"
SPACING_RTOL = 1e-3  # relative spacing difference allowed between image and label
ORIGIN_TOL = 0.05  # origin difference allowed, as a fraction of the smallest voxel spacing
DIRECTION_ATOL = 1e-3  # direction cosine difference allowed


class SlicingError(RuntimeError):
    """A case cannot be sliced: unreadable/truncated file (message names the file) or inconsistent case
    (message names the case)."""


# --------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class _Header:
    """Geometry of the 3D volume a file yields once channel/frame are picked."""

    size: tuple[int, int, int]  # ITK order (i, j, k)
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray  # 3x3, column c = physical direction of index axis c
    extract: tuple[list[int], list[int]] | None  # (index, size) for ImageFileReader, 4D -> 3D
    component: int | None  # vector-pixel image: component to keep


def _nifti_expected_bytes(path: Path) -> int | None:
    """Bytes of an uncompressed NIfTI file according to its header (vox_offset + data), or None."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(540)
    if len(head) < 348:
        raise SlicingError(f"{path}: truncated NIfTI header ({len(head)} bytes)")
    for endian in "<>":
        sizeof_hdr = struct.unpack(endian + "i", head[:4])[0]
        if sizeof_hdr == 348:  # NIfTI-1
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            vox_offset = struct.unpack(endian + "f", head[108:112])[0]
            break
        if sizeof_hdr == 540:  # NIfTI-2
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            vox_offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7:
        return None
    n = 1
    for d in dims[1: ndim + 1]:
        n *= max(int(d), 1)
    return int(vox_offset) + n * int(bitpix) // 8


def _check_complete(path: Path) -> None:
    """Raise if a NIfTI file holds fewer data bytes than its header says (ITK would zero-fill silently).

    Uncompressed: compare the file size. Gzipped: compare the gzip trailer's ISIZE (uncompressed size mod
    2**32) and only if it disagrees (truncated file, or a multi-member gzip) decompress the whole file to
    be sure. Other formats are left to ITK.
    """
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return
    try:
        expected = _nifti_expected_bytes(path)
        if expected is None:
            return
        if name.endswith(".nii"):
            if path.stat().st_size < expected:
                raise SlicingError(f"{path}: truncated NIfTI file ({path.stat().st_size} bytes, header "
                                   f"promises {expected})")
            return
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", f.read(4))[0]
        if isize == expected % 2**32:
            return
        total = 0
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                total += len(chunk)
        if total < expected:
            raise SlicingError(f"{path}: truncated NIfTI file ({total} bytes uncompressed, header promises "
                               f"{expected})")
    except SlicingError:
        raise
    except (OSError, EOFError, struct.error, gzip.BadGzipFile) as err:
        raise SlicingError(f"{path}: corrupt or truncated file ({type(err).__name__}: {err})") from err


def _read_header(path: Path, case: Case, *, is_label: bool) -> _Header:
    path = Path(path)
    if not path.exists():
        raise SlicingError(f"{path}: file not found (case {case.case_id})")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise SlicingError(f"{path}: cannot read image header ({err})") from err
    dim = reader.GetDimension()
    size = list(reader.GetSize())
    ncomp = reader.GetNumberOfComponents()
    what = "label" if is_label else "image"
    if dim not in (3, 4):
        raise SlicingError(f"case {case.case_id}: {what} {path} is {dim}D; 3D or 4D expected")
    component = None
    if ncomp > 1:
        if is_label:
            raise SlicingError(f"case {case.case_id}: label {path} has {ncomp} components per pixel")
        if case.channel is None:
            raise SlicingError(f"case {case.case_id}: image {path} has {ncomp} channels but no channel is "
                               f"selected")
        if not 0 <= case.channel < ncomp:
            raise SlicingError(f"case {case.case_id}: channel {case.channel} out of range ({ncomp} channels)")
        component = case.channel
    extract = None
    if dim == 4:
        if is_label:
            pick = case.frame
        elif case.frame is not None and case.channel is not None and component is None:
            raise SlicingError(f"case {case.case_id}: both channel and frame set for 4D image {path}")
        else:
            pick = case.frame if case.frame is not None else (case.channel if component is None else None)
        if pick is None:
            if size[3] != 1:
                raise SlicingError(f"case {case.case_id}: {what} {path} is 4D ({size[3]} volumes) but no "
                                   f"{'frame' if is_label else 'channel or frame'} is selected")
            pick = 0
        if not 0 <= pick < size[3]:
            raise SlicingError(f"case {case.case_id}: index {pick} out of range for 4D {what} {path} "
                               f"({size[3]} volumes)")
        extract = ([0, 0, 0, int(pick)], size[:3] + [0])
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
    return _Header(tuple(size[:3]), tuple(reader.GetSpacing()[:3]), tuple(reader.GetOrigin()[:3]),
                   direction, extract, component)


def _check_geometry(case: Case, img: _Header, lab: _Header) -> None:
    problems = []
    if img.size != lab.size:
        problems.append(f"size {img.size} vs {lab.size}")
    sp_i, sp_l = np.array(img.spacing), np.array(lab.spacing)
    if not np.allclose(sp_i, sp_l, rtol=SPACING_RTOL, atol=0):
        problems.append(f"spacing {img.spacing} vs {lab.spacing}")
    if np.any(np.abs(np.array(img.origin) - np.array(lab.origin)) > ORIGIN_TOL * sp_i.min()):
        problems.append(f"origin {img.origin} vs {lab.origin}")
    if not np.allclose(img.direction, lab.direction, rtol=0, atol=DIRECTION_ATOL):
        problems.append(f"direction {img.direction.ravel().round(4).tolist()} vs "
                        f"{lab.direction.ravel().round(4).tolist()}")
    if problems:
        raise SlicingError(f"case {case.case_id}: image {case.image} and label {case.label} disagree in "
                           + "; ".join(problems))


def _read_volume(path: Path, header: _Header) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if header.extract is not None:
        reader.SetExtractIndex(header.extract[0])
        reader.SetExtractSize(header.extract[1])
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise SlicingError(f"{path}: cannot read image ({err})") from err
    if header.component is not None:
        image = sitk.VectorIndexSelectionCast(image, header.component)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SlicingError(f"{path}: expected a 3D scalar volume after channel/frame selection, got "
                           f"{image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} components")
    return image


def read_case(case: Case) -> tuple[sitk.Image, sitk.Image]:
    """Read and check one case: the 3D scalar image and label (channel/frame picked, geometry checked)."""
    img_h = _read_header(Path(case.image), case, is_label=False)
    lab_h = _read_header(Path(case.label), case, is_label=True)
    _check_geometry(case, img_h, lab_h)
    _check_complete(Path(case.image))
    _check_complete(Path(case.label))
    return _read_volume(Path(case.image), img_h), _read_volume(Path(case.label), lab_h)


# --------------------------------------------------------------------------------------------------
# Orientation and slicing


_AXIS_PHYS = {"sagittal": 0, "coronal": 1, "axial": 2}  # LPS physical axis normal to the slices


def _slice_count(header: _Header, slice_axis: str) -> int:
    if slice_axis == "acquisition":
        return header.size[2]
    if slice_axis not in _AXIS_PHYS:
        raise ValueError(f"unknown slice_axis {slice_axis!r}")
    phys, _ = canonical_axes(header.direction)
    return header.size[phys.index(_AXIS_PHYS[slice_axis])]


def slice_stack(array: np.ndarray, direction, slice_axis: str) -> np.ndarray:
    """View of a volume array (numpy order k, j, i as from ``sitk.GetArrayViewFromImage``) as a stack of
    2D slices (s, rows, cols) in the canonical orientation (see module docstring). No copy is made."""
    if slice_axis == "acquisition":
        return array
    phys, flips = canonical_axes(direction)
    # numpy axis a of the source is index axis 2 - a; canonical numpy axis b is physical axis 2 - b
    order = [2 - phys.index(2 - b) for b in range(3)]
    canon = array.transpose(order)
    for b in range(3):
        if flips[phys.index(2 - b)]:
            canon = np.flip(canon, axis=b)
    if slice_axis == "axial":  # (k, j, i)
        return canon
    if slice_axis == "coronal":  # (j, k flipped, i)
        return np.flip(canon.transpose(1, 0, 2), axis=1)
    if slice_axis == "sagittal":  # (i, k flipped, j)
        return np.flip(canon.transpose(2, 0, 1), axis=1)
    raise ValueError(f"unknown slice_axis {slice_axis!r}")


def _stack_spacing(spacing, direction, slice_axis: str) -> tuple[float, float, float]:
    """Spacing (between slices, rows, cols) of a stack from :func:`slice_stack`, before resizing."""
    sx, sy, sz = spacing
    if slice_axis == "acquisition":
        return sz, sy, sx
    phys, _ = canonical_axes(direction)
    by_phys = [spacing[phys.index(p)] for p in range(3)]  # spacing along L, P, S
    return {"axial": (by_phys[2], by_phys[1], by_phys[0]),
            "coronal": (by_phys[1], by_phys[2], by_phys[0]),
            "sagittal": (by_phys[0], by_phys[2], by_phys[1])}[slice_axis]


# --------------------------------------------------------------------------------------------------
# Intensities and labels


def intensity_range(volume: np.ndarray, modality: str, *, ct_window, mri_percentiles) -> tuple[float, float]:
    """The (low, high) intensities mapped to 0 and 1: the CT window, or the MRI volume's percentiles."""
    if modality == "CT":
        lo, hi = ct_window
    elif modality == "MRI":
        lo, hi = percentiles(volume, mri_percentiles)
    else:
        raise ValueError(f"unknown modality {modality!r}")
    return float(lo), float(hi)


_HIST_CHUNK = 1 << 20


def _order_stats_hist(flat: np.ndarray, ranks: list[int]) -> dict[int, float]:
    """Values of rank ``r`` (0-based, ascending) of an 8/16-bit integer array, from a histogram built in
    chunks (no full-size temporary)."""
    unsigned = np.dtype(f"u{flat.dtype.itemsize}")
    offset = 1 << (8 * flat.dtype.itemsize - 1) if flat.dtype.kind == "i" else 0
    counts = np.zeros(1 << (8 * flat.dtype.itemsize), dtype=np.int64)
    for i in range(0, flat.size, _HIST_CHUNK):
        chunk = flat[i:i + _HIST_CHUNK]
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


# --------------------------------------------------------------------------------------------------
# The store


SLAB_VOXELS = 1 << 20  # slices are normalised/resized/written in slabs of about this many source voxels


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
            for i in range(0, flat.size, _HIST_CHUNK):
                counts += np.bincount(flat[i:i + _HIST_CHUNK].astype(np.int64) - lo, minlength=counts.size)
            return np.flatnonzero(counts) + lo
    found: set = set()
    for i in range(0, flat.size, _HIST_CHUNK):
        chunk = flat[i:i + _HIST_CHUNK]
        found.update(np.unique(np.rint(chunk) if chunk.dtype.kind == "f" else chunk).tolist())
    return np.array(sorted(v for v in found if v == v), dtype=np.float64)  # NaN labels are dropped


def _check_values(case: Case, image: np.ndarray, labels: np.ndarray, label_map: dict[int, int],
                  unmapped: dict) -> None:
    """Warn about an empty label and non-finite image voxels; collect label values outside the class map
    into ``unmapped`` (value -> case ids), reported once per dataset by :func:`slice_dataset`."""
    values = label_values(labels)
    for v in values:
        v = int(v) if float(v).is_integer() else float(v)
        if v != 0 and v not in label_map:
            unmapped.setdefault(v, []).append(case.case_id)
    if not any(label_map.get(int(v), 0) > 0 for v in values if float(v).is_integer()):
        log.warning("case %s: the label %s is empty: no voxel of any class (values found: %s)", case.case_id,
                    case.label, ", ".join(f"{v:g}" for v in values[:10]) or "none")
    if image.dtype.kind == "f":
        n_nan = n_inf = 0
        flat = image.reshape(-1)
        for i in range(0, flat.size, _HIST_CHUNK):
            chunk = flat[i:i + _HIST_CHUNK]
            n_nan += int(np.isnan(chunk).sum())
            n_inf += int(np.isinf(chunk).sum())
        if n_nan or n_inf:
            log.warning("case %s: the image %s holds %d non-finite voxels (%d NaN, %d Inf); NaN become 0, Inf "
                        "are clipped to the intensity range", case.case_id, case.image, n_nan + n_inf, n_nan,
                        n_inf)


def _slice_case(case: Case, img_h: _Header, lab_h: _Header, n: int, settings: DatasetSettings,
                lut: np.ndarray, fi, fl, unmapped: dict | None = None
                ) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
    """Read one case and append its slices to the open image/label files, a slab of slices at a time (so
    the float32 working copy is a slab, not the volume). Returns the per-slice class presence
    (n, K) bool, the source slice shape and the intensity range mapped to [0, 1]. Bad values are warned
    about (:func:`_check_values`; label values outside the class map are collected in ``unmapped``)."""
    size, axis = settings.image_size, settings.slice_axis
    image = _read_volume(Path(case.image), img_h)
    label = _read_volume(Path(case.label), lab_h)
    arr = sitk.GetArrayViewFromImage(image)
    lab_arr = sitk.GetArrayViewFromImage(label)
    _check_values(case, arr, lab_arr, settings.spec.label_map(), {} if unmapped is None else unmapped)
    lo, hi = intensity_range(arr, settings.spec.modality, ct_window=settings.ct_window,
                             mri_percentiles=settings.mri_percentiles)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SlicingError(f"case {case.case_id}: non-finite intensities in {case.image} (range {lo}, {hi})")
    stack = slice_stack(arr, img_h.direction, axis)
    lab_stack = slice_stack(lab_arr, img_h.direction, axis)
    if stack.shape[0] != n:
        raise SlicingError(f"case {case.case_id}: {stack.shape[0]} slices read, the header said {n}")
    h, w = stack.shape[1:]
    n_fg = len(settings.spec.classes)
    present = np.zeros((n, n_fg), dtype=bool)
    step = max(1, SLAB_VOXELS // max(1, h * w))
    for s0 in range(0, n, step):
        s1 = min(n, s0 + step)
        to_float16(resize_images(normalise(stack[s0:s1], lo, hi), size)).tofile(fi)
        labs = remap_labels(resize_labels(lab_stack[s0:s1], size), lut)
        labs.tofile(fl)
        for c in range(1, n_fg + 1):
            present[s0:s1, c - 1] = (labs == c).any(axis=(1, 2))
    del arr, lab_arr, stack, lab_stack  # views into the SimpleITK images: drop them first
    del image, label
    return present, (h, w), (lo, hi)


def _npy_header(f, dtype, shape) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})


def slice_dataset(settings: DatasetSettings, cases: list[Case], out_dir: Path, *, synthetic: bool) -> None:
    """Write the slice store of ``cases`` to ``out_dir`` (atomically; see the module docstring)."""
    spec = settings.spec
    out_dir = Path(out_dir)
    size = int(settings.image_size)
    axis = settings.slice_axis
    if axis not in ("axial", "coronal", "sagittal", "acquisition"):
        raise ValueError(f"{spec.name}: unknown slice_axis {axis!r}")
    if not cases:
        raise ValueError(f"{spec.name}: no cases to slice")
    cases = sorted(cases, key=lambda c: c.case_id)
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{spec.name}: duplicate case ids {dup}")
    lut = label_lut(spec.label_map())
    n_fg = len(spec.classes)

    # pass 1: headers only -> slice counts, geometry checks, truncated files (fail before any heavy work)
    headers = []
    for case in cases:
        img_h = _read_header(Path(case.image), case, is_label=False)
        lab_h = _read_header(Path(case.label), case, is_label=True)
        _check_geometry(case, img_h, lab_h)
        _check_complete(Path(case.image))
        _check_complete(Path(case.label))
        headers.append((img_h, lab_h))
    counts = [_slice_count(h, axis) for h, _ in headers]
    total = int(sum(counts))
    if total == 0:
        raise ValueError(f"{spec.name}: the cases hold no slices")

    with atomic_dir(out_dir) as tmp:  # a hidden folder beside out_dir, renamed onto it at the end
        rows: list[pd.DataFrame] = []
        cases_meta: dict[str, dict] = {}
        spacing_meta: dict[str, list[float]] = {}
        with open(tmp / IMAGES, "wb") as fi, open(tmp / LABELS, "wb") as fl:
            _npy_header(fi, np.float16, (total, size, size))
            _npy_header(fl, np.uint8, (total, size, size))
            off_i, off_l = fi.tell(), fl.tell()
            start = 0
            unmapped: dict = {}
            for case, (img_h, lab_h), n in zip(cases, headers, counts):
                present, (h, w), (lo, hi) = _slice_case(case, img_h, lab_h, n, settings, lut, fi, fl,
                                                        unmapped)
                fg = present.any(axis=1)
                part = {"row": np.arange(start, start + n), "case": case.case_id, "patient": case.patient_id,
                        "slice": np.arange(n), "n_slices": n, "fg": fg.astype(np.uint8)}
                part.update({f"c{k}": present[:, k - 1].astype(np.uint8) for k in range(1, n_fg + 1)})
                rows.append(pd.DataFrame(part))
                ds, dr, dc = _stack_spacing(img_h.spacing, img_h.direction, axis)
                spacing_meta[case.case_id] = [ds, dr * h / size, dc * w / size]
                cases_meta[case.case_id] = {
                    "patient": case.patient_id, "first_row": start, "n_slices": n,
                    "source_size": list(img_h.size), "source_spacing": list(img_h.spacing),
                    "slice_shape": [h, w], "intensity_range": [lo, hi],
                    **({"channel": case.channel} if case.channel is not None else {}),
                    **({"frame": case.frame} if case.frame is not None else {}),
                }
                start += n
                log.info("%s: case %s (patient %s): %d slices of %dx%d, %d with foreground, intensity range "
                         "[%g, %g]", spec.name, case.case_id, case.patient_id, n, h, w, int(fg.sum()), lo, hi)
            if unmapped:
                where = sorted({c for ids in unmapped.values() for c in ids})
                log.warning("%s: label values %s are not in the class map (%s) and become background; found "
                            "in %d case(s): %s", spec.name, ", ".join(f"{v:g}" for v in sorted(unmapped)),
                            ", ".join(f"{k}->{v}" for k, v in sorted(spec.label_map().items())), len(where),
                            ", ".join(where[:10]) + (", ..." if len(where) > 10 else ""))
            for f, name, itemsize, offset in ((fi, IMAGES, 2, off_i), (fl, LABELS, 1, off_l)):
                if f.tell() != offset + total * size * size * itemsize:
                    raise SlicingError(f"{spec.name}: {name} holds {f.tell() - offset} data bytes, expected "
                                       f"{total * size * size * itemsize}")

        pd.concat(rows, ignore_index=True).to_csv(tmp / INDEX, index=False)
        if settings.spec.modality == "CT":
            norm = {"method": "ct_window", "window": [float(v) for v in settings.ct_window]}
        else:
            norm = {"method": "mri_percentiles", "percentiles": [float(v) for v in settings.mri_percentiles]}
        norm["resize"] = {"image": "bilinear (anti-aliased when shrinking > 2x)", "label": "nearest"}
        meta = {
            "dataset": spec.name, "title": spec.title, "modality": spec.modality,
            "classes": spec.class_names, "n_classes": spec.n_classes, "image_size": size,
            "slice_axis": axis, "orientation": CANONICAL_ORIENTATION if axis != "acquisition" else "acquisition",
            "synthetic": bool(synthetic), "task": spec.paper_task, "group": spec.paper_group,
            "n_cases": len(cases), "n_patients": len({c.patient_id for c in cases}), "n_slices": total,
            "normalisation": norm, "spacing": spacing_meta, "cases": cases_meta,
        }
        with open(tmp / META, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
    n_fg_slices = int(sum(int(r["fg"].sum()) for r in rows))
    log.info("%s: %d cases, %d slices (%d with foreground) of %dx%d written to %s", spec.name, len(cases), total,
             n_fg_slices, size, size, out_dir)
