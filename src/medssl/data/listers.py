"""Case listers, one a source format (:data:`LISTERS`), and :func:`list_cases`, which lists a dataset's cases.

Each lister takes ``(spec, root)`` with ``root = resources/raw/<spec.source.root>`` and returns
:class:`~medssl.data.cases.Case` objects sorted by case id. Hidden files and macOS ``._*`` resource forks
are ignored everywhere. A case whose label is missing raises :class:`FileNotFoundError` (a broken placement
should fail loudly rather than silently shrink a dataset).

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
    ES) plus an info CSV in the root with columns ``External code``, ``ED``, ``ES`` (0-based time indices).
    Cases ``<code>_ED`` / ``<code>_ES`` with ``Case.frame`` = that index (of image and label).
    ``root/OpenDataset/...`` is accepted too.
``mmwhs``
    ``ct_train/`` or ``mr_train/`` (the folders in ``spec.source.expect``) with ``<case>_image.nii.gz`` and
    ``<case>_label.nii.gz``; one case per patient, case id e.g. ``ct_train_1001``. MM-WHS MRI keeps only the
    sagittally acquired scans (``spec.acquired_plane``, applied by :func:`list_cases`).
``oai_zib``
    ``images/<case>.nii.gz`` and ``labels/<case>.nii.gz`` (any of .nii.gz/.nii/.mhd/.mha/.nrrd).

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
            if image is None or label is None:
                raise FileNotFoundError(f"ACDC: {pdir / stem}.nii.gz or its _gt label is missing")
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
    csvs = [p for d in (root, root / "OpenDataset") if d.is_dir() for p in d.glob("*.csv") if _visible(p)]
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
        raise FileNotFoundError(
            f"M&Ms: no info CSV with columns 'External code', 'ED', 'ES' in {root} (e.g. "
            f"211230_M&Ms_Dataset_information_diagnosis_opendataset.csv)"
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
        if image is None or label is None:
            raise FileNotFoundError(f"M&Ms: {cdir / code}_sa.nii.gz or {code}_sa_gt.nii.gz is missing")
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
                raise FileNotFoundError(f"MM-WHS: label {folder / case_id}_label.nii.gz is missing")
            cases.append(Case(case_id, patient_of(spec, case_id), image, label, channel=spec.channel))
    return sorted(cases, key=lambda c: c.case_id)


# --------------------------------------------------------------------------------------------------
# OAI-ZIB


def list_oai_zib_cases(spec: DatasetSpec, root: Path) -> list[Case]:
    root = Path(root)
    images, labels = root / "images", root / "labels"
    for d in (images, labels):
        if not d.is_dir():
            raise FileNotFoundError(f"OAI-ZIB ({spec.name}): {d} does not exist")
    cases = []
    for image in sorted(images.iterdir()):
        if not (image.is_file() and _visible(image)) or not image.name.endswith(_VOLUME):
            continue
        case_id = strip_nii(image.name)
        label = _find_file(labels, case_id, _VOLUME)
        if label is None:
            raise FileNotFoundError(f"OAI-ZIB: label for {image.name} missing in {labels}")
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


def list_cases(spec: DatasetSpec, root: Path, source_format: str | None = None) -> list[Case]:
    """List the cases of ``spec`` found under ``root`` using its source format's lister (or ``source_format``'s), keeping
    only those acquired in ``spec.acquired_plane`` when it is set."""
    source_format = source_format or spec.source_format
    if source_format not in LISTERS:
        raise ValueError(f"no case lister for source format {source_format!r} (dataset {spec.name})")
    cases = LISTERS[source_format](spec, Path(root))
    if not cases:
        raise FileNotFoundError(f"no cases found for {spec.name} under {root}")
    if spec.acquired_plane:
        planes = {c.case_id: acquired_plane(c.image) for c in cases}
        kept = [c for c in cases if planes[c.case_id] == spec.acquired_plane]
        dropped = sorted(set(planes) - {c.case_id for c in kept})
        if dropped:
            log.info("%s: %d of %d cases acquired in the %s plane; left out: %s", spec.name, len(kept),
                     len(cases), spec.acquired_plane, ", ".join(f"{c} ({planes[c]})" for c in dropped))
        if not kept:
            raise FileNotFoundError(f"no case of {spec.name} under {root} is acquired in the "
                                    f"{spec.acquired_plane} plane (found: {sorted(set(planes.values()))})")
        cases = kept
    return cases
