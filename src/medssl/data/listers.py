"""Case listers, one a source format (:data:`LISTERS`), and :func:`list_cases`, which lists a dataset's cases.

Each lister takes ``(spec, root)`` with ``root = resources/raw/<spec.source.root>`` and returns
:class:`~medssl.data.cases.Case` objects sorted by case id. Hidden files and macOS ``._*`` resource forks
are ignored everywhere. A case whose image or label is missing raises :class:`FileNotFoundError` naming the
exact file name(s) looked for (a broken placement should fail loudly rather than silently shrink a dataset).

Layouts
-------
``msd``
    Medical Segmentation Decathlon: ``dataset.json``'s ``training`` list (:func:`list_msd_cases`). The
    synthetic phantom twins are always written in MSD layout, so real MSD tasks and every twin use it.
``acdc``
    ``training/patientXXX/Info.cfg`` (lines ``ED: 1``, ``ES: 12``: 1-based frame numbers) and
    ``patientXXX_frameNN.nii.gz`` / ``patientXXX_frameNN_gt.nii.gz`` (NN = the frame number, 2 digits).
    Cases ``patientXXX_ED`` / ``patientXXX_ES`` (3D files, ``frame=None``). ``root/database/training`` is
    accepted too (the layout of the CREATIS zip).
``mnms``
    ``Training/Labeled/<code>/<code>_sa.nii.gz`` and ``<code>_sa_gt.nii.gz`` (4D cine, labels only at ED and
    ES) plus an info CSV in the root or in ``root/OpenDataset`` with columns ``External code``, ``ED``, ``ES``
    (0-based time indices; any ``*.csv`` name, e.g. :data:`MNMS_CSV_NAMES`). Cases ``<code>_ED`` /
    ``<code>_ES`` with ``Case.frame`` = that index (of image and label). ``root/OpenDataset/...`` is accepted
    too.
``mmwhs``
    ``ct_train/`` or ``mr_train/`` (the folders in ``spec.source.expect``) with ``<case>_image.nii.gz`` and
    ``<case>_label.nii.gz``; one case per patient, case id e.g. ``ct_train_1001``. MM-WHS MRI keeps only the
    sagittally acquired scans (``spec.acquired_plane``, applied by :func:`list_cases`); listed from the
    release placed under ``resources/raw`` (a :class:`~medssl.registry.ManualSource`), exactly
    :data:`PAPER_PLANE_SCANS` of them must be left (paper B: the 14 sagittal scans of the 20), else
    :class:`ValueError` names every scan with its plane and spacing. A folder declared with ``path:`` in the
    config is the user's own selection: the plane filter applies, the count is not checked. The synthetic
    twins are in MSD layout and listed with the MSD lister (``source_format="msd"``): no count check either.
``oai_zib``
    ``images/<case>.nii.gz`` (any of .nii.gz/.nii/.mhd/.mha/.nrrd) and its mask in ``labels/`` or in the
    release's own ``segmentation_masks/`` folder, named ``<case>.<ext>`` or as the release ships it,
    ``<case>.segmentation_masks.mhd`` (+ ``.raw``, checked). The release's masks carry no pose (origin,
    direction): the slicer gives them their image's (:mod:`medssl.data.slicing`).

Where these conventions come from (ACDC frame numbers 1-based as in the file names, M&Ms CSV indices
0-based, OAI-ZIB label values) is recorded in :mod:`medssl.registry`'s docstring.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Callable

from medssl.data.cases import Case, patient_of, strip_nii
from medssl.data.orientation import acquired_plane
from medssl.registry import DatasetSpec, ManualSource

__all__ = ["LISTERS", "list_cases", "list_msd_cases", "list_acdc_cases", "list_mnms_cases", "list_mmwhs_cases",
           "list_oai_zib_cases", "read_acdc_info", "read_mnms_frames"]

log = logging.getLogger("medssl.data")

_NII = (".nii.gz", ".nii")
_VOLUME = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")

#: case folders each source format accepts, first = the one the registry's ``expect`` names (also read by
#: :mod:`medssl.data.manual`, whose placement check runs these listers)
CASE_DIRS = {"acdc": ("training", "database/training"),
             "mnms": ("Training/Labeled", "OpenDataset/Training/Labeled")}

#: OAI-ZIB: folders a case's mask may be in (``labels/``, or the release's ``segmentation_masks/`` as it is)
OAI_ZIB_LABEL_DIRS = ("labels", "segmentation_masks")

#: accepted forms of a registry ``expect`` entry, per source format (read by :mod:`medssl.data.manual`)
EXPECT_ALTERNATIVES = {fmt: {dirs[0]: dirs} for fmt, dirs in CASE_DIRS.items()}
EXPECT_ALTERNATIVES["oai_zib"] = {"labels": OAI_ZIB_LABEL_DIRS}

#: names the M&Ms info CSV has had (any ``*.csv`` with the columns ``External code``, ``ED``, ``ES`` is read)
MNMS_CSV_NAMES = ("211230_M&Ms_Dataset_information_diagnosis_opendataset.csv",
                  "211006_M&Ms_Dataset_Information_-_opendataset.csv",
                  "201014_M&Ms_Dataset_Information_-_opendataset.csv")

#: datasets whose release must hold exactly this many scans in ``spec.acquired_plane`` once listed from the
#: release itself (paper B, Table 1: 14 sagittal MRI scans of the 20 of MM-WHS 2017)
PAPER_PLANE_SCANS = {"mmwhs_mri": 14}


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")  # covers "._*" AppleDouble files and hidden files


def _first_dir(root: Path, candidates: tuple[str, ...], what: str) -> Path:
    for rel in candidates:
        d = root / rel
        if d.is_dir():
            return d
    raise FileNotFoundError(f"{what}: none of {', '.join(str(root / c) for c in candidates)} exists")


def _find_file(folder: Path, stem: str, exts: tuple[str, ...] = _NII) -> Path | None:
    for ext in exts:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _names(stems: tuple[str, ...] | str, exts: tuple[str, ...] = _NII) -> str:
    """The file names :func:`_find_file` looks for, for a message: ``a.nii.gz, a.nii``."""
    stems = (stems,) if isinstance(stems, str) else stems
    return ", ".join(f"{stem}{ext}" for stem in stems for ext in exts)


def _check_mhd_data(path: Path) -> None:
    """A MetaImage header's data file (``ElementDataFile``, e.g. the ``.raw`` beside an OAI-ZIB ``.mhd``)
    exists; :class:`FileNotFoundError` naming it otherwise."""
    if not path.name.lower().endswith(".mhd"):
        return
    try:
        with open(path, encoding="latin-1") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "ElementDataFile":
                    value = value.strip()
                    if value and value.upper() != "LOCAL" and " " not in value and not value.upper().startswith(
                            "LIST"):
                        data = path.parent / value
                        if not data.is_file():
                            raise FileNotFoundError(f"{path}: its voxel data file {data} is missing (a .mhd "
                                                    f"header needs the {data.name} beside it)")
                    return
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        return


def _frames(spec: DatasetSpec) -> tuple[str, ...]:
    return spec.frames or ("ED", "ES")


# --------------------------------------------------------------------------------------------------
# MSD


def list_msd_cases(spec: DatasetSpec, root: Path) -> list[Case]:
    """Cases of an MSD-layout folder, read from ``dataset.json``'s ``training`` list.

    Listing from dataset.json (never from a directory glob) skips the macOS ``._*`` files some MSD tars
    carry. Paths in dataset.json are relative to ``root`` ("./imagesTr/x.nii.gz"). A dataset.json that is
    not valid JSON (e.g. cut short), has no ``training`` list or an entry without ``image`` and ``label``
    raises :class:`ValueError` naming the file.
    """
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: {spec.name} is not in MSD layout at {root}")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{meta_path}: not valid JSON ({err}); is the file complete? ({spec.name})") from None
    training = meta.get("training") if isinstance(meta, dict) else None
    if not isinstance(training, list):
        raise ValueError(f"{meta_path}: no 'training' list of image/label pairs, as an MSD dataset.json has "
                         f"({spec.name})")
    cases = []
    for i, entry in enumerate(training):
        if not (isinstance(entry, dict) and isinstance(entry.get("image"), str)
                and isinstance(entry.get("label"), str)):
            raise ValueError(f"{meta_path}: training entry {i} ({str(entry)[:80]}) lacks 'image' and 'label' "
                             f"paths")
        image = root / entry["image"]
        label = root / entry["label"]
        case_id = strip_nii(Path(entry["image"]).name)
        cases.append(Case(case_id, patient_of(spec, case_id), image, label, channel=spec.channel))
    return sorted(cases, key=lambda c: c.case_id)


# --------------------------------------------------------------------------------------------------
# ACDC


def read_acdc_info(path: Path) -> dict[str, str]:
    """Parse an ACDC ``Info.cfg`` (``key: value`` lines) into a dict of strings."""
    info = {}
    for line in Path(path).read_text().splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def list_acdc_cases(spec: DatasetSpec, root: Path) -> list[Case]:
    base = _first_dir(Path(root), CASE_DIRS["acdc"], f"ACDC ({spec.name})")
    cases = []
    for pdir in sorted(base.iterdir()):
        if not (pdir.is_dir() and _visible(pdir) and re.fullmatch(r"patient\d+", pdir.name)):
            continue
        pid = pdir.name
        cfg = pdir / "Info.cfg"
        if not cfg.is_file():
            raise FileNotFoundError(f"ACDC: {cfg} missing (it gives the ED/ES frame numbers)")
        info = read_acdc_info(cfg)
        for tag in _frames(spec):
            if tag not in info:
                raise ValueError(f"ACDC: {cfg} has no '{tag}:' line")
            stem = f"{pid}_frame{int(float(info[tag])):02d}"
            image, label = _find_file(pdir, stem), _find_file(pdir, f"{stem}_gt")
            missing = [f"{what} {pdir / (s + '.nii.gz')} is missing (also looked for {s}.nii)"
                       for what, s, found in (("image", stem, image), ("label", f"{stem}_gt", label))
                       if found is None]
            if missing:
                raise FileNotFoundError(f"ACDC: {tag} frame of {pid} (Info.cfg {tag}: {info[tag]}): "
                                        + "; ".join(missing))
            case_id = f"{pid}_{tag}"
            cases.append(Case(case_id, patient_of(spec, case_id), image, label, channel=spec.channel))
    return sorted(cases, key=lambda c: c.case_id)


# --------------------------------------------------------------------------------------------------
# M&Ms


def _norm_col(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def read_mnms_frames(root: Path) -> dict[str, dict[str, int]]:
    """``{code: {"ED": i, "ES": j}}`` from the info CSV(s) in ``root`` (or ``root/OpenDataset``).

    Any ``*.csv`` with columns ``External code``, ``ED`` and ``ES`` (matched ignoring case, spaces and
    punctuation) is read; with several, the newest by name (the files carry a date prefix) wins.
    """
    root = Path(root)
    places = (root, root / "OpenDataset")
    csvs = [p for d in places if d.is_dir() for p in d.glob("*.csv") if _visible(p)]
    table: dict[str, dict[str, int]] = {}
    found = False
    for path in sorted(csvs, key=lambda p: p.name, reverse=True):
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            sample = f.read(4096)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.reader(f, dialect)
            header = next(reader, None)
            if not header:
                continue
            cols = {_norm_col(h): i for i, h in enumerate(header)}
            if not {"externalcode", "ed", "es"} <= cols.keys():
                continue
            found = True
            for row in reader:
                if len(row) <= max(cols["externalcode"], cols["ed"], cols["es"]):
                    continue
                code = row[cols["externalcode"]].strip()
                if not code or code in table:
                    continue
                try:
                    table[code] = {"ED": int(float(row[cols["ed"]])), "ES": int(float(row[cols["es"]]))}
                except ValueError:
                    continue
    if not found:
        seen = (f"; CSV files found there lack those columns: {', '.join(str(p) for p in sorted(csvs))}"
                if csvs else "; no .csv file is there")
        raise FileNotFoundError(
            f"M&Ms: no info CSV with columns 'External code', 'ED', 'ES' in {places[0]} or in {places[1]} "
            f"(searched both; any *.csv name is accepted, the releases' are {', '.join(MNMS_CSV_NAMES)}){seen}"
        )
    return table


def list_mnms_cases(spec: DatasetSpec, root: Path) -> list[Case]:
    root = Path(root)
    base = _first_dir(root, CASE_DIRS["mnms"], f"M&Ms ({spec.name})")
    frames = read_mnms_frames(root)
    cases = []
    for cdir in sorted(base.iterdir()):
        if not (cdir.is_dir() and _visible(cdir)):
            continue
        code = cdir.name
        image, label = _find_file(cdir, f"{code}_sa"), _find_file(cdir, f"{code}_sa_gt")
        missing = [f"{what} {cdir / (s + '.nii.gz')} is missing (also looked for {s}.nii)"
                   for what, s, found in (("image", f"{code}_sa", image), ("label", f"{code}_sa_gt", label))
                   if found is None]
        if missing:
            raise FileNotFoundError(f"M&Ms: case {code}: " + "; ".join(missing))
        if code not in frames:
            raise KeyError(f"M&Ms: {code} is not in the info CSV (External code / ED / ES) under {root}")
        for tag in _frames(spec):
            case_id = f"{code}_{tag}"
            cases.append(Case(case_id, patient_of(spec, case_id), image, label, channel=spec.channel,
                              frame=frames[code][tag]))
    return sorted(cases, key=lambda c: c.case_id)


# --------------------------------------------------------------------------------------------------
# MM-WHS


def list_mmwhs_cases(spec: DatasetSpec, root: Path) -> list[Case]:
    root = Path(root)
    subdirs = tuple(spec.source.expect) if isinstance(spec.source, ManualSource) else ("ct_train", "mr_train")
    folders = [root / s for s in subdirs if (root / s).is_dir()]
    if not folders:
        raise FileNotFoundError(f"MM-WHS ({spec.name}): none of {', '.join(str(root / s) for s in subdirs)} "
                                f"exists")
    cases = []
    for folder in folders:
        for image in sorted(folder.iterdir()):
            if not (image.is_file() and _visible(image)):
                continue
            stem = strip_nii(image.name)
            if not stem.endswith("_image") or stem == image.name:
                continue
            case_id = stem[: -len("_image")]
            label = _find_file(folder, f"{case_id}_label", _VOLUME)
            if label is None:
                raise FileNotFoundError(f"MM-WHS: the label of {image} is missing: looked for "
                                        f"{_names(f'{case_id}_label', _VOLUME)} in {folder}")
            cases.append(Case(case_id, patient_of(spec, case_id), image, label, channel=spec.channel))
    return sorted(cases, key=lambda c: c.case_id)


# --------------------------------------------------------------------------------------------------
# OAI-ZIB


def list_oai_zib_cases(spec: DatasetSpec, root: Path) -> list[Case]:
    """``images/<case>.<ext>`` paired with ``<case>.<ext>`` or ``<case>.segmentation_masks.<ext>`` (the
    release's name) in ``labels/`` or ``segmentation_masks/``; a ``.mhd`` needs its data file beside it."""
    root = Path(root)
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"OAI-ZIB ({spec.name}): {images} does not exist")
    label_dirs = [root / d for d in OAI_ZIB_LABEL_DIRS if (root / d).is_dir()]
    if not label_dirs:
        raise FileNotFoundError(f"OAI-ZIB ({spec.name}): none of "
                                f"{', '.join(str(root / d) for d in OAI_ZIB_LABEL_DIRS)} exists")
    cases = []
    for image in sorted(images.iterdir()):
        if not (image.is_file() and _visible(image)) or not image.name.endswith(_VOLUME):
            continue
        case_id = strip_nii(image.name)
        if case_id.endswith(".segmentation_masks"):
            raise ValueError(f"OAI-ZIB: {image} is a mask (named as the release names its masks); masks go in "
                             f"{root / 'labels'}, images/ holds the OAI DESS images")
        stems = (case_id, f"{case_id}.segmentation_masks")
        label = next((p for d in label_dirs for stem in stems if (p := _find_file(d, stem, _VOLUME))), None)
        if label is None:
            raise FileNotFoundError(f"OAI-ZIB: the label of {image} is missing: looked for "
                                    f"{_names(stems, _VOLUME)} in {' and in '.join(map(str, label_dirs))}")
        _check_mhd_data(image)
        _check_mhd_data(label)
        cases.append(Case(case_id, patient_of(spec, case_id), image, label, channel=spec.channel))
    return sorted(cases, key=lambda c: c.case_id)


