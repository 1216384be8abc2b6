"""Cases: one 3D volume (plus label) of one patient, listed from a dataset's on-disk layout.

A case is the unit the slicer reads; a patient may own several cases (ACDC/M&Ms: the ED and ES frames).
Splits are made by patient, so slices of one patient never cross train/val/test.

Layouts (``DatasetSpec.layout``) of the real sources each get a lister; the synthetic phantom twins are
always written in MSD layout, so real MSD tasks and every twin go through :func:`list_msd_cases`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from medssl.registry import DatasetSpec


@dataclass(frozen=True)
class Case:
    case_id: str  # unique within the dataset; also the id used in split files
    patient_id: str  # slices of one patient stay in one split
    image: Path
    label: Path
    channel: int | None = None  # 4D multi-channel image: channel to keep
    frame: int | None = None  # 4D cine image *and label*: time frame to keep


def patient_of(spec: DatasetSpec, case_id: str) -> str:
    """Patient id of a case: ``spec.patient_pattern``'s first group, or the case id itself."""
    if spec.patient_pattern:
        m = re.match(spec.patient_pattern, case_id)
        if m:
            return m.group(1)
    return case_id


def _strip_nii(name: str) -> str:
    for ext in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def list_msd_cases(spec: DatasetSpec, root: Path) -> list[Case]:
    """Cases of an MSD-layout folder, read from ``dataset.json``'s ``training`` list.

    Listing from dataset.json (never from a directory glob) skips the macOS ``._*`` files some MSD tars
    carry. Paths in dataset.json are relative to ``root`` ("./imagesTr/x.nii.gz").
    """
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: {spec.name} is not in MSD layout at {root}")
    with open(meta_path) as f:
        meta = json.load(f)
    cases = []
    for entry in meta["training"]:
        image = root / entry["image"]
        label = root / entry["label"]
        case_id = _strip_nii(Path(entry["image"]).name)
        cases.append(Case(case_id, patient_of(spec, case_id), image, label, channel=spec.channel))
    return sorted(cases, key=lambda c: c.case_id)


LISTERS: dict[str, Callable[[DatasetSpec, Path], list[Case]]] = {"msd": list_msd_cases}


def list_cases(spec: DatasetSpec, root: Path, layout: str | None = None) -> list[Case]:
    """List the cases of ``spec`` found under ``root`` using its layout's lister (or ``layout``)."""
    layout = layout or spec.layout
    if layout not in LISTERS:
        raise ValueError(f"no case lister for layout {layout!r} (dataset {spec.name})")
    cases = LISTERS[layout](spec, Path(root))
    if not cases:
        raise FileNotFoundError(f"no cases found for {spec.name} under {root}")
    return cases


# Non-MSD layouts (acdc, mnms, mmwhs, oai_zib) register themselves into LISTERS on import.
from medssl.data import listers as _listers  # noqa: E402,F401
