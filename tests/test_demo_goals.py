"""bench/demo_goals.py, which CI runs after the demo: it passes trained-looking metrics and fails on the
metrics of models that learned nothing (the demo before issue 10: Dice ~2 %, denoisers below their input)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from medssl.config import load_config
from medssl.layout import Layout

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("demo_goals", REPO / "bench" / "demo_goals.py")
demo_goals = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_goals)


def _write(lay: Layout, study, run, ratio, **fields):
    path = lay.metrics(study, run, "d", ratio, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"study": study, "run": run, "dataset": "d", "ratio": ratio, "seed": 0, **fields}))


def _results(tmp_path, monkeypatch, dice100, dice5, miou, psnr, separated=True):
    monkeypatch.chdir(tmp_path)
    config = load_config(REPO / "config" / "config.yaml")
    lay = Layout.of(config)
    _write(lay, "hssl", "tfs", "100", slice_pooled={"mean_dice": dice100})
    _write(lay, "hssl", "tfs", "5", slice_pooled={"mean_dice": dice5})
    _write(lay, "ssmtl_ct", "unet_tfs", "scans", slice_pooled={"miou": miou})
    _write(lay, "ssmtl_denoise", "unet_tfs", "scans", psnr=psnr, noisy_psnr=10.5)
    _features(lay, separated=separated)
    return config


def _features(lay: Layout, separated: bool) -> None:
    """Figure 3b's features for 8 tasks in 4 groups: clustered by task and group, or noise."""
    rng = np.random.default_rng(0)
    task = np.repeat(np.arange(8), 20)
    group = task // 2
    f_task = rng.normal(size=(160, 8)) + (8 * np.eye(8)[task] if separated else 0)
    f_group = rng.normal(size=(160, 4)) + (8 * np.eye(4)[group] if separated else 0)
    path = lay.features("hssl", "hssl")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, F_task=f_task, F_group=f_group, task=task, group=group)


def test_knn_accuracy_by_hand():
    x = [[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]]
    assert demo_goals.knn_accuracy(x, [0, 0, 0, 1, 1, 1], k=2) == 1.0
    assert demo_goals.knn_accuracy(x, [0, 1, 0, 1, 0, 1], k=1) == 0.0  # every nearest neighbour disagrees


def test_goals_met_by_models_that_learned(tmp_path, monkeypatch, capsys):
    _results(tmp_path, monkeypatch, 0.82, 0.70, 0.57, 16.0)
    assert demo_goals.main(["--config", str(REPO / "config" / "config.yaml"), "--check"]) == 0
    assert "MISSED" not in capsys.readouterr().out


@pytest.mark.parametrize("bad", [dict(dice100=0.017), dict(dice5=0.019), dict(miou=0.006), dict(psnr=12.0),
                                 dict(separated=False)])
def test_goals_missed_by_models_that_learned_nothing(tmp_path, monkeypatch, capsys, bad):
    good = dict(dice100=0.82, dice5=0.70, miou=0.57, psnr=16.0)
    config = _results(tmp_path, monkeypatch, **{**good, **bad})
    assert not all(ok for *_, ok in demo_goals.goals(config))
    assert demo_goals.main(["--config", str(REPO / "config" / "config.yaml"), "--check"]) == 1
    assert "MISSED" in capsys.readouterr().out