#: source format (``DatasetSpec.source_format``) -> its lister
LISTERS: dict[str, Callable[[DatasetSpec, Path], list[Case]]] = {
    "msd": list_msd_cases,
    "acdc": list_acdc_cases,
    "mnms": list_mnms_cases,
    "mmwhs": list_mmwhs_cases,
    "oai_zib": list_oai_zib_cases,
}


def _spacing_text(image: Path) -> str:
    """``1.6 x 1 x 1 mm``: the voxel spacing of ``image``'s header (index axes i, j, k)."""
    from medssl.data.nifti import image_information  # imported on use: it imports SimpleITK

    return " x ".join(f"{v:.3g}" for v in image_information(image).GetSpacing()[:3]) + " mm"


def _check_plane_count(spec: DatasetSpec, root: Path, cases: list[Case], planes: dict[str, str],
                       kept: list[Case]) -> None:
    """The release of ``spec`` holds exactly :data:`PAPER_PLANE_SCANS` scans acquired in
    ``spec.acquired_plane``; else :class:`ValueError` naming every scan with its plane and spacing."""
    expected = PAPER_PLANE_SCANS.get(spec.name)
    if expected is None or len(kept) == expected:
        return
    scans = "; ".join(f"{c.case_id} {planes[c.case_id]} {_spacing_text(c.image)}" for c in cases)
    root = Path(root).resolve()
    plane = spec.acquired_plane
    raise ValueError(
        f"{spec.name}: {len(kept)} of the {len(cases)} scans under {root} are acquired in the {plane} plane, but "
        f"paper B (Table 1) uses exactly {expected} (the {plane} scans of the release; the plane is the index "
        f"axis with the largest spacing, medssl.data.orientation.acquired_plane); scans found "
        f"(plane, spacing along index axes i x j x k): {scans}. Check that the folder holds the complete, "
        f"unmodified release; to use the {plane} scans found anyway (or a selection of your own), "
        f"declare the folder as a dataset read in place: `datasets: {{{spec.name}: {{path: {root}}}}}` in the "
        f"config (same layout and classes; only the {plane} scans are listed, their number is not checked)")


