"""Training core: resume equivalence, NaN handling, seeding, finetune data, evaluation JSON, denoising.

Mechanics tests use a tiny stand-in SegNet and pretraining method (fast, bit-deterministic on CPU); the
end-to-end tests at the bottom use the real ``hssl_net`` + ``simclr``/``ssmtl`` when they import.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import copy
import dataclasses
from pathlib import Path
from unittest import mock

from medssl import config as cfg
from medssl import jobs
from medssl import settings as st
from medssl.io import read_json, write_json
from medssl.layout import Layout
from medssl.train import checkpoint as ckpt
from medssl.train import common
from medssl.train import evaluate as evaluate_module
from medssl.train import finetune as finetune_module
from medssl.train import pretrain as pretrain_module
from medssl.train.finetune import load_pretrained, train_rows
from medssl.train.loop import Loop, NonFiniteLossError

from test_loaders import make_store

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ stand-ins
class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x):
        f1 = F.relu(self.bn(self.c1(x)))
        return [f1, F.relu(self.c2(f1))]


class TinyDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8 + 4, 4, 3, padding=1)

    def forward(self, feats):
        up = F.interpolate(feats[1], size=feats[0].shape[-2:], mode="nearest")
        return F.relu(self.c(torch.cat([feats[0], up], 1)))


class TinyNet(nn.Module):
    latent_dim, feature_channels = 8, 4

    def __init__(self, out_channels):
        super().__init__()
        self.encoder, self.decoder = TinyEncoder(), TinyDecoder()
        self.neck = nn.Linear(8, 8)
        self.head = nn.Conv2d(4, out_channels, 1)
        self.out_channels = out_channels

    def encode(self, x):
        return self.encoder(x)

    def embed(self, feats):
        return self.neck(feats[-1].mean((-2, -1)))

    def decode(self, feats):
        return self.decoder(feats)

    def forward(self, x):
        return self.head(self.decode(self.encode(x)))


class StandIn(nn.Module):
    """Reconstruction of a noisy view (uses torch's RNG) + task/group classification."""

    sampling = "slice"
    nan_at = None  # set by a test: forward call number that returns NaN
    calls = 0

    def __init__(self, backbone, *, n_tasks, n_groups, image_size, offset=0):
        super().__init__()
        self.backbone = backbone
        self.task_head = nn.Linear(8, n_tasks)
        self.group_head = nn.Linear(8, n_groups)
        self.offset = offset
        self.seen = []
        if offset:
            self.sampling = "sequence"

    def sequence_options(self):
        return {"offset": self.offset, "pair": True}

    def forward(self, batch):
        type(self).calls += 1
        x = batch["image"]
        self.seen.append({k: v.detach().clone() for k, v in batch.items()})
        noisy = x + 0.05 * torch.randn_like(x)
        feats = self.backbone.encode(noisy)
        target = batch["next"] if self.offset else x
        rec = F.mse_loss(self.backbone(noisy), target)
        z = self.backbone.embed(feats)
        task = F.cross_entropy(self.task_head(z), batch["task"])
        group = F.cross_entropy(self.group_head(z), batch["group"])
        loss = rec + task + group
        if self.nan_at is not None and type(self).calls == self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "rec": rec.detach(), "task": task.detach(), "group": group.detach()}

    def after_step(self):
        pass


# ------------------------------------------------------------------------------------------- fixtures
DATASETS = ("msd_heart", "msd_spleen")


def resolved(config: dict) -> dict:
    """``config`` validated and resolved, with the stand-in method and model registered for the while."""
    from medssl.methods import METHODS
    from medssl.models import MODELS

    with mock.patch.dict(METHODS, standin=StandIn), mock.patch.dict(MODELS, tiny=TinyNet):
        return cfg.resolve(cfg.validate(copy.deepcopy(config)))


def store_path(config: dict, dataset: str) -> Path:
    return Layout.of(config).store(dataset)


def split_path(config: dict, dataset: str) -> Path:
    return Layout.of(config).split(dataset)


def open_store(config: dict, dataset: str, path=None):
    return common.open_store(dataset, path if path is not None else store_path(config, dataset))


def load_split(config: dict, dataset: str, path=None) -> dict:
    return common.load_split(dataset, path if path is not None else split_path(config, dataset))


# The jobs as the workflow runs them, from a config: the job's settings record, its inputs at the layout's paths
# (or those given) and where it runs (the config's device, threads and checkpoint interval).

def pretrain(config, study, run, pool, out, *, progress=False, store_dirs=None, split_files=None):
    c = resolved(config)
    job = jobs.PretrainJob.of(c, study, run, pool)
    names = job.ids.datasets
    return pretrain_module.pretrain(
        job, out, stores=store_dirs or [store_path(c, d) for d in names],
        splits=split_files or [split_path(c, d) for d in names],
        runtime=st.runtime(c, study, "pretrain", run), progress=progress)


