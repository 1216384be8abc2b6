"""Supervised finetuning of one run on one dataset, label budget and seed (``medssl finetune``), from its
settings record (:class:`medssl.jobs.FinetuneJob`) and nothing else.

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

from medssl.data.loaders import SliceDataset, keep_on_device, make_loader
from medssl.jobs import FinetuneJob, file_digest
from medssl.settings import Runtime
from medssl.train import checkpoint as ckpt
from medssl.train import common
from medssl.train import device as dev
from medssl.train.downstream import Downstream, downstream_of
from medssl.train.evaluate import evaluate_model, held_out_rows
from medssl.train.loop import MODEL, Loop, build_optimizer, ensure_logging, epoch_batches, poly_lambda
from medssl.train.seeding import seed_everything

log = logging.getLogger("medssl.train")


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


def check_pretrained(path: str | Path, job: FinetuneJob) -> None:
    """Refuse (:class:`~medssl.train.checkpoint.ModelMismatchError`) a pretrained model file other than the one
    the record names: its study, run, pool, width and, for a kept epoch, that epoch."""
    _, meta = ckpt.load_state_dict(path)
    want = job.pretrained
    expect = {"kind": "pretrain", "study": want.study, "run": want.run, "pool": want.pool, "width": job.width}
    if want.epoch is not None:
        expect["epochs"] = want.epoch
    ckpt.check_model(meta, path, **expect)


def check_foreground(store, rows: np.ndarray, job: FinetuneJob) -> None:
    """Refuse a segmentation finetune whose training slices hold no labelled pixel (nothing to learn: it would
    end with a background-only model and null Dice); warn about each class none of them holds."""
    if not store.classes_present(rows):
        raise ValueError(f"{job.dataset}: the {len(rows)} training slices of label subset {job.ratio} hold no "
                         f"pixel of any class ({', '.join(store.class_names)}) in {store.path}: nothing to learn; "
                         "check the label files (the store's meta.json lists class_slices)")
    missing = store.missing_classes(rows)
    if missing:
        log.warning("%s: class %s has no pixel among the %d training slices of subset %s: its Dice will be "
                    "null", job.dataset, ", ".join(missing), len(rows), job.ratio)


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


def finetune(job: FinetuneJob, out_dir: str | Path, *, store: str | Path, split: str | Path, runtime: Runtime,
             metrics: str | Path, pretrained: str | Path | None = None, predictions: str | Path | None = None,
             model: str | Path | None = None, progress: bool = True) -> dict:
    """Finetune, select on validation, and evaluate the selected model on the test patients in the same
    process (:func:`medssl.train.evaluate.evaluate_model`: ``metrics`` and its ``_pred.npz``, or
    ``predictions``); returns the metrics.

    ``store``, ``split``: the dataset's slice store and split file (the job's inputs); ``pretrained``: the
    pretrained model file to start from; ``model``: where to keep the finetuned model file (not kept
    without)."""
    ensure_logging()
    out_dir = Path(out_dir)
    run, stage, opts, seed = job.run, job.stage, job.options, job.seed
    task = downstream_of(opts)
    device = dev.pick_device(runtime.device)
    dev.configure(device, runtime.threads)
    seed_everything(seed, deterministic=not dev.is_cuda(device))

    store_dir = store
    store = common.open_store(job.dataset, store_dir)
    common.check_image_size(store)
    split_data = common.load_split(job.dataset, split)
    rows = train_rows(store, split_data, job.ratio)
    if task.needs_labels:
        check_foreground(store, rows, job)
    out_channels = task.out_channels(store)
    net = common.build_model(run.arch, out_channels, width=job.width)
    loaded, skipped = [], []
    if (pretrained is None) != (job.pretrained is None):
        raise ValueError(f"finetune {job.study}/{run.name}: " + (
            f"starts from the pretraining {job.pretrained.study}/{job.pretrained.run}/{job.pretrained.pool}: "
            "pass its model file with --pretrained" if pretrained is None else
            f"is trained from scratch, but --pretrained {pretrained} was given"))
    if pretrained is not None:
        check_pretrained(pretrained, job)
        loaded, skipped = load_pretrained(net, pretrained, run.transfer)
    if hasattr(net, "init_head_bias"):  # the head is never transferred
        task.init_head(net, store, rows)
    net = dev.prepare_module(net, device)
    dev.compile_network(net, runtime.compile)
    module = Supervised(net, task)

    max_batches, batches = epoch_batches(stage)
    train_set = SliceDataset(store, rows, labels=True)
    resident = keep_on_device(train_set, device, runtime.data_on_gpu, runtime.data_on_gpu_fraction)
    loader = make_loader(train_set, stage.batch_size, shuffle=True, fill=True, seed=seed,
                         num_workers=0 if resident else runtime.num_workers,
                         pin_memory=dev.is_cuda(device) and not resident, max_batches=max_batches, batches=batches)
    optimizer = build_optimizer(net.parameters(), stage.lr, stage.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(stage.epochs, stage.poly_power))

    scale, degrees = tuple(stage.crop_scale), float(stage.rotation_degrees)
    augment = ((lambda image, label: common.random_crop_rotate(image, label, scale, degrees))
               if scale != (1.0, 1.0) or degrees > 0 else None)
    norm = common.normaliser(opts.input_norm)

    def prepare(batch):
        image = task.train_input(batch, augment)
        batch["image"] = norm(image).contiguous(memory_format=dev.memory_format(device))
        return batch

    val_patients = list(split_data["patients"].get("val", []))
    val_rows = (held_out_rows(store, val_patients, opts.slice_filter) if val_patients
                else np.array([], dtype=np.int64))
    score_name = task.score_name
    best = {"score": None, "epoch": None, "state": None}
    if len(val_rows) == 0:
        log.warning("%s: the split has no validation patients; keeping the model of the last epoch", job.dataset)

    def on_epoch_end(epoch: int):
        if len(val_rows) == 0 or (epoch % stage.val_every and epoch != stage.epochs):
            return {score_name: None}
        score = task.validation_score(net, store, val_rows, device, input_norm=opts.input_norm)
        if best["score"] is None or score > best["score"]:
            best.update(score=score, epoch=epoch, state=ckpt.cpu_state_dict(net))
        return {score_name: score}

    def extra_state():
        return dict(best)

    def load_extra(extra):
        best.update({k: extra.get(k) for k in ("score", "epoch", "state")})

    made_from = [store_dir, split] + ([pretrained] if pretrained is not None else [])
    loop = Loop(module, optimizer, scheduler, loader, device=device, out_dir=out_dir, epochs=stage.epochs,
                kind="finetune", checkpoint_every=runtime.checkpoint_every,
                config_hash=ckpt.config_hash(job.digest(), file_digest(*made_from)),
                prepare=prepare, on_epoch_end=on_epoch_end, extra_state=extra_state, load_extra=load_extra,
                desc=f"finetune {run.name}/{job.dataset}/{job.ratio}/seed{seed}", progress=progress,
                checkpoint_at_end=False, loggers=runtime.loggers,
                title=f"finetune {job.study}/{run.name} on {job.dataset}, label subset {job.ratio}, seed {seed}")
    log.info("finetune %s/%s on %s (ratio %s, seed %d): %d labelled slices, %d val slices, %d epochs x %d "
             "steps, device %s", job.study, run.name, job.dataset, job.ratio, seed, len(rows), len(val_rows),
             stage.epochs, len(loader), device)
    loop.run()

    if best["state"] is not None:
        state, selection = best["state"], "val"
        log.info("best %s %.4f at epoch %s", score_name, best["score"], best["epoch"])
        if score_name == "val_dice" and best["score"] == 0:
            log.warning("the model scored Dice 0 on the validation slices at every validation: it segments "
                        "nothing there (too few steps or labels to learn from?)")
    else:
        state, selection = ckpt.cpu_state_dict(net), "last"
    if model is not None:
        ckpt.save_model(
            model, state, kind="finetune", arch=run.arch, out_channels=out_channels,
            n_params=common.n_params(net), run=run.name, method=run.method, study=job.study, dataset=job.dataset,
            ratio=job.ratio, seed=seed, epochs=loop.epoch, selection=selection, best_epoch=best["epoch"],
            best_score=best["score"], score_name=score_name, train_slices=int(len(rows)),
            pretrained=str(pretrained) if pretrained else None, transfer=run.transfer, loaded=len(loaded),
            skipped=len(skipped), width=job.width)
    net.load_state_dict(state)
    result = evaluate_model(job, net, metrics, device=device, store=store, split=split_data, predictions=predictions)
    loop.finish()
    return result
