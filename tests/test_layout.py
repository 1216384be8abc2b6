"""The layout: every path of an experiment from one object; the workflow's patterns are its paths with
wildcards, so a rule's output and the library's reader are the same string."""

from __future__ import annotations

from pathlib import Path

from medssl.config import load_config
from medssl.layout import Layout
from medssl.reports.metrics import metrics_path, parse_metrics_path
from medssl.train import common

REPO = Path(__file__).resolve().parents[1]


def test_paths_of_an_experiment():
    lay = Layout.of({"experiment": "x", "resources": "res"})
    assert lay.store("msd_heart") == Path("results/x/data/msd_heart")
    assert lay.split("msd_heart") == Path("results/x/splits/msd_heart.json")
    assert lay.synthetic("acdc") == Path("res/synthetic/acdc") and lay.ready("acdc") == Path("res/ready/acdc.json")
    assert lay.pretrained_model("s", "r", "all") == Path("results/x/s/pretrain/r/all/model.pt")
    assert lay.pretrained_model("s", "r", "all", epoch=5) == Path("results/x/s/pretrain/r/all/epoch5.pt")
    assert lay.finetune_dir("s", "r", "d", "5", 1) == Path("results/x/s/finetune/r/d/5/seed1")
    metrics = lay.metrics("s", "r", "d", "5", 1)
    assert metrics == Path("results/x/s/metrics/r/d/5/seed1.json")
    assert lay.predictions(metrics) == Path("results/x/s/metrics/r/d/5/seed1_pred.npz")
    assert lay.features("s", "r") == Path("results/x/s/features/r.npz")
    assert lay.log("finetune", "s", "r", "d", "5", "seed1") == Path("results/x/logs/finetune/s/r/d/5/seed1.log")
    assert lay.benchmark("slice", "d") == Path("results/x/benchmarks/slice/d.tsv")
    assert lay.job_config() == Path(".snakemake/medssl/x/config.yaml")


def test_wildcard_patterns_are_the_same_paths():
    lay = Layout.of({"experiment": "x"})
    job = ("{study}", "{run}", "{dataset}", "{ratio}", "{seed}")
    values = {"study": "s", "run": "r", "dataset": "d", "ratio": "scans", "seed": 2}
    assert str(lay.metrics(*job)).format(**values) == str(lay.metrics(*values.values()))
    assert str(lay.predictions(lay.metrics(*job))).format(**values) == str(lay.predictions(lay.metrics(*values.values())))


def test_library_readers_use_the_layout():
    config = load_config(REPO / "config" / "config.yaml", registries=False)
    lay = Layout.of(config)
    key = ("hssl", "tfs", "msd_heart", "5", 0)
    assert common.store_path(config, "msd_heart") == lay.store("msd_heart")
    assert common.split_path(config, "msd_heart") == lay.split("msd_heart")
    assert metrics_path(config, key) == lay.metrics(*key)
    assert metrics_path(config, key, "pred") == lay.predictions(lay.metrics(*key))
    assert parse_metrics_path(lay.metrics(*key)) == (key, "json")
    assert parse_metrics_path(lay.predictions(lay.metrics(*key))) == (key, "pred")
