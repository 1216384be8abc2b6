"""Supervised finetuning of one run on one dataset, label budget and seed (``medssl finetune``).

What depends on the study's downstream task (output channels, training target and loss, head
initialisation, validation score) is :mod:`medssl.train.downstream`'s; this module never branches on it.

* Model: ``models.build(arch, out_channels=...)`` (segmentation: n_classes; denoising: 1), initialised from
  ``pretrained`` (transfer ``all`` = every tensor except ``head.*``; ``encoder`` = ``encoder.*`` only); the
  tensors loaded and skipped are logged. ``model_width`` (demo only) narrows every layer. Segmentation heads
  start with their bias at the log class prior of the training slices, denoising heads at their mean
  intensity (:meth:`~medssl.models.base.SegNet.init_head_bias`; the papers do not say how the head is
  initialised).
* Data: the split's ``label_subsets[ratio]`` slices only (training patients; checked), random crop + rotation
  (batched on the device, parameters from the seeded torch RNG), cross-entropy; denoising: Gaussian noise
  ``noise_sigma`` on the inputs and L1 to the clean image. Adam with the poly schedule
  lr·(1 − epoch/epochs)^poly_power, stepped per epoch. An epoch is one pass over the subset (capped at
  ``steps_per_epoch``), or with ``steps`` exactly ``ceil(steps / epochs)`` batches whatever the subset size
  (:func:`medssl.train.loop.epoch_batches`).
* Model selection every ``val_every`` epochs and at the last epoch on the validation patients' slices
  that the study's ``slice_filter`` keeps (``medssl.train.evaluate.held_out_rows``): slice-pooled mean
  foreground Dice (denoising: PSNR). Without validation patients the last epoch is kept (logged as a warning).

``model.pt`` = ``{"state_dict": best model, "kind": "finetune", "arch", "out_channels", "n_params", "run",
"method", "study", "dataset", "ratio", "seed", "epochs", "selection": "val"|"last", "best_epoch",
"best_score", "score_name", "train_slices", "pretrained", "transfer", "loaded", "skipped", "width"}``; not
written with ``save_model=False`` (``medssl finetune --metrics``, which evaluates the selected model in the
same process).
``log.csv`` adds ``val_dice`` (or ``val_psnr``) on validated epochs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medssl import config as cfg
from medssl.data.loaders import SliceDataset, make_loader
from medssl.train import checkpoint as ckpt
from medssl.train import common
from medssl.train import device as dev
from medssl.models import config_width
from medssl.train.downstream import Downstream, downstream_of
from medssl.train.evaluate import evaluate_model, held_out_rows
from medssl.train.loop import MODEL, Loop, build_optimizer, ensure_logging, epoch_batches, poly_lambda
from medssl.train.seeding import seed_everything

log = logging.getLogger("medssl.train")

_UNHASHED = ("checkpoint_every", "num_workers", "images_per_second")


class Supervised(nn.Module):
    """Wraps a SegNet for the loop: ``forward(batch) -> {"loss"}`` (the downstream task's loss)."""

    def __init__(self, model: nn.Module, task: Downstream):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: dict) -> dict:
        out = self.model(batch["image"]).float()
        return {"loss": self.task.loss(out, batch)}


