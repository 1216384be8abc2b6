"""Watching a long run: the per-epoch log line, progress.png, TensorBoard, the representation monitor and
`medssl status` (issue 24)."""

from __future__ import annotations

import copy
import math
import os
import time

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO
from medssl import config as mcfg
from medssl.layout import Layout
from medssl.train import monitor as mon
from medssl.train import progress as prog

FINETUNE_ROWS = [{"epoch": e, "step": 2 * e, "loss": 1.0 / e, "val_dice": 0.5 + 0.1 * e if e % 2 == 0 else None,
                  "lr": 1e-3 * (1 - e / 5) ** 0.9, "time": 3.31771234} for e in range(1, 5)]
PRETRAIN_ROWS = [{"epoch": 0, "step": 0, "knn_task": 0.2, "knn_group": 0.4, "embed_std": 0.05}] + [
    {"epoch": e, "step": 3 * e, "loss": 2.0 / e, "rec": 0.123456789, "task": 0.5, "knn_task": 0.5 + 0.1 * e,
     "knn_group": 0.6, "embed_std": 0.08, "lr": 3e-4, "time": 125.0, "gpu_mem_gb": 7.123456} for e in (1, 2)]


def test_an_epoch_is_one_line_in_4_significant_digits_with_units():
    line = prog.epoch_line(FINETUNE_ROWS[1], 100, prog.seconds_left(FINETUNE_ROWS[:2], 100))
    assert line == ("epoch 2/100: loss 0.5; val_dice 0.7; lr 0.0006314; 3.318 s/epoch; 5.419 min left")
    line = prog.epoch_line(PRETRAIN_ROWS[2], 1000, prog.seconds_left(PRETRAIN_ROWS, 1000))
    assert line == ("epoch 2/1000: loss 1 (rec 0.1235, task 0.5); knn_task 0.7, knn_group 0.6, embed_std 0.08; "
                    "lr 0.0003; 125 s/epoch; peak GPU memory 7.123 GB; 34.65 h left")
    assert "\r" not in line and prog.duration(59.99) == "59.99 s" and prog.duration(7300) == "2.028 h"


@pytest.mark.parametrize("rows", [FINETUNE_ROWS, PRETRAIN_ROWS], ids=["finetune", "pretrain"])
def test_progress_png_is_written_atomically(tmp_path, rows):
    png = tmp_path / "progress.png"
    prog.plot_progress(rows, png, title="a job")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["progress.png"]  # no temporary file left


def test_progress_is_drawn_after_a_round_once_the_interval_passed_and_always_at_the_end(tmp_path, caplog):
    show = prog.Progress(tmp_path, title="t", epochs=4, min_interval=3600)
    with caplog.at_level("INFO", logger="medssl.train"):
        for i in range(3):
            show.update(FINETUNE_ROWS[:i + 1], scored=True)
        assert not (tmp_path / "progress.png").exists()  # rounds within the interval: not drawn
        show.update(FINETUNE_ROWS, scored=False)  # the last epoch: always
    assert (tmp_path / "progress.png").exists()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [f"epoch {e}/4" for e in range(1, 5)]
    show = prog.Progress(tmp_path / "b", title="t", epochs=4, min_interval=0)
    (tmp_path / "b").mkdir()
    show.update(FINETUNE_ROWS[:2], scored=True)
    assert (tmp_path / "b" / "progress.png").exists()


def test_tensorboard_continues_after_a_resume_without_duplicates(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = prog.Progress(tmp_path, title="t", epochs=4, loggers=("tensorboard",), min_interval=3600)
    for i in range(3):  # epochs 1-3 logged, then the job is killed; it resumes from its epoch-2 checkpoint
        first.update(FINETUNE_ROWS[:i + 1])
    first.close()
    second = prog.Progress(tmp_path, title="t", epochs=4, loggers=("tensorboard",), start_epoch=2,
                           min_interval=3600)
    for i in (2, 3):
        second.update(FINETUNE_ROWS[:i + 1])
    second.close()
    events = EventAccumulator(str(tmp_path / prog.TENSORBOARD))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("val_dice")] == [2, 4]


