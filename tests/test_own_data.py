"""A dataset of one's own, declared in the config alone (MSD layout, `path`, `modality`, `classes`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from medssl import config as cfg
from medssl import registry
from medssl import settings as st
from medssl.data import sources
from medssl.data.store import SliceStore

from conftest import job_settings

N_CASES, SHAPE = 6, (8, 40, 40)  # numpy order z, y, x


def write_msd_dataset(root: Path, n_cases: int = N_CASES) -> Path:
    """A tiny CT dataset in MSD layout, as a user would put it on disk: imagesTr/, labelsTr/, dataset.json.
    Labels: 1 = kidney (a box), 2 = a structure the config leaves out (becomes background)."""
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i in range(n_cases):
        image = rng.normal(40.0, 20.0, SHAPE).astype(np.int16)
        label = np.zeros(SHAPE, np.uint8)
        label[2:6, 10 + i:20 + i, 12:24] = 1
        label[2:4, 30:34, 30:34] = 2
        image[label == 1] += 150
        for arr, folder in ((image, "imagesTr"), (label, "labelsTr")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((0.8, 0.8, 2.5))
            sitk.WriteImage(img, str(root / folder / f"kid_{i:03d}.nii.gz"))
        training.append({"image": f"./imagesTr/kid_{i:03d}.nii.gz", "label": f"./labelsTr/kid_{i:03d}.nii.gz"})
    meta = {"name": "Task99_Kidney", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "kidney",
                                                                        "2": "cyst"},
            "numTraining": n_cases, "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def own_config(path: Path, **entry) -> dict:
    return {"experiment": "own", "data": {"image_size": 32, "split": {"ratios": [0.5, 0.17, 0.33], "seed": 0},
                                          "label_ratios": [50, 100]},
            "datasets": {"my_kidney": {"path": str(path), "modality": "CT", "classes": {"kidney": 1}, **entry}}}


def test_spec_from_config_describes_the_dataset(tmp_path):
    config = cfg.resolve(cfg.validate(own_config(tmp_path, slice_axis="coronal", group=2, channel=0,
                                                 classes={"kidney": [1, 3], "cyst": 2})))
    spec = registry.get("my_kidney", config)
    assert spec.source == registry.LocalSource(str(tmp_path)) and spec.is_local and spec.source_format == "msd"
    assert spec.modality == "CT" and spec.roi == "my_kidney" and spec.paper_group == 2 and spec.channel == 0
    assert spec.label_map() == {1: 1, 3: 1, 2: 2} and spec.class_names == ["kidney", "cyst"]
    settings = st.dataset_settings(config, "my_kidney")
    assert settings.slice_axis == "coronal" and settings.spec == spec
    assert registry.is_user_dataset(config, "my_kidney") and not registry.is_user_dataset(config, "msd_heart")
    with pytest.raises(KeyError, match="declared in the config with a 'path'"):
        registry.get("my_kidney")  # without the config it is unknown


def test_registered_dataset_read_from_a_path(tmp_path):
    config = cfg.validate({"experiment": "x", "data": {"image_size": 32},
                           "datasets": {"msd_spleen": {"path": str(tmp_path)}}})
    spec = registry.get("msd_spleen", config)
    assert spec.source == registry.LocalSource(str(tmp_path))
    assert spec.classes == registry.REGISTRY["msd_spleen"].classes
    assert sources.source_root(spec, "resources") == tmp_path
    assert registry.get("msd_spleen").source != spec.source  # the registry itself is untouched


@pytest.mark.parametrize(("entry", "message"), [
    ({"path": "/x", "classes": {"kidney": 1}}, "datasets/mine': a dataset of one's own needs modality"),
    ({"path": "/x", "modality": "CT", "classes": {"a": 1, "b": [2, 1]}}, "a label value belongs to two"),
    ({"path": "/x", "modality": "PET", "classes": {"a": 1}}, "datasets/mine/modality"),
    ({"path": "/x", "modality": "CT", "classes": {"a": 0}}, "datasets/mine/classes/a"),
    ({"modality": "CT", "classes": {"a": 1}}, "unknown dataset.*needs 'path'"),
])
def test_bad_declarations_name_the_key(entry, message):
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.validate({"experiment": "x", "data": {"image_size": 32}, "datasets": {"mine": entry}})


def test_registered_names_keep_their_description():
    with pytest.raises(cfg.ConfigError, match="'msd_heart' is a registered dataset, so modality"):
        cfg.validate({"experiment": "x", "data": {"image_size": 32},
                      "datasets": {"msd_heart": {"modality": "CT"}}})
    with pytest.raises(cfg.ConfigError, match="registered dataset, so classes"):
        cfg.validate({"experiment": "x", "data": {"image_size": 32},
                      "datasets": {"msd_heart": {"path": "/x", "classes": {"a": 1}}}})


def _medssl(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "medssl.cli", *args], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_fetch_slice_split_of_an_own_dataset(tmp_path):
    data = write_msd_dataset(tmp_path / "data" / "Task99_Kidney")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    config = own_config(data)

    def settings(kind):
        return ["--settings", job_settings(config, kind, dataset="my_kidney")]

    _medssl("fetch", *settings("fetch"), "--out", "resources/ready/my_kidney.json", cwd=work)
    ready = json.loads((work / "resources/ready/my_kidney.json").read_text())
    assert Path(ready["root"]) == data
    assert not (work / "resources" / "downloads").exists() and not (work / "resources" / "raw").exists()

    _medssl("slice", *settings("slice"), "--source", "resources/ready/my_kidney.json",
            "--out", "results/own/data/my_kidney", cwd=work)
    store = SliceStore(work / "results/own/data/my_kidney")
    assert len(store.index) == N_CASES * SHAPE[0]
    assert sorted(set(store.index["patient"].astype(str))) == [f"kid_{i:03d}" for i in range(N_CASES)]
    labels = np.asarray(store.labels)
    assert set(np.unique(labels)) == {0, 1}  # value 2 is not a declared class: background

    _medssl("split", *settings("split"), "--store", "results/own/data/my_kidney",
            "--out", "results/own/splits/my_kidney.json", cwd=work)
    split = json.loads((work / "results/own/splits/my_kidney.json").read_text())
    assert sorted(split["patients"]["train"] + split["patients"]["val"] + split["patients"]["test"]) == \
        [f"kid_{i:03d}" for i in range(N_CASES)]
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written into the data


def test_fetch_names_a_missing_file(tmp_path):
    data = write_msd_dataset(tmp_path / "Task99_Kidney", n_cases=3)
    (data / "labelsTr" / "kid_001.nii.gz").unlink()
    config = cfg.validate(own_config(data))
    with pytest.raises(FileNotFoundError, match="label of case kid_001"):
        sources.prepare_source(registry.get("my_kidney", config), "resources")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sources.prepare_source(registry.get("my_kidney", cfg.validate(own_config(tmp_path / "nowhere"))),
                               "resources")


def test_own_dataset_joins_the_hssl_group_it_names(tmp_path):
    config = own_config(tmp_path, group=2)
    config["datasets"]["msd_spleen"] = {}
    config["studies"] = {"s": {"pretrain_datasets": ["msd_heart", "msd_spleen", "my_kidney"]}}
    _, group_of, _, n_groups = st.task_group_ids(config, "s", [])
    assert group_of["my_kidney"] == group_of["msd_spleen"] != group_of["msd_heart"] and n_groups == 2
    config["datasets"]["my_kidney"].pop("group")
    _, group_of, _, n_groups = st.task_group_ids(config, "s", [])
    assert n_groups == 3  # no group given: its own (roi, modality) group


@pytest.mark.slow
def test_all_over_an_own_dataset_runs_only_its_jobs(checkout, tmp_path):
    """The README's "Your own data": a config naming one dataset of one's own, `snakemake all` from the root."""
    from conftest import snakemake_cli

    data = write_msd_dataset(tmp_path / "data" / "Task99_Kidney")
    config = own_config(data)
    step = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1, "steps_per_epoch": 1}
    config["studies"] = {"kidney": {"pretrain_datasets": ["my_kidney"], "finetune_datasets": ["my_kidney"],
                                    "label_ratios": ["100"], "pretrain": step, "finetune": step,
                                    "runs": {"tfs": {"method": "tfs", "arch": "hssl_net"},
                                             "simclr": {"method": "simclr", "arch": "hssl_net"}}}}
    (checkout / "config" / "own.yaml").write_text(yaml.safe_dump(config))
    code, out = snakemake_cli("-n", "all", "--configfile", "config/own.yaml", cwd=checkout)
    assert code == 0, out[-3000:]
    counts = {m[0]: int(m[1]) for m in (line.split() for line in out.split("Job stats:", 1)[1].splitlines()[3:])
              if len(m) == 2 and m[1].isdigit()}
    assert counts["fetch_dataset"] == counts["slice_dataset"] == counts["split_dataset"] == 1
    assert "synthesize_dataset" not in counts and counts["pretrain"] == 1 and counts["finetune"] == 2
    assert counts["report_summary"] == 1  # no paper report names the study: it gets the generic summary
    code, out = snakemake_cli("--cores", "1", "all", "--configfile", "config/own.yaml", cwd=checkout)
    assert code == 0, out[-3000:]
    metrics = sorted((checkout / "results" / "own" / "kidney" / "metrics").rglob("seed0.json"))
    assert [p.relative_to(checkout / "results/own/kidney/metrics").parts[0] for p in metrics] == ["simclr", "tfs"]
    assert not (checkout / "resources" / "downloads").exists() and not (checkout / "resources" / "raw").exists()
    summary = (checkout / "results" / "own" / "tables" / "summary_kidney.md").read_text()
    assert "## `my_kidney`" in summary and "| tfs |" in summary and "| simclr |" in summary and "ref." in summary
    assert (checkout / "results" / "own" / "figures" / "summary_kidney.png").stat().st_size > 1000
    assert "medssl: 4 of 4 tables and figures are in place" in out
