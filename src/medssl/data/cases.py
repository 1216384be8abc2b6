"""Cases: one 3D volume (plus label) of one patient, listed from a dataset's on-disk layout.

A case is the unit the slicer reads; a patient may own several cases (ACDC/M&Ms: the ED and ES frames).
Splits are made by patient, so slices of one patient never cross train/val/test. Cases are listed from a
dataset's on-disk layout by :func:`medssl.data.listers.list_cases` (one lister a layout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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


def strip_nii(name: str) -> str:
    """A volume file name without its extension (.nii.gz, .nii, .mha, .mhd, .nrrd)."""
    for ext in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name
