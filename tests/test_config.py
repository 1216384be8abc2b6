"""Config schema and registry: both shipped configs validate; bad keys fail naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from medssl import config as mcfg
from medssl import registry


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_validate(repo, name):
    config = mcfg.load_config(repo / "config" / name)
    assert config["experiment"]
    for study in config["studies"]:
        for run in config["studies"][study]["runs"]:
            r = mcfg.run_settings(config, study, run)
            assert r["domain"] in ("multi", "single")


def _demo(repo):
    with open(repo / "config" / "config.yaml") as f:
        return yaml.safe_load(f)


def test_unknown_key_is_named(repo):
    config = _demo(repo)
    config["data"]["imag_size"] = 64
    with pytest.raises(mcfg.ConfigError, match="imag_size"):
        mcfg.validate(config)


def test_ill_typed_key_is_named(repo):
    config = _demo(repo)
    config["studies"]["hssl"]["pretrain"]["epochs"] = "many"
    with pytest.raises(mcfg.ConfigError, match="studies/hssl/pretrain/epochs"):
        mcfg.validate(config)


def test_unknown_dataset_is_named(repo):
    config = _demo(repo)
    config["datasets"]["msd_hart"] = {}
    with pytest.raises(mcfg.ConfigError, match="msd_hart"):
        mcfg.validate(config)


def test_study_dataset_must_be_listed(repo):
    config = _demo(repo)
    config["studies"]["hssl"]["finetune_datasets"].append("acdc_x")
    with pytest.raises(mcfg.ConfigError, match="acdc_x"):
        mcfg.validate(config)


def test_dataset_settings_merge_overrides(repo):
    config = mcfg.load_config(repo / "config" / "paper.yaml")
    ct = mcfg.dataset_settings(config, "mmwhs_ct")
    assert ct.image_size == 256 and ct.split["counts"] == [5, 0, 15] and "ratios" not in ct.split
    assert ct.scans_subset == (5, 20)
    heart = mcfg.dataset_settings(config, "msd_heart")
    assert heart.image_size == 192 and heart.split["ratios"] == [0.7, 0.1, 0.2]
    assert heart.slice_axis == "axial"


def test_stage_settings_precedence(repo):
    config = copy.deepcopy(mcfg.load_config(repo / "config" / "paper.yaml"))
    config["studies"]["hssl"]["runs"]["hssl"]["finetune"] = {"epochs": 7}
    s = mcfg.stage_settings(config, "hssl", "finetune", "hssl")
    assert s["epochs"] == 7 and s["lr"] == 5e-4 and s["poly_power"] == 0.9


def test_registry_covers_both_papers():
    a = registry.paper_a_datasets()
    assert [s.paper_task for s in a] == list(range(1, 9))
    assert [s.paper_group for s in a] == [1, 2, 3, 2, 2, 4, 1, 1]
    assert {"mmwhs_ct", "mmwhs_mri"} <= set(registry.REGISTRY)


def test_label_maps_follow_paper_order():
    # MSD prostate: 1 = PZ, 2 = TZ; the paper lists central gland (TZ) first.
    assert registry.get("msd_prostate").label_map() == {2: 1, 1: 2}
    # ACDC 1 RV, 2 MYO, 3 LV and M&Ms 1 LV, 2 MYO, 3 RV map to the same named classes.
    acdc, mnms = registry.get("acdc"), registry.get("mnms")
    assert acdc.class_names == mnms.class_names == ["LV", "RV", "myocardium"]
    assert acdc.label_map() == {3: 1, 1: 2, 2: 3}
    assert mnms.label_map() == {1: 1, 3: 2, 2: 3}
    ct = registry.get("mmwhs_ct").label_map()
    assert ct == {500: 1, 600: 2, 420: 3, 550: 4} and 205 not in ct


def test_sources_are_complete():
    for spec in registry.REGISTRY.values():
        if spec.is_manual:
            assert spec.source.register_url and spec.source.archive and spec.source.expect
        else:
            assert len(spec.source.md5) == 32 and spec.source.url.startswith("https://")


def test_new_msd_dataset_is_one_entry():
    spec = registry.DatasetSpec(
        name="msd_hippocampus_test", title="Hippocampus", modality="MRI", roi="brain",
        classes=(("anterior", (1,)), ("posterior", (2,))),
        source=registry.UrlSource(url="https://example.org/Task04_Hippocampus.tar", md5="0" * 32,
                                  archive="Task04_Hippocampus.tar", root="Task04_Hippocampus"))
    registry.register(spec)
    try:
        assert registry.get("msd_hippocampus_test").n_classes == 3
        with pytest.raises(ValueError):
            registry.register(spec)
    finally:
        del registry.REGISTRY["msd_hippocampus_test"]


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_runs_name_registered_methods_archs_and_params(repo, name):
    from medssl.methods import METHODS
    from medssl.models import MODELS

    config = mcfg.load_config(repo / "config" / name)
    for study, s in config["studies"].items():
        for run in s["runs"]:
            r = mcfg.run_settings(config, study, run)
            assert r["arch"] in MODELS, (study, run)
            if r["method"] == "tfs":
                assert not r["params"], (study, run)
                continue
            assert r["method"] in METHODS, (study, run)
            unknown = set(r["params"]) - set(METHODS[r["method"]].default_params())
            assert not unknown, (study, run, unknown)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from medssl.io import write_json

    mask = os.umask(0o022)
    os.umask(mask)
    write_json(tmp_path / "x.json", {"a": 1})
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask
