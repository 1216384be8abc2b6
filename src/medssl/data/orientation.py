"""Orientation of a volume from its header, and its 2D slices in one canonical orientation.

:func:`canonical_axes` maps a direction matrix to the LPS axes; :func:`acquired_plane` reads the plane a scan
was acquired in from its header; :func:`slice_stack` (with :func:`slice_count` and :func:`stack_spacing`)
gives the slices of a volume as the slicer (:mod:`medssl.data.slicing`) stores them.

Canonical orientation: every volume is reoriented to ONE orientation, **LPS** in ITK/DICOM terms
(:data:`CANONICAL_ORIENTATION`): index axes i, j, k run towards the patient's Left, Posterior and Superior;
the direction matrix becomes (the closest permutation/flip of) the identity. This is what
``SimpleITK.DICOMOrient(image, "LPS")`` does (checked by the tests); here it is done with transposed/flipped
numpy *views* of the voxel array, so no copy of the volume is made. With the canonical numpy array
``a[k, j, i]`` (numpy order is z, y, x) the slice axes are:

==============  ========================  ======================  ============================
slice_axis      slice index s (order)     slice rows (top->down)  slice columns (left->right)
==============  ========================  ======================  ============================
axial           k: inferior -> superior   j: anterior->posterior  i: patient right -> left
coronal         j: anterior -> posterior  k: superior->inferior   i: patient right -> left
sagittal        i: right -> left          k: superior->inferior   j: anterior -> posterior
acquisition     3rd index axis of the     2nd index axis of the   1st index axis of the file
                file (no reorientation)   file
==============  ========================  ======================  ============================

Axial slices are thus in the usual radiological display (anterior up, patient's right on the left); coronal
and sagittal slices have superior up. A volume whose direction matrix is flipped or permuted (with voxels
rearranged so that physical space is the same) gives exactly the same slices.

Acquisition plane: ``DatasetSpec.acquired_plane`` (MM-WHS MRI: paper B's 14 sagittal scans of 20) filters the
listed cases of every layout, twins included (:func:`medssl.data.listers.list_cases`), by
:func:`acquired_plane` of their image header. The plane a scan was acquired in is not stored as such in
NIfTI; it is read from the geometry: the slice direction of an MR acquisition is its coarsest one (MM-WHS MRI
is reconstructed at about 1 mm in-plane and 1-1.6 mm between slices), so the index axis with the largest
spacing is the slice axis, and when the three spacings agree within :data:`ISOTROPIC_RTOL` the file's third
index axis (the stored slice order) is. That axis runs along a physical axis (:func:`canonical_axes`): L-R =
sagittal, A-P = coronal (paper B's "frontal"), S-I = axial. Reading the header costs no voxel reads.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

ISOTROPIC_RTOL = 0.05  # spacings within 5 % of each other count as isotropic
PLANES = ("sagittal", "coronal", "axial")  # plane normal to physical (LPS) axis 0, 1, 2

CANONICAL_ORIENTATION = "LPS"
SLICE_AXES = ("axial", "coronal", "sagittal", "acquisition")
_AXIS_PHYS = {"sagittal": 0, "coronal": 1, "axial": 2}  # LPS physical axis normal to the slices

__all__ = ["CANONICAL_ORIENTATION", "ISOTROPIC_RTOL", "PLANES", "SLICE_AXES", "acquired_plane",
           "canonical_axes", "slice_count", "slice_stack", "stack_spacing"]


def canonical_axes(direction) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For index axes c = 0, 1, 2 (i, j, k): the physical LPS axis each runs along and whether it runs
    backwards (towards R, A or I). Oblique matrices take the permutation with the largest |cosines|."""
    d = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    best = max(itertools.permutations(range(3)), key=lambda p: sum(d[p[c], c] for c in range(3)))
    signs = np.asarray(direction, dtype=float).reshape(3, 3)
    flips = tuple(bool(signs[best[c], c] < 0) for c in range(3))
    return tuple(best), flips


def acquired_plane(image: Path) -> str:
    """``"sagittal"``, ``"coronal"`` or ``"axial"``: the plane ``image`` was acquired in (module docstring)."""
    # imported on use (it imports SimpleITK): listing cases of most datasets needs no image reader
    from medssl.data.nifti import header_direction, image_information

    reader = image_information(image)
    direction = header_direction(reader)
    spacing = np.asarray(reader.GetSpacing()[:3], dtype=float)
    axis = int(np.argmax(spacing))
    others = np.delete(spacing, axis)
    if spacing[axis] <= others.max() * (1 + ISOTROPIC_RTOL):
        axis = 2  # isotropic: the stored slice order
    phys, _ = canonical_axes(direction)
    return PLANES[phys[axis]]


def slice_count(size, direction, slice_axis: str) -> int:
    """Number of slices along ``slice_axis`` of a volume of ``size`` (ITK order i, j, k) and ``direction``."""
    if slice_axis == "acquisition":
        return size[2]
    if slice_axis not in _AXIS_PHYS:
        raise ValueError(f"unknown slice_axis {slice_axis!r}")
    phys, _ = canonical_axes(direction)
    return size[phys.index(_AXIS_PHYS[slice_axis])]


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


def stack_spacing(spacing, direction, slice_axis: str) -> tuple[float, float, float]:
    """Spacing (between slices, rows, cols) of a stack from :func:`slice_stack`, before resizing."""
    sx, sy, sz = spacing
    if slice_axis == "acquisition":
        return sz, sy, sx
    phys, _ = canonical_axes(direction)
    by_phys = [spacing[phys.index(p)] for p in range(3)]  # spacing along L, P, S
    return {"axial": (by_phys[2], by_phys[1], by_phys[0]),
            "coronal": (by_phys[1], by_phys[2], by_phys[0]),
            "sagittal": (by_phys[0], by_phys[2], by_phys[1])}[slice_axis]
