"""Slicing: 3D (or 4D) cases -> one dataset's 2D slice store (format: :mod:`medssl.data.store`).

:func:`slice_dataset` runs, per case (rows follow the order of cases sorted by case id, then the slice
index; slices of a case are contiguous):

1. read image and label, checked (unreadable or truncated files, image/label geometry), 4D data reduced to
   3D by ``case.channel`` / ``case.frame``: :mod:`medssl.data.nifti`. Header-level checks of all cases run
   before any volume is read.
2. reorient to ONE canonical orientation (LPS) and cut the slices along ``settings.slice_axis``:
   :mod:`medssl.data.orientation` (the slice axes table is there).
3. normalise intensities to [0, 1] per modality (``settings.ct_window``, ``settings.mri_percentiles``) and
   resize every slice to ``image_size`` x ``image_size``: :mod:`medssl.data.intensity`.
4. resize labels (nearest neighbour) and remap source label values to contiguous class ids with
   ``spec.label_map()``: :mod:`medssl.data.labels`.
5. write images, labels and index rows, then ``meta.json``: :func:`medssl.data.store.write_store` (atomic).

Labels without a pose (OAI-ZIB): the release's masks (``<id>.segmentation_masks.mhd``) carry no origin or
direction (its README: they "fit the MRI scans up to rigid alignment") and the images are the OAI DESS scans the
user converts, so image and mask headers disagree. For real data of a source format in
:data:`POSELESS_LABEL_FORMATS`, a label whose geometry differs from its image's is converted when that is safe:
when both have the **same voxel grid size** (ITK order i, j, k) and the label's spacing is the image's (within
:data:`POSE_SPACING_RTOL`) or the unit spacing of a file without one, the label takes the image's origin,
direction and spacing (voxel (i, j, k) of the mask labels voxel (i, j, k) of the image; an INFO line per case
names the file). Voxel axes are never permuted or flipped automatically: SimpleITK reads the release's masks
with the sagittal slice index first (size 160 x 384 x 384, ``numpy[:, :, n]`` is sagittal slice n) while a DESS
DICOM series read by SimpleITK is 384 x 384 x 160, and which in-plane axes are swapped or flipped depends on how
the series was converted (public converters disagree on the slice order), so a wrong guess would pair every
image with a mirrored mask without any error. Such a case (sizes that are a permutation of each other) stops
with :class:`SlicingError` saying what to convert and how; any other mismatch stops as for other datasets.
Synthetic twins are written consistent, so a mismatch there is always an error.

Sample: with ``sample_slices`` (paper A: Table 1's count in ``config/paper.yaml``) the store marks that many of
its slices with foreground as the dataset's sample (:func:`medssl.data.store.draw_sample`: spread over the
patients, seeded), the ``sampled`` column of ``index.csv``; every slice is still written (all-slice scores and
paper B's neighbours need them), and the split and every training job use the sample.

Real data against the paper: when ``synthetic`` is false and the registry gives ``paper_slices`` (HSSL Table 1),
a sample (every slice with foreground without ``sample_slices``) that differs from it by more than
:data:`PAPER_SLICES_RTOL` is a WARNING naming the foreground count, the sample and Table 1's number (slicing
goes on; a partial or different release, or another slice axis, shows up here).

Warnings (logger ``medssl.data``; slicing goes on): label values outside the class map (one message per
dataset naming the values and the cases holding them), a case whose label holds no voxel of any class, a
declared class that no label of the dataset holds (one loud message naming the dataset and the classes; a
store where no class appears at all would otherwise train and report a null Dice with exit status 0; the
per-class slice counts go to ``meta.json``'s ``class_slices`` for later jobs to check), and
an image holding NaN/Inf voxels (counted; NaN become 0, Inf are clipped like any value outside the range;
ITK's NIfTI reader already reads NaN/Inf as 0, so this concerns MetaImage/NRRD sources).

Memory: a first pass reads only headers to count slices and check geometry; the store's files are then
filled case by case. Within a case, slices are normalised, resized and written in slabs of about
:data:`SLAB_VOXELS` source voxels, so the peak memory is one volume (image and label as stored in the file,
plus SimpleITK's own read buffer while reading) and a slab's float32 working copy, independent of the number
of cases.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medssl.data.cases import Case
from medssl.data.intensity import count_nonfinite, intensity_range, normalise, resize_images, to_float16
from medssl.data.labels import label_lut, label_values, remap_labels, resize_labels
from medssl.data.nifti import (Header, SlicingError, case_headers, check_complete, check_geometry, read_header,
                                read_volume)
from medssl.data.orientation import CANONICAL_ORIENTATION, SLICE_AXES, slice_count, slice_stack, stack_spacing
from medssl.data.store import StoreWriter, write_store

log = logging.getLogger("medssl.data")

__all__ = ["PAPER_SLICES_RTOL", "POSELESS_LABEL_FORMATS", "POSE_SPACING_RTOL", "SLAB_VOXELS", "SlicingError",
           "slice_dataset"]

SLAB_VOXELS = 1 << 20  # slices are normalised/resized/written in slabs of about this many source voxels
POSELESS_LABEL_FORMATS = ("oai_zib",)  # source formats whose released labels carry no pose (module docstring)
POSE_SPACING_RTOL = 0.02  # label spacing that still counts as the image's when the pose is taken over
PAPER_SLICES_RTOL = 0.10  # foreground slices may differ this much from the registry's paper_slices


def _adopt_image_pose(case: Case, img: Header, lab: Header, err: SlicingError) -> Header:
    """The label header with the image's spacing, origin and direction, when the voxel grids match (module
    docstring); else :class:`SlicingError` saying what to convert (``err``: the geometry check's complaint)."""
    image, label = Path(case.image), Path(case.label)
    target = label.parent.parent / "labels" / f"{case.case_id}.nii.gz"
    if img.size != lab.size:
        if sorted(img.size) != sorted(lab.size):
            raise err
        raise SlicingError(
            f"case {case.case_id}: label {label} has its voxel axes in another order than image {image} (size "
            f"{lab.size} vs {img.size}, SimpleITK index order i, j, k); medssl does not guess axis swaps and flips "
            f"(they depend on how the image was converted). Convert the mask: reorder its voxel axes to the "
            f"image's (sitk.PermuteAxes, then sitk.Flip where an overlay of one case shows a mirror), give it the "
            f"image's geometry with mask.CopyInformation(image), save it as {target} (read before {label.name})")
    unit = np.allclose(lab.spacing, 1.0, rtol=0, atol=1e-6)
    if not (unit or np.allclose(lab.spacing, img.spacing, rtol=POSE_SPACING_RTOL, atol=0)):
        raise SlicingError(
            f"{err}; the voxel grid sizes match but the spacing differs ({lab.spacing} vs {img.spacing}), so "
            f"the label may be a different grid: check it, then save it with the image's geometry "
            f"(mask.CopyInformation(image)) as {target}")
    return Header(img.size, img.spacing, img.origin, img.direction, lab.extract, lab.component)


def _case_headers(case: Case, adopt_pose: bool) -> tuple[Header, Header, bool]:
    """:func:`~medssl.data.nifti.case_headers`, plus the pose take-over of labels without a pose when
    ``adopt_pose``; the third value says whether it happened."""
    if not adopt_pose:
        return (*case_headers(case), False)
    img_h = read_header(Path(case.image), case, is_label=False)
    lab_h = read_header(Path(case.label), case, is_label=True)
    adopted = False
    try:
        check_geometry(case, img_h, lab_h)
    except SlicingError as err:
        lab_h, adopted = _adopt_image_pose(case, img_h, lab_h, err), True
    check_complete(Path(case.image))
    check_complete(Path(case.label))
    return img_h, lab_h, adopted


def _check_paper_slices(spec, n_fg_slices: int, sample_slices: int | None) -> None:
    """WARNING when real data's sample (``sample_slices`` of the ``n_fg_slices`` slices with foreground, all of
    them without it) is more than :data:`PAPER_SLICES_RTOL` away from the registry's ``paper_slices`` (HSSL
    Table 1)."""
    paper = spec.paper_slices
    drawn = min(n_fg_slices, sample_slices or n_fg_slices)
    if not paper or abs(drawn - paper) <= PAPER_SLICES_RTOL * paper:
        return
    sample = f"a sample of {drawn}" if sample_slices else "all of them in the sample (no sample_slices)"
    log.warning("%s: WARNING: the store holds %d slices with foreground, %s; HSSL Table 1 reports %d (%+.0f %%, "
                "more than %.0f %% apart): check that the source is the complete release, the slice axis is the "
                "paper's and datasets.%s.sample_slices is Table 1's count", spec.name, n_fg_slices, sample, paper,
                100.0 * (drawn - paper) / paper, 100 * PAPER_SLICES_RTOL, spec.name)


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
    n_nan, n_inf = count_nonfinite(image)
    if n_nan or n_inf:
        log.warning("case %s: the image %s holds %d non-finite voxels (%d NaN, %d Inf); NaN become 0, Inf "
                    "are clipped to the intensity range", case.case_id, case.image, n_nan + n_inf, n_nan, n_inf)


def _check_classes(spec, counts: np.ndarray, total: int) -> dict[str, int]:
    """``{class name: slices holding it}``; a loud warning naming the dataset and every declared class that
    no slice holds (none at all: the dataset has no foreground, nothing can be learnt from it)."""
    names = list(spec.class_names)
    class_slices = {names[k] if k < len(names) else f"class {k + 1}": int(n) for k, n in enumerate(counts)}
    missing = [name for name, n in class_slices.items() if n == 0]
    if missing:
        none = len(missing) == len(class_slices)
        log.warning("%s: WARNING: the declared class%s %s never appear%s in any label (0 of %d slices)%s; a "
                    "model cannot learn %s and %s Dice will be null. Check the label files and the class map "
                    "(%s)", spec.name, "es" if len(missing) > 1 else "", ", ".join(missing),
                    "" if len(missing) > 1 else "s", total,
                    ": the dataset has no foreground at all" if none else "",
                    "them" if len(missing) > 1 else "it", "their" if len(missing) > 1 else "its",
                    ", ".join(f"{k}->{v}" for k, v in sorted(spec.label_map().items())))
    return class_slices


def _slice_case(case: Case, img_h: Header, lab_h: Header, n: int, settings,
                lut: np.ndarray, store: StoreWriter, unmapped: dict | None = None
                ) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
    """Read one case and append its slices to the store, a slab of slices at a time (so the float32 working
    copy is a slab, not the volume). Returns the per-slice foreground flags, the source slice shape and the
    intensity range mapped to [0, 1]. Bad values are warned about (:func:`_check_values`; label values
    outside the class map are collected in ``unmapped``)."""
    size, axis = settings.image_size, settings.slice_axis
    image = read_volume(Path(case.image), img_h)
    label = read_volume(Path(case.label), lab_h)
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
    step = max(1, SLAB_VOXELS // max(1, h * w))
    slabs = ((to_float16(resize_images(normalise(stack[s0:s0 + step], lo, hi), size)),
              remap_labels(resize_labels(lab_stack[s0:s0 + step], size), lut)) for s0 in range(0, n, step))
    fg = store.write_case(case.case_id, case.patient_id, slabs)
    del slabs, arr, lab_arr, stack, lab_stack  # views into the SimpleITK images: drop them first
    del image, label
    return fg, (h, w), (lo, hi)


def slice_dataset(settings, cases: list[Case], out_dir: Path, *, synthetic: bool) -> None:
    """Write the slice store of ``cases`` to ``out_dir`` (atomically; see the module docstring)."""
    spec = settings.spec
    out_dir = Path(out_dir)
    size = int(settings.image_size)
    axis = settings.slice_axis
    if axis not in SLICE_AXES:
        raise ValueError(f"{spec.name}: unknown slice_axis {axis!r}")
    if not cases:
        raise ValueError(f"{spec.name}: no cases to slice")
    cases = sorted(cases, key=lambda c: c.case_id)
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{spec.name}: duplicate case ids {dup}")
    lut = label_lut(spec.label_map())

    # pass 1: headers only -> slice counts, geometry checks, truncated files (fail before any heavy work)
    adopt = not synthetic and spec.source_format in POSELESS_LABEL_FORMATS
    checked = [_case_headers(case, adopt) for case in cases]
    headers = [(img_h, lab_h) for img_h, lab_h, _ in checked]
    for case, (_, _, adopted) in zip(cases, checked):
        if adopted:
            log.info("%s: case %s: the label %s carries no pose of its image (origin/direction/spacing differ, "
                     "same voxel grid size): the image's pose is used", spec.name, case.case_id, case.label)
    counts = [slice_count(h.size, h.direction, axis) for h, _ in headers]
    total = int(sum(counts))
    if total == 0:
        raise ValueError(f"{spec.name}: the cases hold no slices")

    n_fg_slices = 0
    with write_store(out_dir, n_slices=total, image_size=size, n_classes=spec.n_classes) as store:
        cases_meta: dict[str, dict] = {}
        spacing_meta: dict[str, list[float]] = {}
        start = 0
        unmapped: dict = {}
        for case, (img_h, lab_h), n in zip(cases, headers, counts):
            fg, (h, w), (lo, hi) = _slice_case(case, img_h, lab_h, n, settings, lut, store, unmapped)
            n_fg_slices += int(fg.sum())
            ds, dr, dc = stack_spacing(img_h.spacing, img_h.direction, axis)
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

        class_slices = _check_classes(spec, store.class_slices, total)
        if not synthetic:
            _check_paper_slices(spec, n_fg_slices, settings.sample_slices)

        if settings.spec.modality == "CT":
            norm = {"method": "ct_window", "window": [float(v) for v in settings.ct_window]}
        else:
            norm = {"method": "mri_percentiles", "percentiles": [float(v) for v in settings.mri_percentiles]}
        norm["resize"] = {"image": "bilinear (anti-aliased when shrinking > 2x)", "label": "nearest"}
        store.finish({
            "dataset": spec.name, "title": spec.title, "modality": spec.modality, "roi": spec.roi,
            "reference": spec.reference, "paper_slices": spec.paper_slices,
            "classes": spec.class_names, "n_classes": spec.n_classes, "image_size": size,
            "slice_axis": axis, "orientation": CANONICAL_ORIENTATION if axis != "acquisition" else "acquisition",
            "synthetic": bool(synthetic), "task": spec.paper_task, "group": spec.paper_group,
            "n_cases": len(cases), "n_patients": len({c.patient_id for c in cases}), "n_slices": total,
            "normalisation": norm, "class_slices": class_slices, "spacing": spacing_meta, "cases": cases_meta,
        }, sample_slices=settings.sample_slices)
    log.info("%s: %d cases, %d slices (%d with foreground, %d in the sample) of %dx%d written to %s", spec.name,
             len(cases), total, n_fg_slices, min(n_fg_slices, settings.sample_slices or n_fg_slices), size, size,
             out_dir)