def list_cases(spec: DatasetSpec, root: Path, source_format: str | None = None) -> list[Case]:
    """List the cases of ``spec`` found under ``root`` using its source format's lister (or ``source_format``'s), keeping
    only those acquired in ``spec.acquired_plane`` when it is set.

    Listed from a registered release itself (a :class:`~medssl.registry.ManualSource` in its own source format,
    not a synthetic twin in MSD layout nor a folder declared with ``path:``), a dataset in
    :data:`PAPER_PLANE_SCANS` must keep exactly that many scans (:class:`ValueError` otherwise)."""
    source_format = source_format or spec.source_format
    if source_format not in LISTERS:
        raise ValueError(f"no case lister for source format {source_format!r} (dataset {spec.name})")
    cases = LISTERS[source_format](spec, Path(root))
    if not cases:
        raise FileNotFoundError(f"no cases found for {spec.name} under {root}")
    if spec.acquired_plane:
        planes = {c.case_id: acquired_plane(c.image) for c in cases}
        kept = [c for c in cases if planes[c.case_id] == spec.acquired_plane]
        if isinstance(spec.source, ManualSource) and source_format == spec.source_format:
            _check_plane_count(spec, Path(root), cases, planes, kept)
        dropped = sorted(set(planes) - {c.case_id for c in kept})
        if dropped:
            log.info("%s: %d of %d cases acquired in the %s plane; left out: %s", spec.name, len(kept),
                     len(cases), spec.acquired_plane, ", ".join(f"{c} ({planes[c]})" for c in dropped))
        if not kept:
            raise FileNotFoundError(f"no case of {spec.name} under {root} is acquired in the "
                                    f"{spec.acquired_plane} plane (found: {sorted(set(planes.values()))})")
        cases = kept
    return cases
