"""Case listers of the non-MSD layouts, on tiny fake folder trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medssl import registry
from medssl.data.listers import LISTERS, list_cases
from medssl.data.sources import source_root


def _nii(path: Path, shape=(3, 4, 4), frames: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vol = sitk.GetImageFromArray(np.zeros(shape, np.int16))
    img = sitk.JoinSeries([vol] * frames) if frames else vol
    sitk.WriteImage(img, str(path))
    return path


def _junk(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x05\x16\x07 AppleDouble")


def test_registered():
    assert {"msd", "acdc", "mnms", "mmwhs", "oai_zib"} <= set(LISTERS)


# ---------------------------------------------------------------------------------------------- ACDC


def _acdc(root: Path) -> None:
    for pid, ed, es in (("patient001", 1, 12), ("patient002", 1, 9)):
        d = root / "training" / pid
        d.mkdir(parents=True)
        (d / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\n"
                                    f"Weight: 95.0\n")
        for n in (ed, es):
            _nii(d / f"{pid}_frame{n:02d}.nii.gz")
            _nii(d / f"{pid}_frame{n:02d}_gt.nii.gz")
            _junk(d / f"._{pid}_frame{n:02d}.nii.gz")
        _nii(d / f"{pid}_4d.nii.gz", frames=2)
    _junk(root / "training" / "._patient001")
    (root / "training" / "MANDATORY_CITATION.md").write_text("cite")


def test_acdc(tmp_path):
    spec = registry.get("acdc")
    root = tmp_path / "acdc"
    _acdc(root)
    cases = list_cases(spec, root)
    assert [c.case_id for c in cases] == ["patient001_ED", "patient001_ES", "patient002_ED", "patient002_ES"]
    assert [c.patient_id for c in cases] == ["patient001", "patient001", "patient002", "patient002"]
    by_id = {c.case_id: c for c in cases}
    assert by_id["patient001_ES"].image.name == "patient001_frame12.nii.gz"
    assert by_id["patient001_ES"].label.name == "patient001_frame12_gt.nii.gz"
    assert by_id["patient002_ES"].image.name == "patient002_frame09.nii.gz"
    assert all(c.frame is None and c.image.exists() and c.label.exists() for c in cases)
    # placed by hand under <resources>/raw, where the fetch job finds it
    (tmp_path / "res" / "raw").mkdir(parents=True)
    root.rename(tmp_path / "res" / "raw" / "acdc")
    assert [c.case_id for c in list_cases(spec, source_root(spec, tmp_path / "res"))] == [c.case_id for c in cases]


def test_acdc_missing_gt_raises(tmp_path):
    root = tmp_path / "acdc"
    _acdc(root)
    (root / "training" / "patient002" / "patient002_frame09_gt.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="patient002_frame09"):
        list_cases(registry.get("acdc"), root)


# ---------------------------------------------------------------------------------------------- M&Ms

_MNMS_CSV = (",External code,VendorName,Vendor,Centre,ED,ES,Age,Pathology,Sex,Height,Weight\n"
             "0,A0S9V9,Siemens,A,1,0,9,67,DCM,M,180,80\n"
             "1,B1C2D3,Philips,B,2,29,11,50,NOR,F,165,60\n"
             "2,Z9Z9Z9,GE,C,3,0,10,40,HCM,M,170,70\n")


def _mnms(root: Path) -> None:
    for code in ("A0S9V9", "B1C2D3"):
        d = root / "Training" / "Labeled" / code
        _nii(d / f"{code}_sa.nii.gz", shape=(2, 4, 4), frames=30)
        _nii(d / f"{code}_sa_gt.nii.gz", shape=(2, 4, 4), frames=30)
        _junk(d / f"._{code}_sa.nii.gz")
    _junk(root / "Training" / "Labeled" / "._A0S9V9")
    (root / "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv").write_text(_MNMS_CSV)
    _junk(root / "._211230_M&Ms_Dataset_information_diagnosis_opendataset.csv")


def test_mnms(tmp_path):
    spec = registry.get("mnms")
    root = tmp_path / "mnms"
    _mnms(root)
    cases = list_cases(spec, root)
    assert [c.case_id for c in cases] == ["A0S9V9_ED", "A0S9V9_ES", "B1C2D3_ED", "B1C2D3_ES"]
    assert [c.patient_id for c in cases] == ["A0S9V9", "A0S9V9", "B1C2D3", "B1C2D3"]
    assert [c.frame for c in cases] == [0, 9, 29, 11]
    assert cases[0].image.name == "A0S9V9_sa.nii.gz" and cases[0].label.name == "A0S9V9_sa_gt.nii.gz"
    assert sitk.ReadImage(str(cases[0].image)).GetDimension() == 4


def test_mnms_without_csv_raises(tmp_path):
    root = tmp_path / "mnms"
    _mnms(root)
    next(root.glob("2*.csv")).unlink()
    with pytest.raises(FileNotFoundError, match="External code"):
        list_cases(registry.get("mnms"), root)


# ---------------------------------------------------------------------------------------------- MM-WHS


def _oriented(path: Path, spacing, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), shape=(3, 4, 4)) -> Path:
    """A zero volume with the given spacing (x, y, z) and direction (row-major 3x3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(np.zeros(shape, np.int16))
    img.SetSpacing([float(v) for v in spacing])
    img.SetDirection([float(v) for v in direction])
    sitk.WriteImage(img, str(path))
    return path


_SAGITTAL = (1.6, 1.0, 1.0)  # thick along x (L-R): acquired sagittally
_CORONAL = (1.0, 1.6, 1.0)  # thick along y (A-P): frontal


@pytest.mark.parametrize("name,sub", [("mmwhs_ct", "ct_train"), ("mmwhs_mri", "mr_train")])
def test_mmwhs(tmp_path, name, sub):
    spec = registry.get(name)
    root = tmp_path / name
    if sub == "mr_train":  # 3 scans: a folder of one's own (the release itself must hold 14 sagittal ones)
        from dataclasses import replace

        spec = replace(spec, source=registry.LocalSource(str(root)))
    for i in (1001, 1002, 1003):
        for kind in ("image", "label"):
            if sub == "mr_train":
                _oriented(root / sub / f"{sub}_{i}_{kind}.nii.gz", _SAGITTAL)
            else:
                _nii(root / sub / f"{sub}_{i}_{kind}.nii.gz")
    _junk(root / sub / f"._{sub}_1001_image.nii.gz")
    _junk(root / sub / f"._{sub}_1001_label.nii.gz")
    cases = list_cases(spec, root)
    assert [c.case_id for c in cases] == [f"{sub}_1001", f"{sub}_1002", f"{sub}_1003"]
    assert [c.patient_id for c in cases] == [c.case_id for c in cases]
    assert cases[1].image.name == f"{sub}_1002_image.nii.gz"
    assert cases[1].label.name == f"{sub}_1002_label.nii.gz"
    assert all(c.frame is None for c in cases)


def test_acquired_plane_from_header(tmp_path):
    from medssl.data.orientation import acquired_plane

    assert acquired_plane(_oriented(tmp_path / "s.nii.gz", _SAGITTAL)) == "sagittal"
    assert acquired_plane(_oriented(tmp_path / "c.nii.gz", _CORONAL)) == "coronal"
    assert acquired_plane(_oriented(tmp_path / "a.nii.gz", (1.0, 1.0, 2.0))) == "axial"
    # isotropic: the file's third index axis; here it runs along x (direction column 3 = L-R)
    permuted = (0, 0, 1, 1, 0, 0, 0, 1, 0)  # columns: i -> y, j -> z, k -> x
    assert acquired_plane(_oriented(tmp_path / "p.nii.gz", (1.0, 1.0, 1.0), permuted)) == "sagittal"
    assert acquired_plane(_oriented(tmp_path / "i.nii.gz", (1.0, 1.0, 1.0))) == "axial"
    # thick index axis k stored along x by the direction matrix: still sagittal
    assert acquired_plane(_oriented(tmp_path / "k.nii.gz", (1.0, 1.0, 1.6), permuted)) == "sagittal"


def test_mmwhs_mri_keeps_only_sagittal_scans(tmp_path):
    """Paper B: the 14 sagittal MR scans of 20; frontal (coronal) ones are left out of the listing."""
    spec = registry.get("mmwhs_mri")
    assert spec.acquired_plane == "sagittal"
    root = tmp_path / "mmwhs_mri" / "mr_train"
    for i in range(1001, 1021):
        plane = _CORONAL if i in (1004, 1008, 1012, 1016, 1019, 1020) else _SAGITTAL
        for kind in ("image", "label"):
            _oriented(root / f"mr_train_{i}_{kind}.nii.gz", plane)
    cases = list_cases(spec, root.parent)
    assert len(cases) == 14
    assert "mr_train_1004" not in {c.case_id for c in cases} and cases[0].case_id == "mr_train_1001"
    # CT has no plane filter: every scan is kept whatever its geometry
    assert registry.get("mmwhs_ct").acquired_plane is None
    for f in root.glob("*_image.nii.gz"):
        _oriented(f, _CORONAL)
    with pytest.raises(ValueError, match="0 of the 20 scans .* sagittal plane"):  # the release: 14 expected
        list_cases(spec, root.parent)
    from dataclasses import replace

    own = replace(spec, source=registry.LocalSource(str(root.parent)))  # declared with `path:`
    with pytest.raises(FileNotFoundError, match="sagittal plane"):
        list_cases(own, root.parent)


def test_mmwhs_mri_twin_is_sagittal(tmp_path):
    """The demo's phantom twin of MM-WHS MRI passes the plane filter (all its patients are kept)."""
    from medssl.data.phantoms import write_phantom_dataset

    root = tmp_path / "twin"
    write_phantom_dataset(registry.get("mmwhs_mri"), root, n_patients=3, seed=0, scale=0.1)
    assert len(list_cases(registry.get("mmwhs_mri"), root, source_format="msd")) == 3


# ---------------------------------------------------------------------------------------------- OAI-ZIB


def test_oai_zib(tmp_path):
    spec = registry.get("oai_zib")
    root = tmp_path / "oai_zib"
    for case in ("9001104", "9002116"):
        _nii(root / "images" / f"{case}.nii.gz")
        _nii(root / "labels" / f"{case}.nii.gz")
        _junk(root / "images" / f"._{case}.nii.gz")
    _junk(root / "labels" / "._9001104.nii.gz")
    cases = list_cases(spec, root)
    assert [c.case_id for c in cases] == ["9001104", "9002116"]
    assert [c.patient_id for c in cases] == ["9001104", "9002116"]
    assert cases[0].image == root / "images" / "9001104.nii.gz"
    assert cases[0].label == root / "labels" / "9001104.nii.gz"


def test_oai_zib_missing_label_raises(tmp_path):
    root = tmp_path / "oai_zib"
    _nii(root / "images" / "1.nii.gz")
    (root / "labels").mkdir()
    with pytest.raises(FileNotFoundError, match="1.nii.gz"):
        list_cases(registry.get("oai_zib"), root)


def test_real_format_conventions(tmp_path):
    """Point 9 (registry docstring): M&Ms CSV ED/ES are 0-based time indices (ED 0 and the last frame, 29 of
    30, both read); OAI-ZIB tibial cartilage is label 4, or 4 (medial) + 5 (lateral) in OAI-ZIB-CM."""
    from medssl.data.nifti import read_case

    root = tmp_path / "mnms"
    _mnms(root)
    cases = {c.case_id: c for c in list_cases(registry.get("mnms"), root)}
    first, last = cases["A0S9V9_ED"], cases["B1C2D3_ED"]
    assert (first.frame, last.frame) == (0, 29)
    for case in (first, last):
        image, label = read_case(case)
        assert image.GetDimension() == label.GetDimension() == 3
    lm = registry.get("oai_zib").label_map()
    names = registry.get("oai_zib").class_names
    assert names[lm[4] - 1] == names[lm[5] - 1] == "tibia cartilage"
    assert names[lm[2] - 1] == "femur cartilage" and names[lm[3] - 1] == "tibia bone"
    # ACDC: Info.cfg's numbers are the frame numbers of the file names (1-based), e.g. ES 12 -> frame12
    _acdc(tmp_path / "acdc")
    es = {c.case_id: c for c in list_cases(registry.get("acdc"), tmp_path / "acdc")}["patient001_ES"]
    assert es.image.name == "patient001_frame12.nii.gz" and es.frame is None


# ----------------------------------------------------------------- missing files: the exact names looked for
def test_oai_zib_accepts_the_release_mask_names(tmp_path):
    """OAI-ZIB ships masks as segmentation_masks/<id>.segmentation_masks.mhd (+ .raw): read as they are,
    from labels/ or from the release's own segmentation_masks/ folder."""
    spec = registry.get("oai_zib")
    for folder in ("labels", "segmentation_masks"):
        root = tmp_path / folder / "oai_zib"
        _nii(root / "images" / "9001104.nii.gz")
        _nii(root / folder / "9001104.segmentation_masks.mhd")
        assert (root / folder / "9001104.segmentation_masks.raw").is_file()
        cases = list_cases(spec, root)
        assert [c.case_id for c in cases] == ["9001104"]
        assert cases[0].label == root / folder / "9001104.segmentation_masks.mhd"


def test_oai_zib_missing_label_names_the_file_names_looked_for(tmp_path):
    root = tmp_path / "oai_zib"
    _nii(root / "images" / "9001104.nii.gz")
    (root / "labels").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        list_cases(registry.get("oai_zib"), root)
    msg = str(err.value)
    assert "9001104.nii.gz" in msg and "9001104.segmentation_masks.mhd" in msg
    assert str(root / "labels") in msg and "\n" not in msg


def test_oai_zib_mhd_without_its_raw_is_named(tmp_path):
    root = tmp_path / "oai_zib"
    _nii(root / "images" / "9001104.nii.gz")
    _nii(root / "labels" / "9001104.segmentation_masks.mhd")
    (root / "labels" / "9001104.segmentation_masks.raw").unlink()
    with pytest.raises(FileNotFoundError, match=r"9001104\.segmentation_masks\.raw"):
        list_cases(registry.get("oai_zib"), root)


def test_mmwhs_missing_label_names_the_file_names_looked_for(tmp_path):
    root = tmp_path / "mmwhs_ct"
    _nii(root / "ct_train" / "ct_train_1001_image.nii.gz")
    with pytest.raises(FileNotFoundError) as err:
        list_cases(registry.get("mmwhs_ct"), root)
    msg = str(err.value)
    assert "ct_train_1001_label.nii.gz" in msg and "ct_train_1001_label.mha" in msg
    assert str(root / "ct_train") in msg


@pytest.mark.parametrize("gone, other", [("patient002_frame09_gt.nii.gz", "patient002_frame09.nii.gz"),
                                         ("patient002_frame09.nii.gz", "patient002_frame09_gt.nii.gz")])
def test_acdc_names_the_missing_file_of_the_pair(tmp_path, gone, other):
    root = tmp_path / "acdc"
    _acdc(root)
    (root / "training" / "patient002" / gone).unlink()
    with pytest.raises(FileNotFoundError) as err:
        list_cases(registry.get("acdc"), root)
    msg = str(err.value)
    assert f"{root / 'training' / 'patient002' / gone} is missing" in msg
    assert f"{other} is missing" not in msg and "ES" in msg


@pytest.mark.parametrize("gone", ["B1C2D3_sa.nii.gz", "B1C2D3_sa_gt.nii.gz"])
def test_mnms_names_the_missing_file_of_the_pair(tmp_path, gone):
    root = tmp_path / "mnms"
    _mnms(root)
    (root / "Training" / "Labeled" / "B1C2D3" / gone).unlink()
    with pytest.raises(FileNotFoundError) as err:
        list_cases(registry.get("mnms"), root)
    assert f"{root / 'Training' / 'Labeled' / 'B1C2D3' / gone} is missing" in str(err.value)


def test_mnms_missing_csv_names_every_place_searched_and_the_names_accepted(tmp_path):
    root = tmp_path / "mnms"
    _mnms(root / "OpenDataset")
    next((root / "OpenDataset").glob("2*.csv")).unlink()
    (root / "OpenDataset" / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FileNotFoundError) as err:
        list_cases(registry.get("mnms"), root)
    msg = str(err.value)
    assert str(root) in msg and str(root / "OpenDataset") in msg
    assert "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv" in msg
    assert "211006_M&Ms_Dataset_Information_-_opendataset.csv" in msg
    assert "notes.csv" in msg  # a CSV found without the columns is named
    assert "External code" in msg and "\n" not in msg


# --------------------------------------------------------------------- MM-WHS MRI: paper B's 14 sagittal scans
def _mmwhs_mri(root: Path, coronal: set[int]) -> Path:
    for i in range(1001, 1021):
        plane = _CORONAL if i in coronal else _SAGITTAL
        for kind in ("image", "label"):
            _oriented(root / "mr_train" / f"mr_train_{i}_{kind}.nii.gz", plane)
    return root


def test_mmwhs_mri_release_must_hold_14_sagittal_scans(tmp_path):
    spec = registry.get("mmwhs_mri")
    root = _mmwhs_mri(tmp_path / "mmwhs_mri", coronal={1004, 1008, 1012, 1016, 1019})  # 15 sagittal
    with pytest.raises(ValueError) as err:
        list_cases(spec, root)
    msg = str(err.value)
    assert "15" in msg and "14" in msg and "\n" not in msg
    for i in range(1001, 1021):  # every scan, with its plane and spacing
        plane = "coronal" if i in {1004, 1008, 1012, 1016, 1019} else "sagittal"
        assert f"mr_train_{i} {plane}" in msg
    assert "1.6 x 1 x 1 mm" in msg and "1 x 1.6 x 1 mm" in msg
    assert f"datasets: {{mmwhs_mri: {{path: {root}}}}}" in msg


def test_mmwhs_mri_count_is_not_enforced_for_a_folder_declared_with_path(tmp_path):
    """Declared with `path:` the folder is read in place: the sagittal filter stays, the count of 14 is not
    checked (the user's own selection)."""
    from dataclasses import replace

    root = _mmwhs_mri(tmp_path / "mine", coronal={1004, 1008, 1012, 1016, 1019})
    spec = replace(registry.get("mmwhs_mri"), source=registry.LocalSource(str(root)))
    assert len(list_cases(spec, root)) == 15


def test_mmwhs_mri_twin_is_not_held_to_14_scans(tmp_path):
    """The synthetic twin (MSD layout, `patients` scans) is listed by the MSD lister: no count check."""
    from medssl.data.phantoms import write_phantom_dataset

    write_phantom_dataset(registry.get("mmwhs_mri"), tmp_path / "twin", n_patients=2, seed=0, scale=0.1)
    assert len(list_cases(registry.get("mmwhs_mri"), tmp_path / "twin", source_format="msd")) == 2
