"""The layout: every path of an experiment from one object; the workflow's patterns are its paths with
wildcards, so a rule's output and the library's reader are the same string."""

from __future__ import annotations

from pathlib import Path

from medssl.config import load_config
from medssl.layout import Layout
import json

import numpy as np
import pytest

from medssl.reports.metrics_files import MetricsSource, file_key, metrics_path

REPO = Path(__file__).resolve().parents[1]


def test_paths_of_an_experiment():
    lay = Layout.of({"experiment": "x", "resources": "res"})
    assert lay.store("msd_heart") == Path("results/x/data/msd_heart")
    assert lay.split("msd_heart") == Path("results/x/splits/msd_heart.json")
    assert lay.synthetic("acdc", "0123") == Path("res/synthetic/acdc/0123")
    assert lay.ready("acdc", "0123") == Path("res/ready/acdc/0123.json")
    assert lay.source_log("fetch", "acdc", "0123") == Path("res/logs/fetch/acdc/0123.log")
    assert lay.pretrained_model("s", "r", "all") == Path("results/x/s/pretrain/r/all/model.pt")
    assert lay.pretrained_model("s", "r", "all", epoch=5) == Path("results/x/s/pretrain/r/all/epoch5.pt")
    assert lay.finetune_dir("s", "r", "d", "5", 1) == Path("results/x/s/finetune/r/d/5/seed1")
    metrics = lay.metrics("s", "r", "d", "5", 1)
    assert metrics == Path("results/x/s/metrics/r/d/5/seed1.json")
    assert lay.predictions(metrics) == Path("results/x/s/metrics/r/d/5/seed1_pred.npz")
    assert lay.features("s", "r") == Path("results/x/s/features/r.npz")
    assert lay.log("finetune", "s", "r", "d", "5", "seed1") == Path("results/x/logs/finetune/s/r/d/5/seed1.log")
    assert lay.benchmark("slice", "d") == Path("results/x/benchmarks/slice/d.tsv")
    assert lay.recorded_plan() == Path("results/x/plan.yaml")


def test_wildcard_patterns_are_the_same_paths():
    lay = Layout.of({"experiment": "x", "resources": "resources"})
    job = ("{study}", "{run}", "{dataset}", "{ratio}", "{seed}")
    values = {"study": "s", "run": "r", "dataset": "d", "ratio": "scans", "seed": 2}
    assert str(lay.metrics(*job)).format(**values) == str(lay.metrics(*values.values()))
    assert str(lay.predictions(lay.metrics(*job))).format(**values) == str(lay.predictions(lay.metrics(*values.values())))


def test_library_readers_use_the_layout():
    config = load_config(REPO / "config" / "config.yaml")
    lay = Layout.of(config)
    key = ("hssl", "tfs", "msd_heart", "5", 0)
    assert metrics_path(config, key) == lay.metrics(*key)
    assert metrics_path(config, key, "pred") == lay.predictions(lay.metrics(*key))
    assert lay.metrics_beside(lay.predictions(lay.metrics(*key))) == lay.metrics(*key)


def _evaluation(folder: Path, key, name: str = "seed0", npz_key: bool = True) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    js = folder / f"{name}.json"
    js.write_text(json.dumps(dict(zip(("study", "run", "dataset", "ratio", "seed"), key)) | {"slice_pooled": {}}))
    npz = Layout.predictions(js)
    extra = {"key": np.array([str(v) for v in key])} if npz_key else {}
    np.savez(npz, pred=np.zeros((1, 2, 2)), **extra)
    return js, npz


def test_report_inputs_are_keyed_by_their_contents_not_their_paths(tmp_path):
    """Before, a regex parsed study/run/dataset/ratio/seed back out of each input path, so an input kept
    anywhere else (or a layout change) silently read as absent. Now the files say what they are."""
    key = ("hssl", "tfs", "msd_heart", "5", 0)
    js, npz = _evaluation(tmp_path / "anywhere" / "at" / "all", key, name="renamed")
    assert file_key(js) == (key, "json") and file_key(npz) == (key, "pred")
    source = MetricsSource.from_inputs({"experiment": "x", "resources": "r"}, [js, npz, tmp_path / "notes.txt"])
    assert source.path(key) == js and source.path(key, "pred") == npz and source.exists(key, "pred")
    assert not source.exists(("hssl", "tfs", "msd_heart", "100", 0))
    # a predictions file written before it carried its key: keyed by the metrics file beside it
    old_js, old_npz = _evaluation(tmp_path / "old", ("hssl", "unet", "msd_spleen", "50", 2), npz_key=False)
    assert file_key(old_npz) == (("hssl", "unet", "msd_spleen", "50", 2), "pred")
    old_js.unlink()
    with pytest.raises(ValueError, match=r"seed0_pred\.npz: a predictions file without its key"):
        file_key(old_npz)
    # two files claiming one evaluation, and a JSON that is not an evaluation, are errors naming them
    twin, _ = _evaluation(tmp_path / "twin", key)
    with pytest.raises(ValueError, match="hold the same evaluation"):
        MetricsSource.from_inputs({"experiment": "x", "resources": "r"}, [js, twin])
    (tmp_path / "other.json").write_text(json.dumps({"study": "hssl"}))
    with pytest.raises(ValueError, match=r"other\.json: not a medssl metrics file \(no run, dataset, ratio, seed\)"):
        file_key(tmp_path / "other.json")
