"""Manual (registration-only) datasets and the source resolution helpers."""

from __future__ import annotations

import json

import pytest

from medssl import registry
from medssl.data.download import MARKER
from medssl.data.manual import ManualDatasetMissing, check_manual_source
from medssl.data.sources import prepare_source, source_root
from medssl.jobs import SliceJob

from test_listers import _acdc, _mnms, _nii


def test_missing_manual_dataset_message(tmp_path):
    spec = registry.get("acdc")
    with pytest.raises(ManualDatasetMissing) as exc:
        check_manual_source(spec, tmp_path / "resources")
    msg = str(exc.value)
    directory = (tmp_path / "resources" / "raw" / "acdc").resolve()
    assert spec.title in msg
    assert spec.source.register_url in msg
    assert spec.source.archive in msg
    assert str(directory) in msg
    assert spec.source.note.replace("{root}", str(directory)) in msg
    assert str(directory / "training") in msg and "MISSING" in msg
    assert exc.value.directory == directory and exc.value.missing == ["training"]
    assert isinstance(exc.value, FileNotFoundError)


def test_manual_dataset_passes_once_placed(tmp_path):
    spec = registry.get("mnms")
    root = tmp_path / "raw" / "mnms"
    (root / "Training").mkdir(parents=True)
    with pytest.raises(ManualDatasetMissing, match="Training/Labeled"):
        check_manual_source(spec, tmp_path)
    _mnms(root)
    assert check_manual_source(spec, tmp_path) == root
    marker = json.loads((root / MARKER).read_text())
    assert marker["kind"] == "manual" and marker["dataset"] == "mnms"
    assert marker["url"] == spec.source.register_url and marker["md5"] is None
    assert marker["archive"] == spec.source.archive and marker["date"]
    # idempotent: an existing marker is kept as is
    before = (root / MARKER).read_text()
    check_manual_source(spec, tmp_path)
    assert (root / MARKER).read_text() == before


# ------------------------------------------------------- one definition of the layout: the case listers
def test_check_accepts_the_layouts_the_listers_accept(tmp_path):
    """ACDC's database/training/ (the CREATIS zip) and M&Ms' OpenDataset/ tree pass the check."""
    acdc = tmp_path / "raw" / "acdc"
    _acdc(acdc / "database")
    assert check_manual_source(registry.get("acdc"), tmp_path) == acdc
    mnms = tmp_path / "raw" / "mnms"
    _mnms(mnms / "OpenDataset")
    assert check_manual_source(registry.get("mnms"), tmp_path) == mnms


def test_empty_training_folder_fails_the_check(tmp_path):
    (tmp_path / "raw" / "acdc" / "training").mkdir(parents=True)
    with pytest.raises(ManualDatasetMissing, match="no cases") as exc:
        check_manual_source(registry.get("acdc"), tmp_path)
    assert exc.value.problem and not (tmp_path / "raw" / "acdc" / MARKER).exists()


def test_mnms_without_info_csv_fails_the_check(tmp_path):
    root = tmp_path / "raw" / "mnms"
    _mnms(root)
    next(root.glob("2*.csv")).unlink()
    with pytest.raises(ManualDatasetMissing, match="External code") as exc:
        check_manual_source(registry.get("mnms"), tmp_path)
    assert registry.get("mnms").source.register_url in str(exc.value)
    assert not (root / MARKER).exists()


def test_broken_case_fails_the_check_naming_it(tmp_path):
    root = tmp_path / "raw" / "acdc"
    _acdc(root)
    (root / "training" / "patient002" / "patient002_frame09_gt.nii.gz").unlink()
    with pytest.raises(ManualDatasetMissing, match="patient002_frame09"):
        check_manual_source(registry.get("acdc"), tmp_path)


def test_check_manual_rejects_url_source(tmp_path):
    with pytest.raises(TypeError):
        check_manual_source(registry.get("msd_heart"), tmp_path)


def test_source_root_and_format(tmp_path):
    assert source_root(registry.get("msd_heart"), tmp_path) == tmp_path / "raw" / "Task02_Heart"
    assert source_root(registry.get("acdc"), tmp_path) == tmp_path / "raw" / "acdc"
    job = SliceJob(dataset="acdc", declaration={}, synthetic=False, image_size=32, slice_axis="axial",
                   ct_window=(0.0, 1.0), mri_percentiles=(0.0, 1.0), sample_slices=None)
    assert job.source_format == "acdc"
    assert SliceJob(**{**vars(job), "synthetic": True}).source_format == "msd"  # a twin is in MSD layout
    assert SliceJob(**{**vars(job), "dataset": "msd_spleen"}).source_format == "msd"


def test_prepare_source_manual(tmp_path):
    oai = registry.get("oai_zib")
    with pytest.raises(ManualDatasetMissing):
        prepare_source(oai, tmp_path)
    for sub in ("images", "labels"):
        (tmp_path / "raw" / "oai_zib" / sub).mkdir(parents=True)
    with pytest.raises(ManualDatasetMissing, match="no cases"):  # empty folders are not a dataset
        prepare_source(oai, tmp_path)
    for sub in ("images", "labels"):
        _nii(tmp_path / "raw" / "oai_zib" / sub / "9001.nii.gz")
    assert prepare_source(oai, tmp_path) == tmp_path / "raw" / "oai_zib"
    assert (tmp_path / "raw" / "oai_zib" / MARKER).exists()


def test_cli_fetch_of_a_missing_manual_dataset_exits_3_with_the_instructions(tmp_path, capsys):
    """The CLI tells a missing manual dataset (exit 3, the placement instructions) from other errors (exit 1)."""

    from medssl import cli

    from conftest import job_settings, tiny_config

    config = tiny_config()
    config.update(synthetic=False, resources=str(tmp_path / "resources"))
    config["datasets"]["acdc"] = {}
    rc = cli.main(["fetch", "--settings", job_settings(config, "fetch", dataset="acdc"),
                   "--out", str(tmp_path / "ready.json")])
    err = capsys.readouterr().err
    assert rc == 3
    assert "medssl: error:" in err and registry.get("acdc").source.register_url in err
    assert not (tmp_path / "ready.json").exists()


# ------------------------------------------------------------ instructions name the actual resources folder
@pytest.mark.parametrize("name", ["acdc", "mnms", "oai_zib", "mmwhs_ct", "mmwhs_mri"])
def test_instructions_use_the_configured_resources_folder(tmp_path, name):
    """Every path of the instructions, the note's included, is under the config's `resources:` folder."""
    resources = tmp_path / "scratch" / "res"
    spec = registry.get(name)
    with pytest.raises(ManualDatasetMissing) as exc:
        check_manual_source(spec, resources)
    msg = str(exc.value)
    root = (resources / "raw" / spec.source.root).resolve()
    note = next(line for line in msg.splitlines() if line.strip().startswith("Note:"))
    assert str(root) in note
    assert "resources/raw" not in msg.replace(str(resources.resolve()), "<res>")


def test_oai_zib_release_masks_pass_the_placement_check(tmp_path):
    """The release's segmentation_masks/ folder, masks named as shipped, counts as the labels."""
    root = tmp_path / "raw" / "oai_zib"
    _nii(root / "images" / "9001104.nii.gz")
    _nii(root / "segmentation_masks" / "9001104.segmentation_masks.mhd")
    assert check_manual_source(registry.get("oai_zib"), tmp_path) == root


def test_oai_zib_note_says_what_to_put_where(tmp_path):
    note = registry.get("oai_zib").source.note
    for text in ("images/", "labels/", ".segmentation_masks.mhd", ".raw", "oai_mri_paths.txt"):
        assert text in note