def _pretrained_from(path) -> jobs.Pretrained | None:
    """The record's pretraining, as the model file handed to the job says (tests hand files of any pool)."""
    if path is None:
        return None
    _, meta = ckpt.load_state_dict(path)
    epoch = meta["epochs"] if Path(path).name.startswith("epoch") else None
    return jobs.Pretrained(study=meta["study"], run=meta["run"], pool=meta["pool"], epoch=epoch)


def finetune(config, study, run, dataset, ratio, seed, out, pretrained=None, *, progress=False, metrics=None,
             save_model=True, store_dir=None, split_file=None, predictions=None):
    """Finetune (and test); returns the kept model.pt, or the metrics file when no model is kept."""
    c = resolved(config)
    job = dataclasses.replace(jobs.FinetuneJob.of(c, study, run, dataset, ratio, seed),
                              pretrained=_pretrained_from(pretrained))
    out = Path(out)
    model = out / "model.pt" if save_model else None
    metrics = Path(metrics) if metrics is not None else out / "metrics.json"
    finetune_module.finetune(job, out, store=store_dir or store_path(c, dataset),
                             split=split_file or split_path(c, dataset), runtime=st.runtime(c, study, "finetune", run),
                             metrics=metrics, pretrained=pretrained, predictions=predictions, model=model,
                             progress=progress)
    return model if model is not None else metrics


def evaluate(config, study, run, dataset, ratio, seed, model, out, *, progress=False, store_dir=None,
             split_file=None, predictions=None):
    c = resolved(config)
    job = jobs.FinetuneJob.of(c, study, run, dataset, ratio, seed)
    return evaluate_module.evaluate(job, model, out, store=store_dir or store_path(c, dataset),
                                    split=split_file or split_path(c, dataset),
                                    runtime=st.runtime(c, study, "finetune", run), predictions=predictions)


def base_config(downstream="segmentation"):
    study = {
        "paper": "hssl", "downstream": downstream,
        "pretrain_datasets": list(DATASETS), "finetune_datasets": ["msd_heart"], "label_ratios": ["100"],
        "pretrain": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1, "steps_per_epoch": 3},
        "finetune": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1, "val_every": 1},
        "runs": {"stand": {"method": "standin", "arch": "tiny"},
                 "seq": {"method": "standin", "arch": "tiny", "params": {"offset": 1}},
                 "enc": {"method": "standin", "arch": "tiny", "transfer": "encoder"}},
    }
    if downstream == "denoising":
        study.update(paper="ssmtl", noise_sigma=0.1)
    config = {"experiment": "t", "data": {"image_size": 32}, "datasets": {d: {} for d in DATASETS},
              "device": "cpu", "threads": 1, "studies": {"s": study}}
    from unittest import mock

    from medssl.methods import METHODS
    from medssl.models import MODELS

    with mock.patch.dict(METHODS, standin=StandIn), mock.patch.dict(MODELS, tiny=TinyNet):
        return cfg.validate(config)  # the config check knows registered names only: the stand-ins, briefly


def write_split(config, store, dataset, train, val, test, subsets=None):
    idx = store.index
    tr = idx[idx["patient"].isin(train)]
    fg = tr[tr["fg"] == 1]
    subsets = subsets or {"100": [[c, int(s)] for c, s in zip(fg["case"], fg["slice"])],
                          "5": [[c, int(s)] for c, s in zip(fg["case"][:2], fg["slice"][:2])]}
    write_json(split_path(config, dataset),
               {"dataset": dataset, "seed": 0, "ratios": [0.6, 0.2, 0.2], "counts": None,
                "patients": {"train": train, "val": val, "test": test}, "label_subsets": subsets,
                "scans_subset": None})


