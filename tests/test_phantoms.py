"""Phantom twins: layout, determinism, classes, continuity, intensities, channels, frames, direction."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import SimpleITK as sitk

from medssl import registry
from medssl.data.listers import list_msd_cases
from medssl.data.phantoms import (MIN_INPLANE, MIN_SLICES, geometry, render_patient,
                                  write_phantom_dataset)
from medssl.registry import DatasetSpec, UrlSource

SCALE = 0.1
N_PATIENTS = 3
NAMES = sorted(registry.REGISTRY)
MRI = [n for n in NAMES if registry.get(n).modality == "MRI"]
CT = [n for n in NAMES if registry.get(n).modality == "CT"]


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    for name in NAMES:
        write_phantom_dataset(registry.get(name), root / name, n_patients=N_PATIENTS, seed=0, scale=SCALE)
    return root


def _cases(twins, name):
    spec = registry.get(name)
    return spec, list_msd_cases(spec, twins / name)


def _read(path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def _channel0(img: sitk.Image) -> sitk.Image:
    if img.GetDimension() == 4:
        size = list(img.GetSize())
        return sitk.Extract(img, size[:3] + [0], [0, 0, 0, 0])
    return img


def _slices(spec, img: sitk.Image) -> np.ndarray:
    """Slices along the spec's slice axis: (n, h, w). Anatomical axes after reorienting to LPS."""
    if spec.slice_axis != "acquisition":
        img = sitk.DICOMOrient(img, "LPS")
    arr = sitk.GetArrayFromImage(img)  # (z, y, x)
    axis = {"axial": 0, "acquisition": 0, "coronal": 1, "sagittal": 2}[spec.slice_axis]
    return np.moveaxis(arr, axis, 0)


def _dice(a, b):
    s = a.sum() + b.sum()
    return 2.0 * (a & b).sum() / s


# ------------------------------------------------------------------------------------------------ layout


