"""Reading a case's volumes: image headers, integrity and geometry checks, the 3D scalar volumes.

:func:`read_case` reads one :class:`~medssl.data.cases.Case` with SimpleITK, in two steps the slicer
(:mod:`medssl.data.slicing`) also runs separately, headers of all cases first:

1. :func:`case_headers` reads the image and label headers only (:func:`read_header`; no voxel is read) and
   checks them. A file that cannot be read, or a NIfTI file whose data are shorter than its header promises
   (ITK silently zero-fills truncated ``.nii``/``.nii.gz`` files, so :func:`check_complete` checks it),
   raises :class:`SlicingError` naming the file. Image and label must agree in size, spacing, origin and
   direction (tolerances :data:`SPACING_RTOL`, :data:`ORIGIN_TOL`, :data:`DIRECTION_ATOL`), else
   :class:`SlicingError` names the case (:func:`check_geometry`).
2. :func:`read_volume` reads the 3D volume a header describes, 4D data reduced to 3D: ``case.channel`` picks
   a channel of a multi-channel image, stored either as the 4th NIfTI dimension of a scalar image (MSD
   prostate) or as the components of a vector-pixel image; ``case.frame`` picks one time frame of a cine
   image *and* of its label (a 3D label is used as is). A 4th dimension of size 1 is dropped; any other
   unresolved 4th dimension is an error; ``channel`` is ignored for a 3D scalar image.

:func:`image_information` (a reader with the header read) and :func:`header_direction` are also what
:func:`medssl.data.orientation.acquired_plane` reads a header with.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medssl.data.cases import Case

__all__ = ["DIRECTION_ATOL", "ORIGIN_TOL", "SPACING_RTOL", "Header", "SlicingError", "case_headers",
           "check_complete", "check_geometry", "header_direction", "image_information", "read_case",
           "read_header", "read_volume"]

SPACING_RTOL = 1e-3  # relative spacing difference allowed between image and label
ORIGIN_TOL = 0.05  # origin difference allowed, as a fraction of the smallest voxel spacing
DIRECTION_ATOL = 1e-3  # direction cosine difference allowed


class SlicingError(RuntimeError):
    """A case cannot be sliced: unreadable/truncated file (message names the file) or inconsistent case
    (message names the case)."""


@dataclass(frozen=True)
class Header:
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


def check_complete(path: Path) -> None:
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


def image_information(path: Path) -> sitk.ImageFileReader:
    """An ``ImageFileReader`` of ``path`` with the header read (``ReadImageInformation``: no voxel is read);
    :class:`SlicingError` naming the file if it cannot be read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise SlicingError(f"{path}: cannot read image header ({err})") from err
    return reader


def header_direction(reader: sitk.ImageFileReader) -> np.ndarray:
    """The 3x3 direction matrix of the first three index axes of a header read by :func:`image_information`
    (column c = physical direction of index axis c)."""
    dim = reader.GetDimension()
    return np.asarray(reader.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]


def read_header(path: Path, case: Case, *, is_label: bool) -> Header:
    """The :class:`Header` of ``case``'s image (or label) at ``path``: channel/frame resolved (module
    docstring, step 2), no voxel read."""
    path = Path(path)
    if not path.exists():
        raise SlicingError(f"{path}: file not found (case {case.case_id})")
    reader = image_information(path)
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
    return Header(tuple(size[:3]), tuple(reader.GetSpacing()[:3]), tuple(reader.GetOrigin()[:3]),
                  header_direction(reader), extract, component)


def check_geometry(case: Case, img: Header, lab: Header) -> None:
    """Raise :class:`SlicingError` naming the case if image and label disagree in size, spacing, origin or
    direction (beyond :data:`SPACING_RTOL`, :data:`ORIGIN_TOL`, :data:`DIRECTION_ATOL`)."""
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


def case_headers(case: Case) -> tuple[Header, Header]:
    """The image and label headers of ``case``, checked: geometry agrees, NIfTI files complete (step 1)."""
    img_h = read_header(Path(case.image), case, is_label=False)
    lab_h = read_header(Path(case.label), case, is_label=True)
    check_geometry(case, img_h, lab_h)
    check_complete(Path(case.image))
    check_complete(Path(case.label))
    return img_h, lab_h


def read_volume(path: Path, header: Header) -> sitk.Image:
    """The 3D scalar volume ``header`` (from :func:`read_header`) describes: channel/frame extracted."""
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
    img_h, lab_h = case_headers(case)
    return read_volume(Path(case.image), img_h), read_volume(Path(case.label), lab_h)