# ---------------------------------------------------------------------------------------- the monitor

def _circle(degrees):
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return torch.tensor(np.stack([np.cos(rad), np.sin(rad)], 1), dtype=torch.float32)


def test_knn_accuracy_by_hand():
    z = _circle([0, 5, 10, 90, 95, 100])
    assert mon.knn_accuracy(z, np.array([0, 0, 0, 1, 1, 1]), k=2) == 1.0
    # k = 2 votes; a tie goes to the nearest voter. A (0 deg, class 0) hears B (10, class 1) and C (25, class 0):
    # nearest B -> 1, wrong; likewise C, D and F; B and E hear two of the other class. Ties to the farthest
    # voter would score 4/6.
    z = _circle([0, 10, 25, 90, 100, 115])
    assert mon.knn_accuracy(z, np.array([0, 1, 0, 1, 0, 1]), k=2) == 0.0
    # k never exceeds one less than the smallest class: 3 samples of class 1 vote with k = 2, not 20
    assert mon.knn_accuracy(_circle([0, 5, 10, 15, 20, 90, 95, 100]), np.array([0, 0, 0, 0, 0, 1, 1, 1])) == 1.0


class Constant(torch.nn.Module):
    """An encoder that maps every image to one point: a collapsed representation."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(8))

    def encode(self, x):
        return [x]

    def embed(self, feats):
        return self.w.expand(feats[0].shape[0], 8) + 0 * feats[0].mean()


class Spread(Constant):
    def embed(self, feats):
        x = feats[0].flatten(1)
        return x[:, :8] - x[:, :8].mean(0)


def test_a_collapsed_encoder_is_flagged(caplog):
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 4, 4)).astype(np.float32)
    task = np.repeat([0, 1], 20)
    monitor = mon.RepresentationMonitor(Constant(), images, task, np.zeros(40, int), device="cpu", every=1,
                                        epochs=3)
    with caplog.at_level("WARNING", logger="medssl.train"):
        row = monitor(1)
    assert row["embed_std"] == pytest.approx(0.0, abs=1e-6) and "collapsed" in caplog.text
    assert set(row) == {"knn_task", "embed_std"}  # one group: no group accuracy
    caplog.clear()
    spread = mon.RepresentationMonitor(Spread(), images, task, task, device="cpu", every=1, epochs=3)
    with caplog.at_level("WARNING", logger="medssl.train"):
        row = spread(1)
    assert row["embed_std"] * math.sqrt(8) > 0.5 and "collapsed" not in caplog.text
    assert spread.chance() == {"knn_task": 0.5, "knn_group": 0.5}
    assert [e for e in range(0, 7) if spread.due(e)] == [0, 1, 2, 3, 4, 5, 6]
    assert [e for e in range(0, 12) if mon.RepresentationMonitor(Spread(), images, task, task, device="cpu",
                                                                 every=5, epochs=11).due(e)] == [0, 5, 10, 11]


@pytest.mark.slow
def test_hssl_pretraining_learns_to_tell_the_tasks_apart(tmp_path):
    """On the phantoms, an HSSL pretraining's task-id kNN accuracy at its end is well above its value before
    training and above chance (the jobs as the workflow runs them, through the command line)."""
    import csv
    import subprocess
    import sys

    from conftest import job_settings, shrunk_demo

    config = shrunk_demo("mon", patients=6, scale=0.15)
    names = ["msd_heart", "msd_spleen", "oai_zib", "acdc"]
    config["datasets"] = {d: {} for d in names}
    study = config["studies"]["hssl"]
    study.update(pretrain_datasets=names, finetune_datasets=names[:1], label_ratios=["100"],
                 pretrain={"epochs": 4, "batch_size": 16, "lr": 2e-3, "steps": 48, "monitor_every": 2,
                           "monitor_samples": 24})
    study["runs"] = {"hssl": {"method": "hssl", "arch": "hssl_net"}}
    config["studies"] = {"hssl": study}
    config.pop("reports")
    medssl = [sys.executable, "-m", "medssl.cli"]
    lay = Layout.of(mcfg.resolve(mcfg.validate(copy.deepcopy(config))))

    def run(*args):
        subprocess.run(medssl + list(args), cwd=tmp_path, check=True, capture_output=True, text=True)

    for d in names:
        run("synthesize", "--settings", job_settings(config, "synthesize", dataset=d), "--out", f"twin/{d}")
        run("slice", "--settings", job_settings(config, "slice", dataset=d), "--source", f"twin/{d}",
            "--out", str(lay.store(d)))
        run("split", "--settings", job_settings(config, "split", dataset=d), "--store", str(lay.store(d)),
            "--out", str(lay.split(d)))
    out = tmp_path / "pre"
    run("pretrain", "--settings", job_settings(config, "pretrain", study="hssl", run="hssl", pool="all"),
        "--device", "cpu", "--threads", "1", "--monitor-every", "2", "--monitor-samples", "24",
        "--stores", *[str(lay.store(d)) for d in names], "--splits", *[str(lay.split(d)) for d in names],
        "--out", str(out))
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3", "4"]
    before, after = float(rows[0]["knn_task"]), float(rows[-1]["knn_task"])
    assert after >= before + 0.1 and after > 0.25 + 0.2, (before, after)  # 4 tasks: chance 0.25
    assert rows[1]["knn_task"] == "" and rows[2]["knn_task"] != ""  # every 2 epochs
    assert (out / "progress.png").stat().st_size > 10_000


# ------------------------------------------------------------------------------------------ status

def _tiny(tmp_path) -> dict:
    from conftest import tiny_config

    return mcfg.resolve(mcfg.validate(tiny_config()))


def _write_rows(folder, rows, name="log.partial.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    (folder / name).write_text(",".join(keys) + "\n" + "".join(
        ",".join(str(r[k]) for k in keys) + "\n" for r in rows))


def test_status_tells_each_state_apart(tmp_path):
    from medssl import status

    config = _tiny(tmp_path)
    lay = Layout.of(config)
    rows = [{"epoch": 1, "step": 2, "loss": 0.5, "lr": 1e-3, "time": 100.0}]
    # done: the pretraining of hssl (model.pt and log.csv)
    done = tmp_path / lay.pretrain_dir("hssl", "hssl", "all")
    _write_rows(done, rows, "log.csv")
    (done / "model.pt").write_bytes(b"x")
    # interrupted: simclr's pretraining left a checkpoint and a partial log, long ago
    stopped = tmp_path / lay.pretrain_dir("hssl", "simclr", "all")
    _write_rows(stopped, rows)
    (stopped / "checkpoint.pt").write_bytes(b"x")
    old = time.time() - 7200
    for p in stopped.iterdir():
        os.utime(p, (old, old))
    # running: a finetune whose partial log just changed
    running = tmp_path / lay.finetune_dir("hssl", "tfs", "msd_heart", "100", 0)
    _write_rows(running, rows)
    # failed: a finetune whose job log ends in an error
    failed_log = tmp_path / lay.log("finetune", "hssl", "simclr", "msd_heart", "100", "seed0")
    failed_log.parent.mkdir(parents=True)
    failed_log.write_text("...\nmedssl: error: something\n")
    os.utime(failed_log, (old, old))
    states = {s.name: s for s in status.run_status(config, tmp_path)}
    assert states["hssl/hssl/all"].state == "done" and states["hssl/simclr/all"].state == "interrupted"
    assert states["hssl/simclr/all"].epoch == 1 and states["hssl/simclr/all"].left_s == pytest.approx(0.0)
    assert states["hssl/tfs/msd_heart/100/seed0"].state == "running"
    assert states["hssl/simclr/msd_heart/100/seed0"].state == "failed"
    assert states["hssl/hssl/msd_heart/100/seed0"].state == "not started"
    text = status.format_status(config, list(states.values()), tmp_path)
    assert "pretrain hssl/simclr/all" in text and "interrupted" in text and "1/1" in text
    assert "total: 1 of 5 done, 1 running, 1 interrupted, 1 failed, 1 not started" in text
    assert "GPU-hours left by the cost model" in text