@pytest.fixture
def world(tmp_path, monkeypatch):
    """cwd = tmp dir with results/t/data/{msd_heart,msd_spleen} and their splits; stand-in factories."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common, "build_model", lambda arch, out_channels, **kw: TinyNet(out_channels))
    monkeypatch.setattr(common, "build_method", lambda name, backbone, **kw: StandIn(backbone, **kw))
    StandIn.calls, StandIn.nan_at = 0, None
    config = base_config()
    heart = make_store(store_path(config, "msd_heart"), [6, 6, 5, 6, 5], n_classes=2,
                       dataset="msd_heart", classes=["left atrium"], seed=1)
    spleen = make_store(store_path(config, "msd_spleen"), [5, 6, 5], n_classes=2,
                        dataset="msd_spleen", classes=["spleen"], seed=2)
    write_split(config, heart, "msd_heart", ["case0", "case1", "case2"], ["case3"], ["case4"])
    write_split(config, spleen, "msd_spleen", ["case0"], ["case1"], ["case2"])
    return config


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def log_without_time(path):
    return pd.read_csv(path).drop(columns=["time"])


# ---------------------------------------------------------------------------------------------- tests

class Stop(Exception):
    """Raised by :func:`interrupt_after_first_checkpoint`: a job killed right after its epoch-1 checkpoint."""


def interrupt_after_first_checkpoint(monkeypatch):
    """Make training stop right after writing its epoch-1 checkpoint; returns the original method."""
    orig = Loop.save_checkpoint

    def stop_after_first(self):
        orig(self)
        if self.epoch == 1:
            raise Stop

    monkeypatch.setattr(Loop, "save_checkpoint", stop_after_first)
    return orig


def test_task_group_ids():
    config = base_config()
    config["studies"]["s"]["pretrain_datasets"] = ["msd_heart", "msd_liver", "msd_prostate", "msd_spleen"]
    config["datasets"].update({"msd_liver": {}, "msd_prostate": {}})
    task_of, group_of, n_tasks, n_groups = st.task_group_ids(config, "s", ["msd_spleen"])
    assert task_of == {"msd_heart": 0, "msd_liver": 1, "msd_prostate": 2, "msd_spleen": 3}
    assert group_of == {"msd_heart": 0, "msd_liver": 1, "msd_prostate": 2, "msd_spleen": 1}
    assert (n_tasks, n_groups) == (4, 3)
    _, g2, _, n2 = st.task_group_ids(config, "s", ["mmwhs_ct"])  # no paper group: own group
    assert n2 == 4 and g2["mmwhs_ct"] == 3


def test_pretrain_outputs_and_resume_equivalence(world, tmp_path, monkeypatch, caplog):
    out_a = tmp_path / "A"
    pretrain(world, "s", "stand", "all", out_a, progress=False)
    model_a = torch.load(out_a / "model.pt", weights_only=False)
    assert model_a["epochs"] == 2 and model_a["arch"] == "tiny" and model_a["method"] == "standin"
    assert all(k.split(".")[0] in ("encoder", "neck", "decoder", "head") for k in model_a["state_dict"])
    log_a = pd.read_csv(out_a / "log.csv")
    assert list(log_a.columns) == ["epoch", "step", "knn_task", "knn_group", "embed_std", "loss", "rec", "task",
                                   "group", "lr", "time"]  # the representation monitor: before training, at the end
    assert log_a["epoch"].tolist() == [0, 1, 2] and log_a["step"].tolist() == [0, 3, 6]
    assert log_a["lr"].tolist()[1:] == [1e-3, 1e-3] and log_a["knn_task"].notna().tolist() == [True, False, True]
    assert (out_a / "progress.png").stat().st_size > 10_000
    assert "method_state" in model_a  # the method's heads, for the t-SNE features
    assert not (out_a / "checkpoint.pt").exists()  # removed once model.pt is written: nothing to resume

    # 2 epochs interrupted after epoch 1's checkpoint, then the same job again: resumes from epoch 1

    out_b = tmp_path / "B"
    orig = interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        pretrain(world, "s", "stand", "all", out_b, progress=False)
    monkeypatch.setattr(Loop, "save_checkpoint", orig)
    ck = ckpt.load(out_b / "checkpoint.pt")
    assert ck["epoch"] == 1 and ck["step"] == 3 and {"python", "numpy", "torch"} <= set(ck["rng"])
    assert not (out_b / "model.pt").exists()
    with caplog.at_level("INFO", logger="medssl.train"):
        pretrain(world, "s", "stand", "all", out_b, progress=False)
    assert "resuming from epoch 1" in caplog.text
    model_b = torch.load(out_b / "model.pt", weights_only=False)
    assert states_equal(model_a["state_dict"], model_b["state_dict"])
    pd.testing.assert_frame_equal(log_without_time(out_a / "log.csv"), log_without_time(out_b / "log.csv"))


def test_pretrain_keep_epochs_and_lr_scaling(world, tmp_path):
    world["studies"]["s"]["pretrain"].update(keep_epochs=[1], lr_scaling="linear", lr_reference_batch=8)
    pretrain(world, "s", "stand", "msd_heart", tmp_path / "P", progress=False)
    kept = torch.load(tmp_path / "P" / "epoch1.pt", weights_only=False)
    assert kept["epochs"] == 1 and "state_dict" in kept
    assert not (tmp_path / "P" / "epoch2.pt").exists()
    assert pd.read_csv(tmp_path / "P" / "log.csv")["lr"].iloc[1] == pytest.approx(1e-3 * 4 / 8)


def test_pretrain_foreground_filter_and_pool_ids(world, tmp_path, monkeypatch):
    seen = []
    orig = StandIn.forward

    def spy(self, batch):
        seen.append((batch["task"].tolist(), batch["group"].tolist(), batch["row"].tolist()))
        return orig(self, batch)

    monkeypatch.setattr(StandIn, "forward", spy)
    world["studies"]["s"]["pretrain"].update(epochs=1, steps_per_epoch=None)
    pretrain(world, "s", "stand", "all", tmp_path / "P", progress=False)
    heart = open_store(world, "msd_heart")
    spleen = open_store(world, "msd_spleen")
    fg = {0: set(heart.rows(foreground_only=True)), 1: set(spleen.rows(foreground_only=True))}
    n_used = 0
    for tasks, groups, rows in seen:
        for t, g, r in zip(tasks, groups, rows):
            assert g == 0 if t == 0 else g == 1  # heart: group 1, spleen: group 2 -> contiguous 0, 1
            assert r in fg[t]  # paper hssl: foreground slices only
            n_used += 1
    assert n_used == (len(fg[0]) + len(fg[1])) // 4 * 4  # one pass, drop_last


def test_nan_loss_raises_and_keeps_checkpoint(world, tmp_path):
    out = tmp_path / "N"
    world["studies"]["s"]["pretrain"]["epochs"] = 3
    StandIn.nan_at = 5  # 3 steps per epoch: epoch 2, its step 2, global step 5
    with pytest.raises(NonFiniteLossError) as err:
        pretrain(world, "s", "stand", "all", out, progress=False)
    assert err.value.epoch == 2 and err.value.step == 5 and err.value.epoch_step == 2
    assert "epoch 2" in str(err.value) and "step 5" in str(err.value)
    ck = ckpt.load(out / "checkpoint.pt")
    assert ck["epoch"] == 1 and ck["step"] == 3
    assert all(torch.isfinite(v).all() for v in ck["module"].values() if v.is_floating_point())
    assert not (out / "model.pt").exists()
    assert len(pd.read_csv(out / "log.partial.csv")) == 2  # the monitor's epoch 0 and epoch 1
    assert not (out / "log.csv").exists()


def test_sequence_pretraining_batches(world, tmp_path, monkeypatch):
    batches = []
    orig = StandIn.forward

    def spy(self, batch):
        batches.append({k: v.clone() for k, v in batch.items()})
        return orig(self, batch)

    monkeypatch.setattr(StandIn, "forward", spy)
    world["studies"]["s"]["pretrain"]["epochs"] = 1
    pretrain(world, "s", "seq", "msd_heart", tmp_path / "Q", progress=False)
    heart = open_store(world, "msd_heart")
    for b in batches:
        assert {"image", "prev", "next", "pair", "task", "row"} <= set(b)
        rows = b["row"].numpy()
        assert np.allclose(b["prev"][:, 0].numpy(), heart.images[rows - 1].astype(np.float32))
        assert (heart.case_start[rows] <= rows - 1).all() and (rows + 1 < heart.case_stop[rows]).all()


def test_finetune_uses_only_subset_rows(world, tmp_path, monkeypatch):
    from medssl.data import loaders

    seen = []
    orig = loaders.SliceDataset.__getitems__

    def spy(self, items):
        b = orig(self, items)
        seen.extend(b["row"].tolist())
        return b

    monkeypatch.setattr(loaders.SliceDataset, "__getitems__", spy)
    pre = pretrain(world, "s", "stand", "all", tmp_path / "P", progress=False)
    seen.clear()
    path = finetune(world, "s", "stand", "msd_heart", "5", 0, tmp_path / "F", pre, progress=False)
    store = open_store(world, "msd_heart")
    split = load_split(world, "msd_heart")
    allowed = set(store.rows_of(split["label_subsets"]["5"]).tolist())
    assert seen and set(seen) <= allowed
    meta = torch.load(path, weights_only=False)
    assert meta["train_slices"] == 2 and meta["selection"] == "val" and meta["best_epoch"] in (1, 2)
    log = pd.read_csv(tmp_path / "F" / "log.csv")
    assert "val_dice" in log.columns and log["val_dice"].notna().all()
    lam = log["lr"].tolist()
    assert lam[0] == pytest.approx(1e-3) and lam[1] == pytest.approx(1e-3 * 0.5 ** 0.9)
    # a subset reaching into a test patient is refused
    bad = dict(split, label_subsets={"x": [["case4", 1]]})
    with pytest.raises(ValueError, match="validation/test"):
        train_rows(store, bad, "x")


def test_failed_finetune_keeps_the_previous_log_beside_the_previous_model(world, tmp_path, monkeypatch):
    """Issue 12: a rerun that fails must not leave a new log.csv beside the old model.pt."""
    from medssl.train import loop as loop_mod

    out = tmp_path / "F"
    finetune(world, "s", "stand", "msd_heart", "5", 0, out, None, progress=False)
    before = {name: (out / name).read_bytes() for name in ("log.csv", "model.pt")}
    world["studies"]["s"]["finetune"]["lr"] = 5e-4  # other settings: the rerun starts afresh
    orig = loop_mod.write_log

    def fail_after_first_epoch(path, rows):
        orig(path, rows)
        raise Stop

    monkeypatch.setattr(loop_mod, "write_log", fail_after_first_epoch)
    with pytest.raises(Stop):
        finetune(world, "s", "stand", "msd_heart", "5", 0, out, None, progress=False)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert len(pd.read_csv(out / "log.partial.csv")) == 1  # the failed run's own rows, kept apart


def test_transfer_modes(world, tmp_path):
    pre = pretrain(world, "s", "stand", "all", tmp_path / "P", progress=False)
    src = torch.load(pre, weights_only=False)["state_dict"]
    for transfer, expect in (("all", lambda k: not k.startswith("head.")),
                             ("encoder", lambda k: k.startswith("encoder."))):
        torch.manual_seed(123)
        model = TinyNet(2)
        loaded, skipped = load_pretrained(model, pre, transfer)
        assert set(loaded) == {k for k in src if expect(k)}
        assert all(not expect(s.split(" ")[0]) for s in skipped)
        for k, v in model.state_dict().items():
            assert torch.equal(v, src[k]) == expect(k) or k.endswith("num_batches_tracked")


def test_finetune_resume_equivalence_and_seeds(world, tmp_path, monkeypatch):
    pre = pretrain(world, "s", "stand", "all", tmp_path / "P", progress=False)
    a = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "A", pre, progress=False)
    again = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "A2", pre, progress=False)
    other = finetune(world, "s", "stand", "msd_heart", "100", 1, tmp_path / "S1", pre, progress=False)
    sa = torch.load(a, weights_only=False)
    assert states_equal(sa["state_dict"], torch.load(again, weights_only=False)["state_dict"])
    assert not states_equal(sa["state_dict"], torch.load(other, weights_only=False)["state_dict"])


    orig = interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "B", pre, progress=False)
    monkeypatch.setattr(Loop, "save_checkpoint", orig)
    assert not (tmp_path / "B" / "model.pt").exists()
    b = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "B", pre, progress=False)
    sb = torch.load(b, weights_only=False)
    assert states_equal(sa["state_dict"], sb["state_dict"]) and sa["best_epoch"] == sb["best_epoch"]
    pd.testing.assert_frame_equal(log_without_time(tmp_path / "A" / "log.csv"),
                                  log_without_time(tmp_path / "B" / "log.csv"))
    assert not (tmp_path / "A" / "checkpoint.pt").exists() and not (tmp_path / "B" / "checkpoint.pt").exists()


def test_finetune_without_val_keeps_last(world, tmp_path, caplog):
    store = open_store(world, "msd_heart")
    write_split(world, store, "msd_heart", ["case0", "case1", "case2", "case3"], [], ["case4"])
    with caplog.at_level("WARNING", logger="medssl.train"):
        path = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "F", None, progress=False)
    assert "no validation patients" in caplog.text
    assert torch.load(path, weights_only=False)["selection"] == "last"


def test_evaluate_writes_contract_json(world, tmp_path):
    model = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "F", None, progress=False)
    out = tmp_path / "M" / "seed0.json"
    res = evaluate(world, "s", "stand", "msd_heart", "100", 0, model, out, progress=False)
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(res))
    assert set(data) == {"study", "run", "method", "arch", "dataset", "ratio", "seed", "synthetic",
                         "downstream", "n_params", "model_width", "classes", "slice_pooled", "per_volume", "volume_mean",
                         "confusion", "psnr", "hd95_units", "slice_filter", "n_slices", "all_slices",
                         "never_predicted"}
    assert data["classes"] == ["left atrium"] and data["synthetic"] is True and data["psnr"] is None
    assert data["hd95_units"] == "voxels"  # the hand-made store has no spacing
    # paper hssl: the test scores the slices the study's slice_filter keeps, all-slice scores beside them
    assert data["slice_filter"] == "foreground" and set(data["all_slices"]["slice_pooled"]) == set(data["slice_pooled"])
    assert data["n_params"] == sum(p.numel() for p in TinyNet(2).parameters())
    sp = data["slice_pooled"]
    assert set(sp) == {"dice", "iou", "mean_dice", "miou"} and set(sp["dice"]) == {"left atrium"}
    conf = np.array(data["confusion"])
    store = open_store(world, "msd_heart")
    fg_slices = sum(int((store.labels[x] > 0).any()) for x in store.rows(["case4"]))
    assert data["n_slices"] == fg_slices < 5  # case4: 5 slices of 32x32, of which only those with foreground
    assert conf.shape == (2, 2) and conf.sum() == data["n_slices"] * 32 * 32
    tp, fp, fn = conf[1, 1], conf[0, 1], conf[1, 0]
    if tp + fp + fn:
        assert sp["dice"]["left atrium"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert [v["case"] for v in data["per_volume"]] == ["case4"]
    pv = data["per_volume"][0]
    assert set(pv) == {"patient", "case", "dice", "iou", "hd95"} and pv["patient"] == "case4"
    vm = data["volume_mean"]
    assert set(vm) == {"dice", "iou", "hd95", "mean_dice", "miou"}
    for v in (sp["mean_dice"], sp["miou"]):
        assert v is None or 0 <= v <= 1
    # with the slicer's per-case spacing, HD95 is in mm
    meta_path = store_path(world, "msd_heart") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["spacing"] = {c: [2.0, 1.5, 1.5] for c in store.index["case"].unique()}
    meta_path.write_text(json.dumps(meta))
    mm = evaluate(world, "s", "stand", "msd_heart", "100", 0, model, tmp_path / "M2" / "seed0.json", progress=False)
    assert mm["hd95_units"] == "mm" and mm["slice_pooled"] == data["slice_pooled"]
    npz = np.load(tmp_path / "M" / "seed0_pred.npz")
    assert npz["image"].shape == npz["label"].shape == npz["pred"].shape == (1, 32, 32)
    r = int(npz["rows"][0])
    fg_counts = [(store.labels[x] > 0).sum() for x in store.rows(["case4"])]
    assert (store.labels[r] > 0).sum() == max(fg_counts)


def test_denoising_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common, "build_model", lambda arch, out_channels, **kw: TinyNet(out_channels))
    config = base_config("denoising")
    heart = make_store(store_path(config, "msd_heart"), [6, 6, 5, 6, 5], dataset="msd_heart",
                       classes=["left atrium"], seed=1)
    write_split(config, heart, "msd_heart", ["case0", "case1", "case2"], ["case3"], ["case4"])
    model = finetune(config, "s", "stand", "msd_heart", "100", 0, tmp_path / "F", None, progress=False)
    meta = torch.load(model, weights_only=False)
    assert meta["out_channels"] == 1 and meta["score_name"] == "val_psnr"
    assert "val_psnr" in pd.read_csv(tmp_path / "F" / "log.csv").columns
    res = evaluate(config, "s", "stand", "msd_heart", "100", 0, model, tmp_path / "seed0.json", progress=False)
    assert res["downstream"] == "denoising" and res["psnr"] is not None and 0 < res["psnr"] < 100
    assert res["per_volume"][0]["psnr"] is not None
    assert res["confusion"] == [] and res["slice_pooled"]["mean_dice"] is None and res["classes"] == []
    # same seed -> same noise -> same PSNR
    res2 = evaluate(config, "s", "stand", "msd_heart", "100", 0, model, tmp_path / "again.json", progress=False)
    assert res2["psnr"] == res["psnr"]
    npz = np.load(tmp_path / "seed0_pred.npz")
    assert npz["pred"].dtype == np.float32 and npz["label"].dtype == np.float32


# --------------------------------------------------------------------------- real models and methods
def test_end_to_end_real_hssl_net_simclr(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = base_config()
    study = config["studies"]["s"]
    study["runs"] = {"simclr": {"method": "simclr", "arch": "hssl_net"}}
    study["pretrain"].update(epochs=1, steps_per_epoch=2)
    study["finetune"].update(epochs=1, steps_per_epoch=1)
    for d, n, seed in (("msd_heart", [6, 6, 5, 6, 5], 1), ("msd_spleen", [5, 6, 5], 2)):
        store = make_store(store_path(config, d), n, dataset=d, classes=["x"], seed=seed)
        pats = sorted(set(store.index["patient"]))
        write_split(config, store, d, pats[:-2], [pats[-2]], [pats[-1]])
    pre = pretrain(config, "s", "simclr", "all", tmp_path / "P", progress=False)
    assert torch.load(pre, weights_only=False)["n_params"] > 1e6
    model = finetune(config, "s", "simclr", "msd_heart", "100", 0, tmp_path / "F", pre, progress=False)
    res = evaluate(config, "s", "simclr", "msd_heart", "100", 0, model, tmp_path / "seed0.json", progress=False)
    assert res["arch"] == "hssl_net" and math.isfinite(pd.read_csv(tmp_path / "P" / "log.csv")["loss"][1])


def test_end_to_end_real_ssmtl_sequence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = base_config()
    study = config["studies"]["s"]
    study["paper"] = "ssmtl"
    study["runs"] = {"ssmtl": {"method": "ssmtl", "arch": "unet", "params": {"offset": 1}}}
    study["pretrain"].update(epochs=1, steps_per_epoch=1, batch_size=2)
    store = make_store(store_path(config, "msd_heart"), [6, 6, 5, 6, 5], dataset="msd_heart",
                       classes=["x"], seed=1)
    write_split(config, store, "msd_heart", ["case0", "case1", "case2"], ["case3"], ["case4"])
    pre = pretrain(config, "s", "ssmtl", "msd_heart", tmp_path / "P", progress=False)
    assert torch.load(pre, weights_only=False)["method"] == "ssmtl"


# ------------------------------------------------------------------ step budget, head bias, one-process jobs
def test_step_budget_does_not_collapse_with_subset_size(world, tmp_path):
    world["studies"]["s"]["finetune"].update(epochs=2, steps=6, batch_size=4)
    for ratio in ("5", "100"):  # 2 labelled slices, and all of them
        finetune(world, "s", "stand", "msd_heart", ratio, 0, tmp_path / ratio, None, progress=False)
        log = pd.read_csv(tmp_path / ratio / "log.csv")
        assert log["step"].tolist() == [3, 6], ratio  # ceil(6 / 2) full batches per epoch, 6 in total
    # the papers' semantics without `steps`: one pass per epoch, so a 2-slice subset gets 1 step per epoch
    world["studies"]["s"]["finetune"].update(steps=None)
    finetune(world, "s", "stand", "msd_heart", "5", 0, tmp_path / "epochs", None, progress=False)
    assert pd.read_csv(tmp_path / "epochs" / "log.csv")["step"].tolist() == [1, 2]
    world["studies"]["s"]["finetune"].update(steps=6, steps_per_epoch=2)
    with pytest.raises(ValueError, match="exclusive"):
        finetune(world, "s", "stand", "msd_heart", "5", 0, tmp_path / "both", None, progress=False)


def test_step_budget_in_pretraining(world, tmp_path):
    world["studies"]["s"]["pretrain"].update(epochs=2, steps=5, steps_per_epoch=None)
    pretrain(world, "s", "stand", "all", tmp_path / "P", progress=False)
    assert pd.read_csv(tmp_path / "P" / "log.csv")["step"].tolist() == [0, 3, 6]  # ceil(5 / 2) per epoch


def test_epoch_batches_sampler_is_exact_and_full():
    from medssl.data.loaders import EpochBatchSampler

    s = EpochBatchSampler(3, 4, seed=0, batches=5)
    s.set_epoch(1)
    batches = list(s)
    assert len(s) == 5 and len(batches) == 5 and all(len(b) == 4 for b in batches)
    drawn = np.bincount([i for b in batches for i, _ in b], minlength=3)
    assert drawn.max() - drawn.min() <= 1  # successive permutations: every slice about equally often


class PriorNet(TinyNet):
    priors: list = []

    def init_head_bias(self, prior, *, mean=None):
        type(self).priors.append(np.asarray([mean] if mean is not None else prior, dtype=np.float64))
        with torch.no_grad():
            if mean is not None:
                self.head.bias.fill_(mean)
            else:
                self.head.bias.copy_(torch.log(torch.as_tensor(prior).clamp(min=1e-4)))
        return self.head.bias.detach()


def test_finetune_sets_head_bias_from_the_training_prior(world, tmp_path, monkeypatch):
    PriorNet.priors = []
    monkeypatch.setattr(common, "build_model", lambda arch, out_channels, **kw: PriorNet(out_channels))
    world["studies"]["s"]["finetune"].update(epochs=1)
    finetune(world, "s", "stand", "msd_heart", "5", 0, tmp_path / "F", None, progress=False)
    store = open_store(world, "msd_heart")
    rows = train_rows(store, load_split(world, "msd_heart"), "5")
    lab = np.asarray(store.labels[np.sort(rows)])
    expect = np.bincount(lab.ravel(), minlength=2) / lab.size
    assert len(PriorNet.priors) == 1 and np.allclose(PriorNet.priors[0], expect)
    # denoising heads start at the mean clean intensity of the training slices
    world["studies"]["s"].update(downstream="denoising", paper="ssmtl")
    finetune(world, "s", "stand", "msd_heart", "5", 0, tmp_path / "D", None, progress=False)
    img = np.asarray(store.images[np.sort(rows)], dtype=np.float64)
    assert len(PriorNet.priors) == 2 and PriorNet.priors[1][0] == pytest.approx(img.mean())


def test_finetune_with_metrics_evaluates_in_one_process(world, tmp_path):
    out = tmp_path / "M" / "seed0.json"
    res = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "F", None, progress=False,
                   metrics=out, save_model=False)
    assert res == out and out.exists() and (tmp_path / "M" / "seed0_pred.npz").exists()
    assert not (tmp_path / "F" / "model.pt").exists() and not (tmp_path / "F" / "checkpoint.pt").exists()
    # the same metrics as finetune -> model.pt -> evaluate in two processes
    model = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "G", None, progress=False)
    two = evaluate(world, "s", "stand", "msd_heart", "100", 0, model, tmp_path / "E" / "seed0.json", progress=False)
    one = json.loads(out.read_text())
    assert one["slice_pooled"] == two["slice_pooled"] and one["confusion"] == two["confusion"]


def test_jobs_read_the_store_and_split_they_are_given(world, tmp_path):
    """Issue 11: pretrain and finetune read their inputs from the paths passed (the rule's {input}) and write
    predictions where told (its {output}), not where the config says; a store or split of another dataset is
    refused, naming both."""
    import shutil

    moved = tmp_path / "elsewhere"
    stores, splits = {}, {}
    for d in ("msd_heart", "msd_spleen"):
        stores[d] = shutil.move(str(store_path(world, d)), str(moved / "stores" / d))
        splits[d] = shutil.move(str(split_path(world, d)), str(moved / f"{d}.json"))
    with pytest.raises(FileNotFoundError):  # nothing left where the layout would look
        open_store(world, "msd_heart")
    pool = cfg.pool_datasets(world, "s", "all")
    pre = pretrain(world, "s", "stand", "all", tmp_path / "P", progress=False,
                   store_dirs=[stores[d] for d in pool], split_files=[splits[d] for d in pool])
    metrics, pred = tmp_path / "F.json", tmp_path / "figures" / "F.npz"
    finetune(world, "s", "stand", "msd_heart", "5", 0, tmp_path / "F", pre, progress=False, metrics=metrics,
             store_dir=stores["msd_heart"], split_file=splits["msd_heart"], predictions=pred)
    assert read_json(metrics)["dataset"] == "msd_heart"
    assert set(np.load(pred)) >= {"image", "label", "pred"} and not (tmp_path / "F_pred.npz").exists()
    with pytest.raises(ValueError, match="a slice store of 'msd_spleen', not of 'msd_heart'"):
        open_store(world, "msd_heart", stores["msd_spleen"])
    with pytest.raises(ValueError, match="the split of 'msd_spleen', not of 'msd_heart'"):
        load_split(world, "msd_heart", splits["msd_spleen"])
    with pytest.raises(ValueError, match="1 stores given for the 2 datasets of the pool"):
        pretrain(world, "s", "stand", "all", tmp_path / "P2", progress=False, store_dirs=[stores["msd_heart"]])


def test_a_finetune_with_nothing_to_learn_fails_naming_it(world, tmp_path, caplog):
    """Issue 21: a label subset whose slices hold no labelled pixel used to train a background-only model to
    the end (null Dice, exit 0); it is refused, and a class absent from the subset is warned about."""
    heart = open_store(world, "msd_heart")
    write_split(world, heart, "msd_heart", ["case0", "case1", "case2"], ["case3"], ["case4"],
                subsets={"100": [["case0", 0], ["case1", 0]], "5": [["case0", 0]]})  # first slices: background
    with pytest.raises(ValueError, match=r"hold no pixel of any class \(left atrium\).*nothing to learn"):
        finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "F")
    assert not (tmp_path / "F" / "metrics.json").exists()


def test_finetune_refuses_a_pretrained_file_other_than_its_record_names(world, tmp_path):
    """The record names the pretraining a finetune starts from (study, run, pool, kept epoch); a model file of
    another pool, or none, is refused before training."""
    from medssl.train.checkpoint import ModelMismatchError

    pre_heart = pretrain(world, "s", "stand", "msd_heart", tmp_path / "P")  # the pool msd_heart, not "all"
    c = resolved(world)
    job = jobs.FinetuneJob.of(c, "s", "stand", "msd_heart", "100", 0)
    assert job.pretrained == jobs.Pretrained(study="s", run="stand", pool="all", epoch=None)
    inputs = dict(store=store_path(c, "msd_heart"), split=split_path(c, "msd_heart"), metrics=tmp_path / "m.json",
                  runtime=st.runtime(c, "s", "finetune", "stand"), progress=False)
    with pytest.raises(ModelMismatchError, match="pool is 'msd_heart', expected 'all'"):
        finetune_module.finetune(job, tmp_path / "F", pretrained=pre_heart, **inputs)
    with pytest.raises(ValueError, match="pass its model file with --pretrained"):
        finetune_module.finetune(job, tmp_path / "F", **inputs)
    scratch = dataclasses.replace(job, pretrained=None)
    with pytest.raises(ValueError, match="trained from scratch, but --pretrained"):
        finetune_module.finetune(scratch, tmp_path / "F", pretrained=pre_heart, **inputs)
    assert not (tmp_path / "m.json").exists()


def test_a_model_that_segments_nothing_is_flagged(world, tmp_path, caplog):
    """Issue 25: a finetune whose model predicts background everywhere (here: no learning, the head at the log
    class prior) used to end with Dice 0 and exit 0 in silence; its log warns, its metrics name the class."""
    world["studies"]["s"]["finetune"].update(epochs=1, lr=1e-12)
    with caplog.at_level("WARNING", logger="medssl.train"):
        metrics = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "F", save_model=False,
                           metrics=tmp_path / "m.json")
    result = json.loads(metrics.read_text())
    assert result["never_predicted"] == ["left atrium"] and result["slice_pooled"]["mean_dice"] == 0.0
    assert "predicts no pixel of left atrium" in caplog.text and "Dice 0 on the validation slices" in caplog.text
