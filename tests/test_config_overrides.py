"""`snakemake --config` overrides: values typed as the schema asks (medssl.config.parse_overrides)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config
from snakemake.utils import update_config

from medssl import config as cfg

REPO = Path(__file__).resolve().parents[1]


def _demo() -> dict:
    with open(REPO / "config" / "config.yaml") as f:
        return yaml.safe_load(f)


def overridden(*entries: str) -> dict:
    """The demo config merged with ``--config`` entries exactly as Snakemake does it."""
    config = _demo()
    update_config(config, parse_config(list(entries)))
    return config


def test_nested_override_arrives_as_strings_and_is_typed():
    config = overridden('data={"image_size": 64}')
    assert config["data"]["image_size"] == "64"  # Snakemake's BaseLoader: the bug this fixes
    with pytest.raises(cfg.ConfigError, match="data/image_size"):
        cfg.validate(copy.deepcopy(config))
    cfg.validate(cfg.parse_overrides(config))
    assert config["data"]["image_size"] == 64
    assert config["data"]["normalisation"] == _demo()["data"]["normalisation"]  # merged, not replaced


def test_types_follow_the_schema():
    config = cfg.parse_overrides(overridden(
        "synthetic=false", "experiment=2024", "threads=1",
        "studies={hssl: {label_ratios: [5, 100], seeds: [0, 1], pretrain: {lr: 1e-3, steps_per_epoch: null}, "
        "finetune: {crop_scale: [0.5, 1]}, runs: {hssl: {params: {temperature: 0.5, views: x}}}}}",
        "data={split: {ratios: [0.6, 0.2, 0.2]}, label_ratios: [5, 12.5, 50, 100]}",
    ))
    study = config["studies"]["hssl"]
    assert config["synthetic"] is False and config["experiment"] == "2024"
    assert study["label_ratios"] == ["5", "100"]  # the schema wants strings: kept
    assert study["seeds"] == [0, 1]
    assert study["pretrain"]["lr"] == pytest.approx(1e-3) and study["pretrain"]["steps_per_epoch"] is None
    assert study["finetune"]["crop_scale"] == [0.5, 1]
    assert study["runs"]["hssl"]["params"]["temperature"] == 0.5 and study["runs"]["hssl"]["params"]["views"] == "x"
    assert config["data"]["split"]["ratios"] == [0.6, 0.2, 0.2] and config["data"]["label_ratios"] == [5, 12.5, 50, 100]
    cfg.validate(config)


def test_a_whole_yaml_string_becomes_a_mapping():
    config = _demo()
    config["datasets"] = '{msd_heart: {image_size: 64}}'
    cfg.parse_overrides(config)
    assert config["datasets"] == {"msd_heart": {"image_size": 64}}


def test_own_dataset_override_keeps_names_and_paths():
    config = cfg.parse_overrides(overridden(
        "datasets={my_kidney: {path: /data/2024, modality: CT, classes: {kidney: 1, cyst: [2, 3]}}}"))
    entry = config["datasets"]["my_kidney"]
    assert entry == {"path": "/data/2024", "modality": "CT", "classes": {"kidney": 1, "cyst": [2, 3]}}


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_unchanged(name):
    with open(REPO / "config" / name) as f:
        config = yaml.safe_load(f)
    assert cfg.parse_overrides(copy.deepcopy(config)) == config