@pytest.mark.parametrize("name", NAMES)
def test_dataset_json_lists_every_case(twins, name):
    spec, cases = _cases(twins, name)
    meta = json.loads((twins / name / "dataset.json").read_text())
    n_frames = len(spec.frames) or 1
    assert meta["synthetic"] is True
    assert meta["numTraining"] == len(meta["training"]) == N_PATIENTS * n_frames == len(cases)
    assert meta["labels"]["0"] == "background"
    assert {int(k) for k in meta["labels"]} == {0} | {v for _, vals in spec.classes for v in vals}
    expected_mod = {"0": "CT"} if spec.modality == "CT" else ({"0": "MRI"} if spec.channel is None
                                                               else {"0": "T2", "1": "ADC"})
    assert meta["modality"] == expected_mod
    for entry in meta["training"]:
        assert entry["image"].startswith("./imagesTr/") and entry["label"].startswith("./labelsTr/")
        assert (twins / name / entry["image"]).is_file() and (twins / name / entry["label"]).is_file()
    assert len({c.patient_id for c in cases}) == N_PATIENTS
    assert all(c.channel == spec.channel for c in cases)
    # nothing but the finished folder is left beside it
    assert not [p for p in twins.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", ["acdc", "mnms"])
def test_cine_frames_are_cases_of_one_patient(twins, name):
    spec, cases = _cases(twins, name)
    by_patient: dict[str, list[str]] = {}
    for c in cases:
        by_patient.setdefault(c.patient_id, []).append(c.case_id)
    assert len(by_patient) == N_PATIENTS
    for pid, ids in by_patient.items():
        assert sorted(ids) == [f"{pid}_ED", f"{pid}_ES"]
    # ES: same patient, contracted LV cavity
    lv = spec.classes[spec.class_names.index("LV")][1][0]
    for pid in by_patient:
        ed = sitk.GetArrayFromImage(_read(twins / name / "labelsTr" / f"{pid}_ED.nii.gz"))
        es = sitk.GetArrayFromImage(_read(twins / name / "labelsTr" / f"{pid}_ES.nii.gz"))
        assert (es == lv).sum() < 0.8 * (ed == lv).sum()


@pytest.mark.parametrize("name", NAMES)
def test_every_class_in_every_case(twins, name):
    spec, cases = _cases(twins, name)
    wanted = {0} | {vals[0] for _, vals in spec.classes}
    volumes = []
    for c in cases:
        lab = _read(c.label)
        img = _read(c.image)
        assert lab.GetDimension() == 3
        assert img.GetSize()[:3] == lab.GetSize()
        assert img.GetDirection()[:3] == lab.GetDirection()[:3]
        arr = sitk.GetArrayFromImage(lab)
        assert set(np.unique(arr).tolist()) == wanted, c.case_id
        volumes.append(tuple((arr == v).sum() for v in sorted(wanted)))
    assert len(set(volumes)) == len(volumes), "patients should differ in shape"


def test_minimum_sizes_at_demo_scale():
    for name in NAMES:
        spec = registry.get(name)
        geo = geometry(spec, 0.25)
        for a, n in enumerate(geo.size):
            assert n >= (MIN_SLICES if a == geo.slice_axis else MIN_INPLANE), (name, geo)
        assert geo.slice_axis == (0 if spec.slice_axis == "sagittal" else 2)


# ------------------------------------------------------------------------------------------------ determinism


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(twins, tmp_path):
    spec = registry.get("msd_prostate")
    again = write_phantom_dataset(spec, tmp_path / "again", n_patients=N_PATIENTS, seed=0, scale=SCALE)
    assert _digest(again) == _digest(twins / "msd_prostate")
    # rewriting onto an existing folder replaces it atomically, same bytes
    write_phantom_dataset(spec, again, n_patients=N_PATIENTS, seed=0, scale=SCALE)
    assert _digest(again) == _digest(twins / "msd_prostate")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def test_different_seeds_differ(twins, tmp_path):
    spec = registry.get("msd_spleen")
    other = write_phantom_dataset(spec, tmp_path / "other", n_patients=N_PATIENTS, seed=1, scale=SCALE)
    for a, b in zip(list_msd_cases(spec, twins / "msd_spleen"), list_msd_cases(spec, other)):
        assert a.case_id == b.case_id
        ia, ib = (sitk.GetArrayFromImage(_read(c.image)) for c in (a, b))
        la, lb = (sitk.GetArrayFromImage(_read(c.label)) for c in (a, b))
        assert not np.array_equal(ia, ib)
        assert not np.array_equal(la, lb)


# ------------------------------------------------------------------------------------------------ content


def _continuity(x: np.ndarray, fg: np.ndarray) -> tuple[float, float, float, float]:
    """Image MAD and foreground Dice of adjacent slices vs slices at least n/2 apart."""
    x = x.astype(np.float32)
    lo, hi = np.percentile(x, [0.5, 99.5])
    x = ndi.uniform_filter(np.clip((x - lo) / (hi - lo), 0, 1), size=(1, 3, 3))  # damp voxel noise
    n = len(x)
    near = [(k, k + 1) for k in range(n - 1)]
    far = [(a, b) for a in range(n) for b in range(a + n // 2, n)]
    mad_near = np.mean([np.abs(x[a] - x[b]).mean() for a, b in near])
    mad_far = np.mean([np.abs(x[a] - x[b]).mean() for a, b in far])
    d_near = np.median([_dice(fg[a], fg[b]) for a, b in near if fg[a].any() and fg[b].any()])
    d_far = np.mean([_dice(fg[a], fg[b]) for a, b in far if fg[a].any() or fg[b].any()])
    return mad_near, mad_far, d_near, d_far


@pytest.mark.parametrize("name", NAMES)
def test_slices_change_smoothly_along_the_slice_axis(twins, name):
    spec, cases = _cases(twins, name)
    for c in cases:
        fg = _slices(spec, _read(c.label)) > 0
        mad_near, mad_far, d_near, d_far = _continuity(_slices(spec, _channel0(_read(c.image))), fg)
        # scale 0.1 is coarse (16 slices across a knee, 32 px across a thorax): looser bounds than at the
        # demo scale below
        assert mad_near < 0.65 * mad_far, (c.case_id, mad_near, mad_far)
        assert d_near > 0.5, (c.case_id, d_near)
        assert d_near > d_far + 0.25, (c.case_id, d_near, d_far)
        assert fg.any(axis=(1, 2)).sum() >= 4, c.case_id  # the labelled anatomy spans several slices


@pytest.mark.parametrize("name", NAMES)
def test_slices_change_smoothly_at_demo_scale(name):
    spec = registry.get(name)
    case = render_patient(spec, 0, seed=0, scale=0.25)[0]  # canonical LPS arrays, (z, y, x)
    axis = {"axial": 0, "acquisition": 0, "coronal": 1, "sagittal": 2}[spec.slice_axis]
    x, fg = (np.moveaxis(a, axis, 0) for a in (case.image[0], case.label > 0))
    mad_near, mad_far, d_near, d_far = _continuity(x, fg)
    assert mad_near < 0.45 * mad_far, (name, mad_near, mad_far)
    assert d_near > 0.75 and d_near > d_far + 0.35, (name, d_near, d_far)
    assert fg.any(axis=(1, 2)).sum() >= 8, name


@pytest.mark.parametrize("name", CT)
def test_ct_values_are_hounsfield_units(twins, name):
    spec, cases = _cases(twins, name)
    for c in cases:
        img = _read(c.image)
        assert img.GetPixelID() == sitk.sitkInt16
        x = sitk.GetArrayFromImage(img)
        lab = sitk.GetArrayFromImage(_read(c.label))
        assert x.min() >= -1024 and x.max() <= 3071
        assert (x < -850).mean() > 0.03  # air outside the body / lungs
        assert ((x > -150) & (x < -50)).mean() > 0.005  # fat
        for _, vals in spec.classes:
            organ = ndi.binary_erosion(lab == vals[0]) if (lab == vals[0]).sum() > 200 else lab == vals[0]
            assert -50 < np.median(x[organ]) < 450, (c.case_id, vals)


def _log_trend(img: np.ndarray, lab: np.ndarray) -> float:
    """|gradient| of a linear fit of log intensity over the labelled voxels (one intercept per class)."""
    coords = np.indices(img.shape).astype(np.float64)
    coords = [2 * coords[a] / (img.shape[a] - 1) - 1 for a in range(3)]
    rows, ys = [], []
    values = [v for v in np.unique(lab) if v]
    for k, v in enumerate(values):
        m = lab == v
        eroded = ndi.binary_erosion(m)
        m = eroded if eroded.sum() > 50 else m
        onehot = np.zeros((m.sum(), len(values)))
        onehot[:, k] = 1
        rows.append(np.column_stack([onehot] + [c[m] for c in coords]))
        ys.append(np.log(np.maximum(img[m].astype(np.float64), 1.0)))
    beta = np.linalg.lstsq(np.vstack(rows), np.concatenate(ys), rcond=None)[0]
    return float(np.linalg.norm(beta[-3:]))


@pytest.mark.parametrize("name", MRI)
def test_mri_has_a_smooth_bias_field(twins, name):
    spec, cases = _cases(twins, name)
    for c in cases:
        img = _read(c.image)
        assert img.GetPixelID() in (sitk.sitkInt16, sitk.sitkFloat32)
        x = sitk.GetArrayFromImage(_channel0(img))
        assert x.min() >= 0
        lab = sitk.GetArrayFromImage(_read(c.label))
        assert _log_trend(x, lab) > 0.06, c.case_id


def test_ct_has_no_bias_field(twins):
    spec, cases = _cases(twins, "msd_liver")
    for c in cases:
        x = sitk.GetArrayFromImage(_read(c.image)).astype(np.float64) + 1024.0
        lab = sitk.GetArrayFromImage(_read(c.label))
        assert _log_trend(x, lab) < 0.03


def test_prostate_is_4d_with_two_channels(twins):
    spec, cases = _cases(twins, "msd_prostate")
    assert spec.channel == 0
    meta = json.loads((twins / "msd_prostate" / "dataset.json").read_text())
    assert meta["tensorImageSize"] == "4D"
    for c in cases:
        img = _read(c.image)
        lab = _read(c.label)
        assert img.GetDimension() == 4 and img.GetSize()[3] == 2
        arr = sitk.GetArrayFromImage(img)
        assert arr.shape == (2,) + sitk.GetArrayFromImage(lab).shape
        t2 = _channel0(img)
        assert np.array_equal(sitk.GetArrayFromImage(t2), arr[0])
        assert t2.GetSpacing() == lab.GetSpacing()
        # two different contrasts: T2 PZ brighter than TZ; ADC of urine far above tissue
        l = sitk.GetArrayFromImage(lab)
        assert arr[0][l == 1].mean() > arr[0][l == 2].mean()
        assert not np.array_equal(arr[0], arr[1])


def test_spleen_twin_has_a_flipped_direction_and_the_same_anatomy(twins):
    spec, cases = _cases(twins, "msd_spleen")
    for i, c in enumerate(cases):
        img, lab = _read(c.image), _read(c.label)
        assert img.GetDirection() == (-1, 0, 0, 0, -1, 0, 0, 0, 1)
        assert lab.GetDirection() == img.GetDirection()
        canonical = render_patient(spec, i, seed=0, scale=SCALE)[0]
        lps = sitk.DICOMOrient(img, "LPS")
        assert lps.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
        assert np.array_equal(sitk.GetArrayFromImage(lps), canonical.image[0])
        assert np.array_equal(sitk.GetArrayFromImage(sitk.DICOMOrient(lab, "LPS")), canonical.label)
        # spleen on the patient's left (+x in LPS), whatever the storage order
        centroid = np.argwhere(sitk.GetArrayFromImage(lab) == 1).mean(axis=0)[::-1]
        assert lab.TransformContinuousIndexToPhysicalPoint(centroid.tolist())[0] > 0
    for name in NAMES:
        if name != "msd_spleen":
            _, other = _cases(twins, name)
            assert _read(other[0].image).GetDirection()[:3] == (1, 0, 0)
    # the identity-direction liver twin shares the layout: liver on the patient's right (-x)
    _, liver = _cases(twins, "msd_liver")
    lab = _read(liver[0].label)
    centroid = np.argwhere(sitk.GetArrayFromImage(lab) == 1).mean(axis=0)[::-1]
    assert lab.TransformContinuousIndexToPhysicalPoint(centroid.tolist())[0] < 0


def test_datasets_are_distinguishable(twins):
    """Different twins differ in size, spacing or intensity statistics (a task classifier can learn)."""
    sig = {}
    for name in NAMES:
        spec, cases = _cases(twins, name)
        img = _channel0(_read(cases[0].image))
        x = sitk.GetArrayFromImage(img)
        sig[name] = (img.GetSize(), tuple(round(s, 3) for s in img.GetSpacing()),
                     round(float(np.percentile(x, 50)), -1), round(float(np.percentile(x, 99)), -1))
    assert len(set(sig.values())) == len(sig)


# ------------------------------------------------------------------------------------------------ any spec


@pytest.mark.parametrize("modality,roi,channel,axis", [("MRI", "brain", 1, "sagittal"),
                                                       ("CT", "kidney", None, "axial"),
                                                       ("MRI", "heart", None, "coronal")])
def test_any_registry_entry_gets_a_twin(tmp_path, modality, roi, channel, axis):
    spec = DatasetSpec(
        name=f"toy_{roi}", title="toy", modality=modality, roi=roi,
        classes=(("tumour", (4,)), ("oedema", (2,)), ("LV", (7,))),
        source=UrlSource(url="https://example.invalid/x.tar", md5="0" * 32, archive="x.tar", root="x"),
        channel=channel, slice_axis=axis,
    )
    out = write_phantom_dataset(spec, tmp_path / spec.name, n_patients=2, seed=3, scale=SCALE)
    cases = list_msd_cases(spec, out)
    assert len(cases) == 2
    for c in cases:
        img, lab = _read(c.image), _read(c.label)
        assert set(np.unique(sitk.GetArrayFromImage(lab)).tolist()) == {0, 2, 4, 7}
        if channel is not None:
            assert img.GetDimension() == 4 and img.GetSize()[3] == channel + 1
        assert _slices(spec, lab).shape[0] >= MIN_SLICES


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import medssl.data.phantoms as ph

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ph, "write_json", boom)
    with pytest.raises(RuntimeError):
        write_phantom_dataset(registry.get("msd_heart"), tmp_path / "x", n_patients=1, seed=0, scale=SCALE)
    assert list(tmp_path.iterdir()) == []