def load_pretrained(model: nn.Module, path: str | Path, transfer: str = "all") -> tuple[list[str], list[str]]:
    """Copy pretrained backbone tensors into ``model``; returns (loaded keys, skipped 'key (reason)')."""
    state, _ = ckpt.load_state_dict(path)
    if any(k.startswith("backbone.") for k in state):  # a pretraining checkpoint.pt: the method's state
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    own = model.state_dict()
    chosen, loaded, skipped = {}, [], []
    for k, v in state.items():
        if transfer == "encoder" and not k.startswith("encoder."):
            skipped.append(f"{k} (transfer=encoder)")
        elif k.startswith("head."):
            skipped.append(f"{k} (head)")
        elif k not in own:
            skipped.append(f"{k} (not in model)")
        elif tuple(own[k].shape) != tuple(v.shape):
            skipped.append(f"{k} (shape {tuple(v.shape)} != {tuple(own[k].shape)})")
        else:
            chosen[k] = v
            loaded.append(k)
    if not loaded:
        raise ValueError(f"{path}: no pretrained tensor fits the model (transfer={transfer}); wrong file or arch?")
    model.load_state_dict(chosen, strict=False)
    untouched = [k for k in own if k not in chosen]
    log.info("transfer=%s from %s: loaded %d tensors, skipped %d; %d model tensors keep their initialisation",
             transfer, path, len(loaded), len(skipped), len(untouched))
    prefixes = sorted({s.split(".")[0] for s in skipped})
    if skipped:
        log.info("skipped pretrained tensors under: %s", ", ".join(prefixes))
    log.debug("loaded: %s", ", ".join(loaded))
    log.debug("skipped: %s", ", ".join(skipped))
    return loaded, skipped


def train_rows(store, split: dict, ratio: str) -> np.ndarray:
    """Rows of ``label_subsets[ratio]``; refuses slices of validation or test patients."""
    subsets = split["label_subsets"]
    if str(ratio) not in subsets:
        raise KeyError(f"label subset {ratio!r} not in split of {split.get('dataset')}; have {sorted(subsets)}")
    rows = store.rows_of(subsets[str(ratio)])
    if len(rows) == 0:
        raise ValueError(f"label subset {ratio!r} of {split.get('dataset')} is empty")
    held_out = set(split["patients"].get("val", [])) | set(split["patients"].get("test", []))
    bad = set(store.index["patient"].to_numpy()[rows]) & held_out
    if bad:
        raise ValueError(f"label subset {ratio!r} contains slices of validation/test patients: {sorted(bad)}")
    return rows


