"""Manual (registration-only) datasets and the source resolution helpers."""

from __future__ import annotations

import json

import pytest

from medssl import registry
from medssl.data.download import MARKER
from medssl.data.manual import ManualDatasetMissing, check_manual_source
from medssl.data.sources import prepare_source, ready_marker, source_layout, source_root

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
    assert spec.source.note in msg
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


def test_source_root_and_layout(tmp_path):
    real = {"synthetic": False, "resources": str(tmp_path)}
    synth = {"synthetic": True, "resources": str(tmp_path)}
    assert source_root(real, "msd_heart") == tmp_path / "raw" / "Task02_Heart"
    assert source_root(real, "acdc") == tmp_path / "raw" / "acdc"
    assert source_root(synth, "acdc") == tmp_path / "synthetic" / "acdc"
    assert source_layout(real, "acdc") == "acdc" and source_layout(synth, "acdc") == "msd"
    assert source_layout(real, "msd_spleen") == "msd"
    assert ready_marker(real, "acdc") == tmp_path / "raw" / "acdc" / MARKER
    assert ready_marker(synth, "acdc") == tmp_path / "synthetic" / "acdc" / "dataset.json"


def test_prepare_source_synthetic_and_manual(tmp_path):
    synth = {"synthetic": True, "resources": str(tmp_path)}
    with pytest.raises(FileNotFoundError, match="synthetic"):
        prepare_source(synth, "msd_heart")
    (tmp_path / "synthetic" / "msd_heart").mkdir(parents=True)
    (tmp_path / "synthetic" / "msd_heart" / "dataset.json").write_text("{}")
    assert prepare_source(synth, "msd_heart") == tmp_path / "synthetic" / "msd_heart"

    real = {"synthetic": False, "resources": str(tmp_path)}
    with pytest.raises(ManualDatasetMissing):
        prepare_source(real, "oai_zib")
    for sub in ("images", "labels"):
        (tmp_path / "raw" / "oai_zib" / sub).mkdir(parents=True)
    with pytest.raises(ManualDatasetMissing, match="no cases"):  # empty folders are not a dataset
        prepare_source(real, "oai_zib")
    for sub in ("images", "labels"):
        _nii(tmp_path / "raw" / "oai_zib" / sub / "9001.nii.gz")
    assert prepare_source(real, "oai_zib") == tmp_path / "raw" / "oai_zib"
    assert (tmp_path / "raw" / "oai_zib" / MARKER).exists()


def test_cli_fetch_of_a_missing_manual_dataset_exits_3_with_the_instructions(tmp_path, capsys):
    """The CLI tells a missing manual dataset (exit 3, the placement instructions) from other errors (exit 1)."""
    import yaml

    from medssl import cli

    from conftest import tiny_config

    config = tiny_config()
    config.update(synthetic=False, resources=str(tmp_path / "resources"))
    config["datasets"]["acdc"] = {}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    rc = cli.main(["fetch", "--config", str(path), "--dataset", "acdc", "--out", str(tmp_path / "ready.json")])
    err = capsys.readouterr().err
    assert rc == 3
    assert "medssl: error:" in err and registry.get("acdc").source.register_url in err
    assert not (tmp_path / "ready.json").exists()
