"""Orientation of a volume from its header: which physical axis each index axis runs along.

:func:`canonical_axes` maps a direction matrix to the LPS axes (the slicer reorients every volume to LPS with
it, :mod:`medssl.data.slicing`); :func:`acquired_plane` reads the plane a scan was acquired in from its header.

``DatasetSpec.acquired_plane`` (MM-WHS MRI: paper B's 14 sagittal scans of 20) filters the listed cases of
every layout, twins included (:func:`medssl.data.listers.list_cases`), by :func:`acquired_plane` of their
image header. The plane a scan was acquired in is not stored as such in NIfTI; it is read from the geometry:
the slice direction of an MR acquisition is its coarsest one (MM-WHS MRI is reconstructed at about 1 mm
in-plane and 1-1.6 mm between slices), so the index axis with the largest spacing is the slice axis, and when
the three spacings agree within :data:`ISOTROPIC_RTOL` the file's third index axis (the stored slice order)
is. That axis runs along a physical axis (:func:`canonical_axes`): L-R = sagittal, A-P = coronal (paper B's
"frontal"), S-I = axial. Reading the header costs no voxel reads.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

ISOTROPIC_RTOL = 0.05  # spacings within 5 % of each other count as isotropic
PLANES = ("sagittal", "coronal", "axial")  # plane normal to physical (LPS) axis 0, 1, 2

__all__ = ["ISOTROPIC_RTOL", "PLANES", "acquired_plane", "canonical_axes"]


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
    import SimpleITK as sitk  # imported on use: listing cases of most datasets needs no image reader

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise RuntimeError(f"{image}: cannot read the image header ({err})") from err
    dim = reader.GetDimension()
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
    spacing = np.asarray(reader.GetSpacing()[:3], dtype=float)
    axis = int(np.argmax(spacing))
    others = np.delete(spacing, axis)
    if spacing[axis] <= others.max() * (1 + ISOTROPIC_RTOL):
        axis = 2  # isotropic: the stored slice order
    phys, _ = canonical_axes(direction)
    return PLANES[phys[axis]]
