"""Slicing 3D/4D cases into the slice store: orientation, normalisation, resizing, label maps, errors."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from medssl import registry
from medssl.settings import DatasetSettings
from medssl.data.cases import Case
from medssl.data.intensity import percentiles
from medssl.data.labels import label_lut, remap_labels, resize_labels
from medssl.data.orientation import slice_stack
from medssl.data.slicing import SlicingError, slice_dataset
from medssl.data.store import SliceStore

Z, Y, X = 6, 10, 12  # numpy order of the test volumes


def settings_for(name: str, *, image_size: int = 16, slice_axis: str | None = None, **kw) -> DatasetSettings:
    spec = registry.get(name)
    base = DatasetSettings(spec=spec, image_size=image_size, slice_axis=slice_axis or spec.slice_axis,
                           ct_window=(-200.0, 300.0), mri_percentiles=(0.5, 99.5),
                           split={"ratios": [0.7, 0.1, 0.2], "seed": 0}, scans_subset=None,
                           synthetic_patients=5)
    return dataclasses.replace(base, **kw)


def mri_volume(seed: int = 0, shape=(Z, Y, X)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1000, shape).astype(np.int16)


def blob_label(shape=(Z, Y, X), values=(1, 2)) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[1:4, 2:6, 3:8] = values[0]
    lab[2:5, 5:9, 6:11] = values[1]
    return lab


def to_image(arr: np.ndarray, spacing=(1.0, 1.5, 2.0), origin=(0.0, 0.0, 0.0), direction=None,
             vector=False) -> sitk.Image:
    img = sitk.GetImageFromArray(arr, isVector=vector)
    dim = img.GetDimension()
    img.SetSpacing(tuple(spacing) + (1.0,) * (dim - len(spacing)))
    img.SetOrigin(tuple(origin) + (0.0,) * (dim - len(origin)))
    if direction is not None:
        img.SetDirection(tuple(np.asarray(direction, float).ravel()))
    return img


def write_case(tmp_path, case_id, image, label, patient=None, **kw) -> Case:
    ip, lp = tmp_path / f"{case_id}_img.nii.gz", tmp_path / f"{case_id}_lab.nii.gz"
    sitk.WriteImage(image, str(ip))
    sitk.WriteImage(label, str(lp))
    return Case(case_id, patient or case_id, ip, lp, **kw)


def load(out):
    store = SliceStore(out)
    return np.asarray(store.images), np.asarray(store.labels), store


# -------------------------------------------------------------------------------------------------- orientation


def test_slice_stack_matches_dicomorient_for_all_48_orientations():
    a = mri_volume()
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product([1, -1], repeat=3):
            d = np.zeros((3, 3))
            for c in range(3):
                d[perm[c], c] = signs[c]
            img = to_image(a, direction=d)
            ref = sitk.GetArrayFromImage(sitk.DICOMOrient(img, "LPS"))
            got = slice_stack(sitk.GetArrayViewFromImage(img), d, "axial")
            assert got.shape == ref.shape and np.array_equal(got, ref), (perm, signs)


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_flipped_direction_slices_like_canonical_twin(tmp_path, axis):
    a, lab = mri_volume(), blob_label()
    spacing = (1.0, 1.5, 2.0)
    canon = write_case(tmp_path, "canon", to_image(a, spacing), to_image(lab, spacing))
    # the twin of the task description: direction diag(-1, 1, 1), voxels flipped along x, origin moved
    origin = ((X - 1) * spacing[0], 0.0, 0.0)
    d = np.diag([-1.0, 1.0, 1.0])
    flip = write_case(tmp_path, "flip", to_image(a[:, :, ::-1].copy(), spacing, origin, d),
                      to_image(lab[:, :, ::-1].copy(), spacing, origin, d))
    # a permuted and flipped twin made by ITK itself (same physical space)
    img2 = sitk.DICOMOrient(to_image(a, spacing), "SAR")
    lab2 = sitk.DICOMOrient(to_image(lab, spacing), "SAR")
    assert sitk.GetArrayFromImage(img2).shape != a.shape
    perm = write_case(tmp_path, "perm", img2, lab2)
    st = settings_for("msd_prostate", slice_axis=axis)
    stores = []
    for case in (canon, flip, perm):
        out = tmp_path / f"store_{axis}_{case.case_id}"
        slice_dataset(st, [case], out, synthetic=True)
        stores.append(load(out))
    n_expected = {"axial": Z, "coronal": Y, "sagittal": X}[axis]
    for imgs, labs, store in stores[1:]:
        assert imgs.shape == stores[0][0].shape == (n_expected, 16, 16)
        np.testing.assert_array_equal(imgs, stores[0][0])
        np.testing.assert_array_equal(labs, stores[0][1])
        assert store.meta["spacing"][store.index["case"][0]] == stores[0][2].meta["spacing"]["canon"]


def test_axis_conventions(tmp_path):
    """Canonical LPS: axial rows = posterior index, cols = left index; coronal/sagittal superior up."""
    a = np.zeros((Z, Y, X), np.int16)
    a[Z - 1, 0, 0] = 1000  # most superior, anterior, right voxel
    a[0, 0, 0] = 500
    lab = np.zeros_like(a, dtype=np.uint8)
    case = write_case(tmp_path, "c", to_image(a), to_image(lab))
    got = {}
    for axis in ("axial", "coronal", "sagittal"):
        st = settings_for("msd_spleen", slice_axis=axis, image_size=X, ct_window=(0.0, 1000.0))
        slice_dataset(st, [case], tmp_path / axis, synthetic=True)
        got[axis] = np.asarray(SliceStore(tmp_path / axis).images, dtype=np.float32)
    # axial: slice index = k (inferior -> superior); the voxel is in the last slice, top-left
    assert got["axial"].shape[0] == Z and got["axial"][Z - 1, 0, 0] > 0.5 and got["axial"][0, 0, 0] > 0.25
    # coronal: slice 0 = most anterior; superior at the top row
    assert got["coronal"].shape[0] == Y and got["coronal"][0, 0, 0] > 0.5
    # sagittal: slice 0 = most right; superior at the top, anterior at the left
    assert got["sagittal"].shape[0] == X and got["sagittal"][0, 0, 0] > 0.5


def test_acquisition_axis_ignores_direction(tmp_path):
    a, lab = mri_volume(), blob_label()
    d = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)
    case = write_case(tmp_path, "c", to_image(a, direction=d), to_image(lab, direction=d))
    st = settings_for("msd_heart", slice_axis="acquisition", image_size=X)
    slice_dataset(st, [case], tmp_path / "s", synthetic=False)
    imgs, labs, store = load(tmp_path / "s")
    assert imgs.shape[0] == Z  # the file's third index axis
    assert store.meta["orientation"] == "acquisition"


# -------------------------------------------------------------------------------------------------- labels


def test_label_remap_prostate(tmp_path):
    lab = blob_label(values=(1, 2))
    lab[0, 0, 0] = 3  # not listed -> background
    case = write_case(tmp_path, "p", to_image(mri_volume()), to_image(lab))
    st = settings_for("msd_prostate", image_size=X, slice_axis="axial")
    slice_dataset(st, [case], tmp_path / "s", synthetic=True)
    _, labs, store = load(tmp_path / "s")
    # square resize of 10x12 to 12x12: compare through the same nearest resize on the source
    src = resize_labels(lab, X)
    np.testing.assert_array_equal(labs[src == 1], 1)  # PZ (MSD 1) -> class 1, in MSD's order (docs/choices.md)
    np.testing.assert_array_equal(labs[src == 2], 2)  # TZ (MSD 2) -> class 2
    np.testing.assert_array_equal(labs[(src == 0) | (src == 3)], 0)  # not a class: background
    assert store.class_names == ["peripheral zone (label 1)", "transition zone (label 2)"]


def test_label_remap_mmwhs_lut():
    lut = label_lut(registry.get("mmwhs_ct").label_map())
    src = np.array([0, 205, 420, 500, 550, 600, 820, 850, 1000, -5], dtype=np.int32)
    expected = [0, 0, 3, 1, 4, 2, 0, 0, 0, 0]
    for dtype in (np.int32, np.int16, np.float32, np.float64):
        out = remap_labels(src.astype(dtype), lut)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(remap_labels(src[:-1].astype(np.uint16), lut), expected[:-1])
    acdc = label_lut(registry.get("acdc").label_map())  # ACDC's 1 RV, 2 MYO, 3 LV -> LV, RV, myocardium
    np.testing.assert_array_equal(remap_labels(np.array([0, 1, 2, 3, 255], np.uint8), acdc), [0, 2, 3, 1, 0])


def test_mmwhs_store_labels(tmp_path):
    lab = np.zeros((Z, Y, X), np.uint16)
    lab[1:3, 1:4, 1:4] = 500
    lab[3:5, 5:8, 5:9] = 205
    lab[3:5, 1:3, 8:11] = 600
    case = write_case(tmp_path, "ct_train_1001", to_image(mri_volume().astype(np.int16) - 500),
                      to_image(lab))
    st = settings_for("mmwhs_ct", image_size=X)
    slice_dataset(st, [case], tmp_path / "s", synthetic=False)
    _, labs, store = load(tmp_path / "s")
    src = resize_labels(lab, X)
    np.testing.assert_array_equal(labs[src == 500], 1)
    np.testing.assert_array_equal(labs[src == 205], 0)
    np.testing.assert_array_equal(labs[src == 600], 2)
    assert set(np.unique(labs)) == {0, 1, 2}
    idx = store.index
    assert list(idx.columns) == ["row", "case", "patient", "slice", "n_slices", "fg", "c1", "c2", "c3", "c4", "sampled"]
    np.testing.assert_array_equal(idx["c1"], [(labs[r] == 1).any() for r in range(len(labs))])
    np.testing.assert_array_equal(idx["fg"], [(labs[r] > 0).any() for r in range(len(labs))])


def test_resize_nearest_keeps_label_values():
    rng = np.random.default_rng(0)
    lab = rng.choice(np.array([0, 3, 7], np.uint8), size=(3, 37, 23))
    for size in (8, 16, 64):
        out = resize_labels(lab, size)
        assert out.shape == (3, size, size) and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 3, 7}


def test_resize_images_range_and_shape():
    from medssl.data.intensity import resize_images

    rng = np.random.default_rng(0)
    for h, w in ((20, 30), (70, 40), (8, 8)):  # shrink > 2x (anti-aliased), shrink < 2x, enlarge
        x = rng.random((3, h, w)).astype(np.float32)
        y = resize_images(x, 16)
        assert y.shape == (3, 16, 16) and y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1
    flat = np.full((2, 70, 40), 0.25, np.float32)
    np.testing.assert_allclose(resize_images(flat, 16), 0.25, atol=1e-6)


# -------------------------------------------------------------------------------------------------- intensities


def test_ct_window_normalisation(tmp_path):
    a = np.linspace(-1000, 1000, Z * Y * X).reshape(Z, Y, X).astype(np.int16)
    a[0, 0, :4] = [-200, 50, 300, 299]
    case = write_case(tmp_path, "spleen_1", to_image(a), to_image(np.zeros_like(a, np.uint8)))
    st = settings_for("msd_spleen", image_size=X, slice_axis="axial")  # 10x12 -> 12x12: rows resized only
    slice_dataset(st, [case], tmp_path / "s", synthetic=True)
    imgs, _, store = load(tmp_path / "s")
    assert imgs.dtype == np.float16 and imgs.min() == 0.0 and imgs.max() == 1.0
    assert store.meta["normalisation"]["method"] == "ct_window"
    # without resizing: exact values
    st = settings_for("msd_spleen", image_size=X, slice_axis="axial")
    sq = np.full((2, X, X), -1000, np.int16)
    sq[0, 0, :5] = [-1000, -200, 50, 300, 3000]
    case = write_case(tmp_path, "spleen_2", to_image(sq), to_image(np.zeros_like(sq, np.uint8)))
    slice_dataset(st, [case], tmp_path / "t", synthetic=True)
    imgs, _, _ = load(tmp_path / "t")
    np.testing.assert_allclose(imgs[0, 0, :5].astype(np.float32), [0, 0, 0.5, 1, 1], atol=1e-3)
    custom = settings_for("msd_spleen", image_size=X, slice_axis="axial", ct_window=(0.0, 100.0))
    slice_dataset(custom, [case], tmp_path / "u", synthetic=True)
    imgs, _, store = load(tmp_path / "u")
    np.testing.assert_allclose(imgs[0, 0, :5].astype(np.float32), [0, 0, 0.5, 1, 1], atol=1e-3)
    assert store.meta["normalisation"]["window"] == [0.0, 100.0]


@pytest.mark.parametrize("pct", [(0.5, 99.5), (5.0, 95.0)])
def test_mri_percentile_normalisation(tmp_path, pct):
    rng = np.random.default_rng(1)
    a = rng.normal(300, 50, (2, X, X)).astype(np.float32)
    a[0, 0, 0], a[1, 0, 0] = 1e5, -1e5  # outliers
    case = write_case(tmp_path, "h", to_image(a), to_image(np.zeros(a.shape, np.uint8)))
    st = settings_for("msd_heart", image_size=X, slice_axis="axial", mri_percentiles=pct)
    slice_dataset(st, [case], tmp_path / "s", synthetic=True)
    imgs, _, store = load(tmp_path / "s")
    lo, hi = np.percentile(a, pct)
    expected = (np.clip(a, lo, hi) - lo) / (hi - lo)
    np.testing.assert_allclose(imgs.astype(np.float32), expected, atol=2e-3)
    assert imgs.min() >= 0 and imgs.max() <= 1 and imgs.max() == 1.0
    np.testing.assert_allclose(store.meta["cases"]["h"]["intensity_range"], [lo, hi], rtol=1e-5)


def test_percentiles_match_numpy():
    rng = np.random.default_rng(2)
    for dtype in (np.int16, np.uint8, np.float32):
        for n in (1, 2, 9, 1001):
            a = (rng.normal(size=n) * 100).astype(dtype)
            for q in ([0.5, 99.5], [0, 100], [50, 10]):
                np.testing.assert_allclose(percentiles(a, q), np.percentile(a, q), rtol=1e-6, atol=1e-5)


# -------------------------------------------------------------------------------------------------- 4D


def test_4d_channel_pick_scalar_and_vector(tmp_path):
    ch = [mri_volume(1), mri_volume(2)]
    lab = to_image(blob_label())
    four = np.stack(ch)  # (c, z, y, x) -> 4D scalar image with channels on the 4th ITK axis
    vec = np.stack(ch, axis=-1)  # (z, y, x, c) -> vector pixels
    img4 = sitk.GetImageFromArray(four, isVector=False)
    img4.SetSpacing((1.0, 1.5, 2.0, 1.0))
    assert img4.GetDimension() == 4
    c4 = write_case(tmp_path, "four", img4, lab, channel=1)
    cv = write_case(tmp_path, "vec", to_image(vec, vector=True), lab, channel=1)
    c3 = write_case(tmp_path, "ref", to_image(ch[1]), lab)
    st = settings_for("msd_prostate")
    out = {}
    for case in (c4, cv, c3):
        slice_dataset(st, [case], tmp_path / case.case_id / "s", synthetic=True)
        out[case.case_id] = load(tmp_path / case.case_id / "s")
    for k in ("four", "vec"):
        np.testing.assert_array_equal(out[k][0], out["ref"][0])
        np.testing.assert_array_equal(out[k][1], out["ref"][1])
    with pytest.raises(SlicingError, match="no channel"):
        slice_dataset(st, [dataclasses.replace(c4, channel=None)], tmp_path / "bad", synthetic=True)


def test_cine_frame_pick(tmp_path):
    frames = [mri_volume(s) for s in range(3)]
    labs = [blob_label(values=(1, 2)) * (t % 2) + blob_label(values=(3, 3)) * (1 - t % 2) for t in range(3)]
    img4 = sitk.GetImageFromArray(np.stack(frames), isVector=False)
    lab4 = sitk.GetImageFromArray(np.stack(labs), isVector=False)
    case = write_case(tmp_path, "pat1_ES", img4, lab4, patient="pat1", frame=1)
    ref = write_case(tmp_path, "ref", sitk.GetImageFromArray(frames[1]), sitk.GetImageFromArray(labs[1]))
    st = settings_for("acdc", image_size=X)
    slice_dataset(st, [case], tmp_path / "a", synthetic=True)
    slice_dataset(st, [ref], tmp_path / "b", synthetic=True)
    a, b = load(tmp_path / "a"), load(tmp_path / "b")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2].index["patient"].unique().tolist() == ["pat1"]
    assert a[2].meta["cases"]["pat1_ES"]["frame"] == 1


# -------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_file_raises_naming_the_file(tmp_path, suffix):
    img = to_image(np.random.default_rng(0).integers(0, 1000, (20, 32, 32)).astype(np.int16))
    good = tmp_path / f"good{suffix}"
    sitk.WriteImage(img, str(good))
    data = good.read_bytes()
    bad = tmp_path / f"broken_image{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    lab = tmp_path / "lab.nii.gz"
    sitk.WriteImage(to_image(np.zeros((20, 32, 32), np.uint8)), str(lab))
    with pytest.raises(SlicingError, match="broken_image"):
        slice_dataset(settings_for("msd_heart"), [Case("c", "c", bad, lab)], tmp_path / "s", synthetic=True)
    garbage = tmp_path / "garbage_label.nii.gz"
    garbage.write_bytes(b"not an image" * 10)
    with pytest.raises(SlicingError, match="garbage_label"):
        slice_dataset(settings_for("msd_heart"), [Case("c", "c", good, garbage)], tmp_path / "s",
                      synthetic=True)
    assert not (tmp_path / "s").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.")]  # no temp folder left


@pytest.mark.parametrize("what", ["size", "spacing", "origin", "direction"])
def test_geometry_mismatch_raises_naming_the_case(tmp_path, what):
    a = mri_volume()
    lab = blob_label()
    kw = {"size": {}, "spacing": {"spacing": (1.0, 1.5, 2.5)}, "origin": {"origin": (0.0, 3.0, 0.0)},
          "direction": {"direction": np.diag([1.0, -1.0, 1.0])}}[what]
    if what == "size":
        lab = lab[:, :, :-1]
    case = write_case(tmp_path, "case_042", to_image(a), to_image(lab, **kw))
    with pytest.raises(SlicingError, match=f"case_042.*{what}"):
        slice_dataset(settings_for("msd_heart"), [case], tmp_path / "s", synthetic=True)


def test_tiny_header_differences_are_tolerated(tmp_path):
    case = write_case(tmp_path, "c", to_image(mri_volume()),
                      to_image(blob_label(), spacing=(1.0, 1.5, 2.0000001), origin=(1e-5, 0, 0)))
    slice_dataset(settings_for("msd_heart"), [case], tmp_path / "s", synthetic=True)


# -------------------------------------------------------------------------------------------------- index


def test_index_order_contiguity_and_meta(tmp_path):
    shapes = {"pat2_ES": 4, "pat1_ED": 6, "pat1_ES": 5, "pat2_ED": 3}  # slices per case, given unsorted
    cases = []
    for i, (cid, nz) in enumerate(shapes.items()):
        lab = np.zeros((nz, Y, X), np.uint8)
        lab[1, 2:5, 2:5] = 1
        lab[nz - 1, 4:8, 4:8] = 3
        cases.append(write_case(tmp_path, cid, to_image(mri_volume(i, (nz, Y, X))), to_image(lab),
                                patient=cid.split("_")[0]))
    st = settings_for("acdc", image_size=16, slice_axis="axial")
    slice_dataset(st, cases, tmp_path / "s", synthetic=True)
    imgs, labs, store = load(tmp_path / "s")
    idx = store.index
    order = sorted(shapes)
    assert idx["row"].tolist() == list(range(sum(shapes.values())))
    assert idx["case"].tolist() == [c for c in order for _ in range(shapes[c])]
    assert idx["slice"].tolist() == [s for c in order for s in range(shapes[c])]
    assert idx["n_slices"].tolist() == [shapes[c] for c in order for _ in range(shapes[c])]
    assert idx["patient"].tolist() == [c.split("_")[0] for c in order for _ in range(shapes[c])]
    # ACDC: 3 (LV) -> 1, 1 (RV) -> 2
    fg = [(labs[r] > 0).any() for r in range(len(labs))]
    assert idx["fg"].astype(bool).tolist() == fg
    assert idx["c1"].sum() == 4 and idx["c2"].sum() == 4 and idx["c3"].sum() == 0
    r0 = store.case_start[idx["case"].tolist().index("pat1_ES")]
    assert r0 == shapes["pat1_ED"] + shapes["pat2_ED"] * 0  # sorted: pat1_ED, pat1_ES, pat2_ED, pat2_ES
    meta = store.meta
    assert meta["n_slices"] == len(idx) == imgs.shape[0] and meta["n_cases"] == 4
    assert meta["synthetic"] is True and meta["task"] == 7 and meta["group"] == 1
    assert meta["image_size"] == 16 and meta["n_classes"] == 4 and meta["slice_axis"] == "axial"
    assert set(meta["spacing"]) == set(shapes)
    np.testing.assert_allclose(meta["spacing"]["pat1_ED"], [2.0, 1.5 * Y / 16, 1.0 * X / 16])
    assert imgs.dtype == np.float16 and labs.dtype == np.uint8 and imgs.shape[1:] == (16, 16)
    json.loads((tmp_path / "s" / "meta.json").read_text())
    assert pd.read_csv(tmp_path / "s" / "index.csv").shape[0] == len(idx)


def test_rewrite_replaces_store_atomically(tmp_path):
    case = write_case(tmp_path, "c", to_image(mri_volume()), to_image(blob_label()))
    out = tmp_path / "s"
    slice_dataset(settings_for("msd_heart", image_size=16), [case], out, synthetic=True)
    slice_dataset(settings_for("msd_heart", image_size=32), [case], out, synthetic=True)
    assert SliceStore(out).images.shape == (Z, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# -------------------------------------------------------------------------------------------------- phantom twins


@pytest.mark.parametrize("name", sorted(registry.REGISTRY))
def test_phantom_twins_slice(tmp_path, name):
    phantoms = pytest.importorskip("medssl.data.phantoms")
    from medssl.data.listers import list_msd_cases

    spec = registry.get(name)
    root = phantoms.write_phantom_dataset(spec, tmp_path / "raw", n_patients=1, seed=0, scale=0.08)
    cases = list_msd_cases(spec, root)
    slice_dataset(settings_for(name, image_size=32), cases, tmp_path / "s", synthetic=True)
    imgs, labs, store = load(tmp_path / "s")
    assert imgs.shape[1:] == (32, 32) and len(store) == store.meta["n_slices"] == len(imgs)
    assert 0 <= imgs.min() and imgs.max() <= 1 and imgs.max() > 0.5
    assert labs.max() < spec.n_classes and store.index["fg"].any()
    assert store.index["case"].tolist() == sorted(store.index["case"].tolist())
    assert store.meta["task"] == spec.paper_task and store.meta["synthetic"] is True


def test_phantom_spleen_stored_ras_slices_like_lps(tmp_path):
    """The spleen twin is stored with direction diag(-1, -1, 1); its LPS twin must give the same store."""
    phantoms = pytest.importorskip("medssl.data.phantoms")
    from medssl.data.listers import list_msd_cases

    spec = registry.get("msd_spleen")
    root = phantoms.write_phantom_dataset(spec, tmp_path / "raw", n_patients=1, seed=0, scale=0.08)
    (case,) = list_msd_cases(spec, root)
    img = sitk.ReadImage(str(case.image))
    assert np.allclose(np.asarray(img.GetDirection()).reshape(3, 3), np.diag([-1.0, -1.0, 1.0]))
    lps = write_case(tmp_path, "lps", sitk.DICOMOrient(img, "LPS"),
                     sitk.DICOMOrient(sitk.ReadImage(str(case.label)), "LPS"))
    st = settings_for("msd_spleen", image_size=32)
    slice_dataset(st, [case], tmp_path / "a", synthetic=True)
    slice_dataset(st, [lps], tmp_path / "b", synthetic=True)
    a, b = load(tmp_path / "a"), load(tmp_path / "b")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# ------------------------------------------------------------------------------------ warnings on bad data


def test_warns_on_label_values_outside_the_class_map(tmp_path, caplog):
    lab = blob_label(values=(1, 2))
    lab[0, 0, :2] = [7, 9]  # prostate knows 1 and 2 only
    a = write_case(tmp_path, "p_a", to_image(mri_volume()), to_image(lab))
    b = write_case(tmp_path, "p_b", to_image(mri_volume(1)), to_image(blob_label(values=(1, 2))))
    with caplog.at_level("WARNING", logger="medssl.data"):
        slice_dataset(settings_for("msd_prostate", slice_axis="axial"), [a, b], tmp_path / "s", synthetic=True)
    warned = [r.getMessage() for r in caplog.records if "class map" in r.getMessage()]
    assert len(warned) == 1 and "7, 9" in warned[0] and "p_a" in warned[0] and "p_b" not in warned[0]


def test_warns_on_an_empty_label(tmp_path, caplog):
    empty = write_case(tmp_path, "p_empty", to_image(mri_volume()), to_image(np.zeros((Z, Y, X), np.uint8)))
    full = write_case(tmp_path, "p_full", to_image(mri_volume(1)), to_image(blob_label()))
    with caplog.at_level("WARNING", logger="medssl.data"):
        slice_dataset(settings_for("msd_prostate", slice_axis="axial"), [empty, full], tmp_path / "s",
                      synthetic=True)
    warned = [r.getMessage() for r in caplog.records if "empty" in r.getMessage()]
    assert len(warned) == 1 and "p_empty" in warned[0]


def test_warns_on_non_finite_ct_voxels(tmp_path, caplog):
    a = np.linspace(-1000, 1000, Z * Y * X).reshape(Z, Y, X).astype(np.float32)
    a[0, 0, :3] = [np.nan, np.inf, -np.inf]
    case = write_case(tmp_path, "spleen_9", to_image(a), to_image(blob_label(values=(1, 1))))
    image = tmp_path / "spleen_9_img.mha"  # ITK's NIfTI reader itself turns NaN/Inf into 0; MetaImage keeps them
    sitk.WriteImage(to_image(a), str(image))
    case = dataclasses.replace(case, image=image)
    with caplog.at_level("WARNING", logger="medssl.data"):
        slice_dataset(settings_for("msd_spleen", slice_axis="axial"), [case], tmp_path / "s", synthetic=True)
    warned = [r.getMessage() for r in caplog.records if "NaN" in r.getMessage()]
    assert len(warned) == 1 and "spleen_9" in warned[0] and "1 NaN" in warned[0] and "2 Inf" in warned[0]
    imgs, _, _ = load(tmp_path / "s")
    assert np.isfinite(imgs.astype(np.float32)).all()


def test_clean_cases_slice_without_warnings(tmp_path, caplog):
    case = write_case(tmp_path, "p", to_image(mri_volume()), to_image(blob_label()))
    with caplog.at_level("WARNING", logger="medssl.data"):
        slice_dataset(settings_for("msd_prostate", slice_axis="axial"), [case], tmp_path / "s", synthetic=True)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# ------------------------------------------------------------------ classes that never appear: loud warning
def test_warns_when_no_label_holds_any_class(tmp_path, caplog):
    cases = [write_case(tmp_path, f"p{i}", to_image(mri_volume(i)), to_image(np.zeros((Z, Y, X), np.uint8)))
             for i in range(2)]
    with caplog.at_level("WARNING", logger="medssl.data"):
        slice_dataset(settings_for("msd_prostate", slice_axis="axial"), cases, tmp_path / "s", synthetic=True)
    loud = [r.getMessage() for r in caplog.records if "never appear" in r.getMessage()]
    assert len(loud) == 1 and "msd_prostate" in loud[0]
    names = registry.get("msd_prostate").class_names
    assert all(n in loud[0] for n in names) and "no foreground" in loud[0]
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["class_slices"] == {n: 0 for n in names}


def test_warns_on_a_declared_class_that_never_appears(tmp_path, caplog):
    only_first = blob_label(values=(1, 1))  # prostate: class 2 never labelled
    cases = [write_case(tmp_path, f"p{i}", to_image(mri_volume(i)), to_image(only_first)) for i in range(2)]
    with caplog.at_level("WARNING", logger="medssl.data"):
        slice_dataset(settings_for("msd_prostate", slice_axis="axial"), cases, tmp_path / "s", synthetic=True)
    spec = registry.get("msd_prostate")
    kept = spec.label_map()[1]  # the class that source value 1 stands for
    names = spec.class_names
    have, lost = names[kept - 1], names[2 - kept]
    loud = [r.getMessage() for r in caplog.records if "never appear" in r.getMessage()]
    assert len(loud) == 1 and "msd_prostate" in loud[0] and lost in loud[0] and have not in loud[0]
    store = SliceStore(tmp_path / "s")
    counts = store.meta["class_slices"]
    assert counts[lost] == 0 and counts[have] == int(store.index[f"c{kept}"].sum()) > 0
    assert store.classes_present() == [kept]


def test_all_classes_present_records_counts_without_warning(tmp_path, caplog):
    case = write_case(tmp_path, "p", to_image(mri_volume()), to_image(blob_label()))
    with caplog.at_level("WARNING", logger="medssl.data"):
        slice_dataset(settings_for("msd_prostate", slice_axis="axial"), [case], tmp_path / "s", synthetic=True)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    store = SliceStore(tmp_path / "s")
    names = registry.get("msd_prostate").class_names
    assert store.meta["class_slices"] == {n: int(store.index[f"c{k}"].sum()) for k, n in enumerate(names, 1)}


# ------------------------------------------------------- OAI-ZIB masks carry no pose: the image's is used
def _oai_case(tmp_path, label_arr, *, label_spacing=(1.0, 1.0, 1.0), suffix=".mhd") -> Case:
    """An OAI-ZIB-like case: a sagittal DESS-like image with a real pose, its mask without one (.mhd)."""
    d = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float)  # i -> A-P, j -> S-I (down), k -> L-R
    image = to_image(mri_volume(), spacing=(0.36, 0.36, 0.7), origin=(-60.0, 20.0, 35.0), direction=d)
    ip = tmp_path / "images" / "9001104.nii.gz"
    lp = tmp_path / "labels" / f"9001104.segmentation_masks{suffix}"
    ip.parent.mkdir(parents=True, exist_ok=True)
    lp.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(ip))
    sitk.WriteImage(to_image(label_arr, spacing=label_spacing), str(lp))
    return Case("9001104", "9001104", ip, lp)


def test_oai_zib_mask_without_pose_takes_the_image_geometry(tmp_path, caplog):
    lab = blob_label(values=(1, 4))
    case = _oai_case(tmp_path, lab)
    with caplog.at_level("INFO", logger="medssl.data"):
        slice_dataset(settings_for("oai_zib"), [case], tmp_path / "s", synthetic=False)
    imgs, labs, store = load(tmp_path / "s")
    # the same case with the label written in the image's geometry slices identically
    ref = tmp_path / "ref"
    ref.mkdir()
    image = sitk.ReadImage(str(case.image))
    good = sitk.GetImageFromArray(lab)
    good.CopyInformation(image)
    sitk.WriteImage(good, str(ref / "lab.nii.gz"))
    slice_dataset(settings_for("oai_zib"), [dataclasses.replace(case, label=ref / "lab.nii.gz")], ref / "s",
                  synthetic=False)
    np.testing.assert_array_equal(labs, load(ref / "s")[1])
    assert labs.max() > 0
    said = [r.getMessage() for r in caplog.records if "pose" in r.getMessage()]
    assert said and "9001104" in said[0] and "9001104.segmentation_masks.mhd" in said[0]


def test_oai_zib_mask_in_another_axis_order_stops_with_what_to_do(tmp_path):
    lab = np.transpose(blob_label(values=(1, 4)), (2, 1, 0)).copy()  # voxel axes reversed: sizes permuted
    case = _oai_case(tmp_path, lab)
    with pytest.raises(SlicingError) as err:
        slice_dataset(settings_for("oai_zib"), [case], tmp_path / "s", synthetic=False)
    msg = str(err.value)
    assert "9001104.segmentation_masks.mhd" in msg and "images/9001104.nii.gz" in msg
    assert f"({Z}, {Y}, {X})" in msg and f"({X}, {Y}, {Z})" in msg  # both sizes (ITK order)
    assert "CopyInformation" in msg and "labels/9001104.nii.gz" in msg and "\n" not in msg


def test_oai_zib_mask_of_another_size_still_stops(tmp_path):
    case = _oai_case(tmp_path, blob_label(values=(1, 4))[:, :, :-1].copy())
    with pytest.raises(SlicingError, match="9001104.*size"):
        slice_dataset(settings_for("oai_zib"), [case], tmp_path / "s", synthetic=False)


def test_pose_is_adopted_only_for_real_oai_zib_masks(tmp_path):
    case = _oai_case(tmp_path, blob_label(values=(1, 4)))
    with pytest.raises(SlicingError, match="direction"):  # a twin is written consistent: a mismatch is a bug
        slice_dataset(settings_for("oai_zib"), [case], tmp_path / "s", synthetic=True)
    with pytest.raises(SlicingError, match="direction"):  # other datasets: labels carry their pose
        slice_dataset(settings_for("msd_heart"), [case], tmp_path / "t", synthetic=False)


# ------------------------------------------------------------- real data against HSSL Table 1's slice counts
def _fg_slices_log(tmp_path, caplog, *, synthetic: bool, paper_slices: int | None, sample: int | None = None):
    spec = dataclasses.replace(registry.get("msd_heart"), paper_slices=paper_slices)
    st = dataclasses.replace(settings_for("msd_heart", slice_axis="axial", sample_slices=sample), spec=spec)
    case = write_case(tmp_path, "la_003", to_image(mri_volume()), to_image(blob_label(values=(1, 1))))
    with caplog.at_level("INFO", logger="medssl.data"):
        slice_dataset(st, [case], tmp_path / "s", synthetic=synthetic)
    fg = int((np.asarray(SliceStore(tmp_path / "s").labels).reshape(Z, -1) > 0).any(axis=1).sum())
    return fg, [r for r in caplog.records if "Table 1" in r.getMessage()]


def test_real_data_far_from_the_paper_slice_count_warns(tmp_path, caplog):
    fg, said = _fg_slices_log(tmp_path, caplog, synthetic=False, paper_slices=1262)
    assert fg == 4 and len(said) == 1 and said[0].levelname == "WARNING"
    assert "1262" in said[0].getMessage() and " 4 " in said[0].getMessage() and "msd_heart" in said[0].getMessage()


def test_a_sample_of_table_1s_count_is_compared_not_the_foreground(tmp_path, caplog):
    """Paper A's liver: far more slices with foreground than Table 1's 4,342, sampled down to them: no warning;
    a sample that cannot reach Table 1's count warns, naming the foreground, the sample and the paper's count."""
    fg, said = _fg_slices_log(tmp_path, caplog, synthetic=False, paper_slices=2, sample=2)
    assert fg == 4 and not said
    assert SliceStore(tmp_path / "s").meta["sample"]["drawn"] == 2
    (tmp_path / "short").mkdir()
    _, said = _fg_slices_log(tmp_path / "short", caplog, synthetic=False, paper_slices=100, sample=100)
    assert len(said) == 1 and all(f" {n}" in said[0].getMessage() for n in (4, 100)) and "sample" in said[0].getMessage()


@pytest.mark.parametrize("synthetic, paper", [(True, 1262), (False, None), (False, 4)])
def test_no_paper_slice_warning_for_twins_unknown_or_close_counts(tmp_path, caplog, synthetic, paper):
    _, said = _fg_slices_log(tmp_path, caplog, synthetic=synthetic, paper_slices=paper)
    assert not [r for r in said if r.levelname == "WARNING"]


def test_oai_zib_mask_with_its_own_spacing_is_not_given_the_image_pose(tmp_path):
    """Same grid size but a spacing of its own (neither the image's nor unset): maybe another grid, so it stops."""
    case = _oai_case(tmp_path, blob_label(values=(1, 4)), label_spacing=(0.5, 0.5, 0.5))
    with pytest.raises(SlicingError, match="spacing differs.*CopyInformation"):
        slice_dataset(settings_for("oai_zib"), [case], tmp_path / "s", synthetic=False)