def finetune(config: dict, study: str, run: str, dataset: str, ratio: str, seed: int, out_dir: str | Path,
             pretrained: str | Path | None = None, *, progress: bool = True, metrics: str | Path | None = None,
             save_model: bool = True, store_dir: str | Path | None = None,
             split_file: str | Path | None = None, predictions: str | Path | None = None) -> Path:
    """Finetune and select on validation; returns the path of ``model.pt``.

    ``store_dir`` and ``split_file``: the dataset's slice store and split (the job's inputs; default: the
    experiment's layout); ``predictions``: where the test predictions go (default: beside ``metrics``).

    With ``metrics`` the selected model is also evaluated on the test patients in this process
    (:func:`medssl.train.evaluate.evaluate_model`: ``metrics`` and its ``_pred.npz``); ``save_model=False``
    then skips writing ``model.pt`` (the path of ``metrics`` is returned)."""
    if not save_model and metrics is None:
        raise ValueError("finetune: save_model=False needs a metrics path (the job would keep nothing)")
    ensure_logging()
    out_dir = Path(out_dir)
    rs = cfg.run_settings(config, study, run)
    st = cfg.stage_settings(config, study, "finetune", run)
    opts = cfg.study_options(config, study)
    task = downstream_of(opts)
    device = dev.pick_device(config.get("device", "auto"))
    dev.configure(device, config.get("threads"))
    seed_everything(int(seed), deterministic=not dev.is_cuda(device))

    store = common.open_store(config, dataset, store_dir)
    common.check_image_size(store)
    split = common.load_split(config, dataset, split_file)
    rows = train_rows(store, split, ratio)
    out_channels = task.out_channels(store)
    width = config_width(config)
    model = common.build_model(rs["arch"], out_channels, width=width)
    loaded, skipped = [], []
    if pretrained is not None:
        loaded, skipped = load_pretrained(model, pretrained, rs["transfer"])
    if hasattr(model, "init_head_bias"):  # the head is never transferred
        task.init_head(model, store, rows)
    model = dev.prepare_module(model, device)
    module = Supervised(model, task)

    epochs = int(st["epochs"])
    max_batches, batches = epoch_batches(st)
    loader = make_loader(SliceDataset(store, rows, labels=True), int(st["batch_size"]), shuffle=True,
                         fill=True, seed=int(seed), num_workers=int(st["num_workers"]),
                         pin_memory=dev.is_cuda(device), max_batches=max_batches, batches=batches)
    optimizer = build_optimizer(model.parameters(), float(st["lr"]), float(st.get("weight_decay", 0.0)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(epochs, float(st["poly_power"])))

    scale = tuple(float(x) for x in st.get("crop_scale", [1.0, 1.0]))
    degrees = float(st.get("rotation_degrees", 0.0))
    augment = ((lambda image, label: common.random_crop_rotate(image, label, scale, degrees))
               if scale != (1.0, 1.0) or degrees > 0 else None)
    norm = common.normaliser(opts["input_norm"])

    def prepare(batch):
        image = task.train_input(batch, augment)
        batch["image"] = norm(image).contiguous(memory_format=dev.memory_format(device))
        return batch

    val_patients = list(split["patients"].get("val", []))
    val_rows = (held_out_rows(store, val_patients, opts["slice_filter"]) if val_patients
                else np.array([], dtype=np.int64))
    score_name = task.score_name
    val_every = int(st.get("val_every", 1))
    best = {"score": None, "epoch": None, "state": None}
    if len(val_rows) == 0:
        log.warning("%s: the split has no validation patients; keeping the model of the last epoch", dataset)

    def on_epoch_end(epoch: int):
        if len(val_rows) == 0 or (epoch % val_every and epoch != epochs):
            return {score_name: None}
        score = task.validation_score(model, store, val_rows, device, input_norm=opts["input_norm"])
        if best["score"] is None or score > best["score"]:
            best.update(score=score, epoch=epoch, state=ckpt.cpu_state_dict(model))
        return {score_name: score}

    def extra_state():
        return dict(best)

    def load_extra(extra):
        best.update({k: extra.get(k) for k in ("score", "epoch", "state")})

    hashed = {k: v for k, v in st.items() if k not in _UNHASHED}
    loop = Loop(module, optimizer, scheduler, loader, device=device, out_dir=out_dir, epochs=epochs,
                kind="finetune", checkpoint_every=int(st["checkpoint_every"]),
                config_hash=ckpt.config_hash({k: v for k, v in rs.items() if k != "label"}, hashed, opts,
                                             dataset, str(ratio), int(seed),
                                             str(pretrained) if pretrained else None, width),
                prepare=prepare, on_epoch_end=on_epoch_end, extra_state=extra_state, load_extra=load_extra,
                desc=f"finetune {run}/{dataset}/{ratio}/seed{seed}", progress=progress, checkpoint_at_end=False)
    log.info("finetune %s/%s on %s (ratio %s, seed %d): %d labelled slices, %d val slices, %d epochs x %d "
             "steps, device %s", study, run, dataset, ratio, seed, len(rows), len(val_rows), epochs, len(loader),
             device)
    loop.run()

    if best["state"] is not None:
        state, selection = best["state"], "val"
        log.info("best %s %.4f at epoch %s", score_name, best["score"], best["epoch"])
    else:
        state, selection = ckpt.cpu_state_dict(model), "last"
    path = None
    if save_model:
        path = ckpt.save_model(
            out_dir / MODEL, state, kind="finetune", arch=rs["arch"], out_channels=out_channels,
            n_params=common.n_params(model), run=run, method=rs["method"], study=study, dataset=dataset,
            ratio=str(ratio), seed=int(seed), epochs=loop.epoch, selection=selection, best_epoch=best["epoch"],
            best_score=best["score"], score_name=score_name, train_slices=int(len(rows)),
            pretrained=str(pretrained) if pretrained else None, transfer=rs["transfer"], loaded=len(loaded),
            skipped=len(skipped), width=width)
    if metrics is not None:
        model.load_state_dict(state)
        evaluate_model(config, study, run, dataset, ratio, int(seed), model, metrics, device=device,
                       arch=rs["arch"], store=store, split=split, predictions=predictions)
    loop.finish()
    return path if path is not None else Path(metrics)
