"""bench/demo_goals.py, which CI runs after the demo: it passes trained-looking metrics and fails on the
metrics of models that learned nothing (the demo before issue 10: Dice ~2 %, denoisers below their input)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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


def _results(tmp_path, monkeypatch, dice100, dice5, miou, psnr):
    monkeypatch.chdir(tmp_path)
    config = load_config(REPO / "config" / "config.yaml", registries=False)
    lay = Layout.of(config)
    _write(lay, "hssl", "tfs", "100", slice_pooled={"mean_dice": dice100})
    _write(lay, "hssl", "tfs", "5", slice_pooled={"mean_dice": dice5})
    _write(lay, "ssmtl_ct", "unet_tfs", "scans", slice_pooled={"miou": miou})
    _write(lay, "ssmtl_denoise", "unet_tfs", "scans", psnr=psnr, noisy_psnr=10.5)
    return config


def test_goals_met_by_models_that_learned(tmp_path, monkeypatch, capsys):
    _results(tmp_path, monkeypatch, 0.82, 0.70, 0.57, 16.0)
    assert demo_goals.main(["--config", str(REPO / "config" / "config.yaml"), "--check"]) == 0
    assert "MISSED" not in capsys.readouterr().out


@pytest.mark.parametrize("bad", [dict(dice100=0.017), dict(dice5=0.019), dict(miou=0.006), dict(psnr=12.0)])
def test_goals_missed_by_models_that_learned_nothing(tmp_path, monkeypatch, capsys, bad):
    good = dict(dice100=0.82, dice5=0.70, miou=0.57, psnr=16.0)
    config = _results(tmp_path, monkeypatch, **{**good, **bad})
    assert not all(ok for *_, ok in demo_goals.goals(config))
    assert demo_goals.main(["--config", str(REPO / "config" / "config.yaml"), "--check"]) == 1
    assert "MISSED" in capsys.readouterr().out
