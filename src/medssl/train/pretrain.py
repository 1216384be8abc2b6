"""Self-supervised pretraining of one run on one pool (``medssl pretrain``).

Data: every slice of every patient of the pool's datasets, labels unused, as paper A states ("pre-training
uses all images"; paper B likewise pretrains on all 20 scans), restricted by the study's ``slice_filter``
(``foreground`` by default for paper hssl, ``all`` for ssmtl; see :mod:`medssl.train.common`). This includes
the test patients' *images* (never their labels). ``patients="train"`` (keyword, not a config key) excludes
each dataset's test patients (per its split file) for a leak-free variant.

Learning rate: Adam at ``lr`` (times ``batch_size / lr_reference_batch`` with ``lr_scaling: linear``), over
epochs as ``lr_schedule`` says (:func:`lr_lambda`): ``constant`` (default; paper B: "a fixed learning rate of
1e-3") or ``linear``, a linear decay to 0 (paper A, see :func:`lr_lambda` for why), stepped per epoch like
finetuning's poly schedule.

Seed: pretraining is seeded with :data:`PRETRAIN_SEED` (one pretraining per run and pool; finetuning seeds
vary downstream).

Outputs in ``out_dir`` (see :mod:`medssl.train.loop` for ``log.csv``/``checkpoint.pt``): ``model.pt`` =
``{"state_dict": backbone state, "kind": "pretrain", "arch", "out_channels": 1, "n_params", "method",
"run", "study", "pool", "datasets", "epochs", "image_size"}``; ``epoch<E>.pt`` (same format, backbone only)
for each E in ``keep_epochs``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from medssl import config as cfg
from medssl.data.loaders import IMAGE_KEYS, PoolDataset, SequenceDataset, SliceDataset, make_loader
from medssl.models import config_width
from medssl.train import checkpoint as ckpt
from medssl.train import common
from medssl.train import device as dev
from medssl.train.loop import (
    MODEL, Loop, build_optimizer, constant_lambda, ensure_logging, epoch_batches, poly_lambda, scaled_lr,
)
from medssl.train.seeding import seed_everything

log = logging.getLogger("medssl.train")

PRETRAIN_SEED = 0
_UNHASHED = ("epochs", "checkpoint_every", "keep_epochs", "num_workers", "images_per_second")


def lr_lambda(settings: dict):
    """Multiplier of the pretraining lr after ``c`` completed epochs, for ``settings["lr_schedule"]``.

    ``constant``: 1. ``linear``: ``1 - c / epochs`` (the lr falls linearly from its initial value to 0 at the
    last epoch). This is our reading of paper A's "optimized using Adam with a linear learning rate scaling for
    1k epochs (initial learning rate = 3e-4)": an *initial* learning rate implies one that changes over the
    1k epochs, as the "initial learning rate Lr" of its finetuning poly policy does. The other reading,
    SimCLR's batch-size rule lr = base x batch / 256, would start Adam at 3e-4 x 30 / 256 = 3.5e-5, not at
    the stated initial 3e-4, and a scaling rule only matters when the batch size varies, which it does not
    in paper A (30 throughout); it remains available as ``lr_scaling: linear``. ``lr_schedule: linear``
    with ``lr_scaling: none`` is what config/paper.yaml uses for paper A.
    """
    schedule = settings.get("lr_schedule", "constant")
    if schedule == "constant":
        return constant_lambda
    if schedule == "linear":
        return poly_lambda(int(settings["epochs"]), 1.0)
    raise ValueError(f"unknown lr_schedule {schedule!r} (constant or linear)")


def pool_rows(store, slice_filter: str, patients=None):
    """Rows used for pretraining: all slices, or only foreground slices when the store has any."""
    rows = store.rows(patients, foreground_only=slice_filter == "foreground")
    if slice_filter == "foreground" and len(rows) == 0:
        log.warning("%s: no foreground slices; pretraining on all its slices", store.name)
        rows = store.rows(patients)
    return rows


def build_pool_dataset(method, stores, datasets, task_of, group_of, slice_filter, patients_of, seed):
    parts = []
    for name, store in zip(datasets, stores):
        rows = pool_rows(store, slice_filter, patients_of.get(name))
        if method.sampling == "sequence":
            opts = method.sequence_options()
            ds = SequenceDataset(store, rows, offset=int(opts["offset"]), pair=bool(opts.get("pair", False)),
                                 task=task_of[name], group=group_of[name], seed=seed)
            log.info("%s: %d anchors with neighbours at ±%d in their scan (of %d candidate slices)",
                     name, len(ds), int(opts["offset"]), len(rows))
        else:
            ds = SliceDataset(store, rows, task=task_of[name], group=group_of[name])
        if len(ds) == 0:
            raise ValueError(f"pretraining pool dataset {name} has no usable slices")
        parts.append(ds)
    return PoolDataset(parts)


def pretrain(config: dict, study: str, run: str, pool: str, out_dir: str | Path, *,
             patients: str = "all", progress: bool = True, store_dirs: list | None = None,
             split_files: list | None = None) -> Path:
    """Pretrain ``run`` of ``study`` on ``pool``; returns the path of ``model.pt``.

    ``store_dirs``, ``split_files``: the pool datasets' slice stores and splits, one each in the pool's order
    (the job's inputs; default: the experiment's layout)."""
    ensure_logging()
    out_dir = Path(out_dir)
    rs = cfg.run_settings(config, study, run)
    st = cfg.stage_settings(config, study, "pretrain", run)
    opts = cfg.study_options(config, study)
    if rs["method"] == "tfs":
        raise ValueError(f"run {run!r} uses method 'tfs' (training from scratch): it has no pretraining")
    device = dev.pick_device(config.get("device", "auto"))
    dev.configure(device, config.get("threads"))
    seed_everything(PRETRAIN_SEED, deterministic=not dev.is_cuda(device))

    datasets = cfg.pool_datasets(config, study, pool)
    stores = [common.open_store(config, d, path)
              for d, path in zip(datasets, common.pool_inputs(datasets, store_dirs, "stores"))]
    split_files = dict(zip(datasets, common.pool_inputs(datasets, split_files, "splits")))
    sizes = {common.check_image_size(s) for s in stores}
    if len(sizes) != 1:
        raise ValueError(f"pool {pool}: datasets have different slice sizes {sorted(sizes)}")
    image_size = sizes.pop()
    task_of, group_of, n_tasks, n_groups = common.task_group_ids(config, study, datasets)
    patients_of = {}
    if patients == "train":
        for d in datasets:
            split = common.load_split(config, d, split_files[d])
            test = set(split["patients"]["test"])
            patients_of[d] = sorted(set(stores[datasets.index(d)].index["patient"]) - test)
    elif patients != "all":
        raise ValueError(f"patients must be 'all' or 'train', got {patients!r}")

    width = config_width(config)
    backbone = common.build_model(rs["arch"], 1, width=width)
    method = common.build_method(rs["method"], backbone, n_tasks=n_tasks, n_groups=n_groups,
                                 image_size=image_size, **rs["params"])
    method = dev.prepare_module(method, device)
    dataset = build_pool_dataset(method, stores, datasets, task_of, group_of, opts["slice_filter"],
                                 patients_of, PRETRAIN_SEED)
    loader = make_loader(dataset, int(st["batch_size"]), shuffle=True, drop_last=True, seed=PRETRAIN_SEED,
                         num_workers=int(st["num_workers"]), pin_memory=dev.is_cuda(device),
                         **dict(zip(("max_batches", "batches"), epoch_batches(st))))
    lr = scaled_lr(st)
    optimizer = build_optimizer([p for p in method.parameters() if p.requires_grad], lr,
                                float(st.get("weight_decay", 0.0)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(st))
    if getattr(method, "queue_size", None) is not None:
        from medssl.methods.moco import queue_warning

        warning = queue_warning(method.queue_size, len(dataset))
        if warning:
            log.warning("pretrain %s/%s: %s", study, run, warning)
    log.info("pretrain %s/%s on %s: %s + %s, %d slices/anchors, %d batches/epoch, lr %.3g, device %s",
             study, run, pool, rs["method"], rs["arch"], len(dataset), len(loader), lr, device)

    norm = common.normaliser(opts["input_norm"])
    prepare = None
    if opts["input_norm"] == "instance":
        def prepare(batch):
            for k in IMAGE_KEYS:
                if k in batch:
                    batch[k] = norm(batch[k])
            return batch

    keep = {int(e) for e in st.get("keep_epochs", []) or []}
    meta = {"kind": "pretrain", "arch": rs["arch"], "out_channels": 1, "n_params": common.n_params(backbone),
            "method": rs["method"], "run": run, "study": study, "pool": pool, "datasets": datasets,
            "image_size": image_size, "patients": patients, "width": width}

    def on_epoch_end(epoch: int):
        if epoch in keep:
            ckpt.save_model(out_dir / f"epoch{epoch}.pt", ckpt.cpu_state_dict(backbone), epochs=epoch, **meta)
        return None

    hashed = {k: v for k, v in st.items() if k not in _UNHASHED}
    loop = Loop(method, optimizer, scheduler, loader, device=device, out_dir=out_dir, epochs=int(st["epochs"]),
                kind="pretrain", checkpoint_every=int(st["checkpoint_every"]),
                config_hash=ckpt.config_hash({k: v for k, v in rs.items() if k != "label"}, hashed, opts,
                                             datasets, patients, image_size, width),
                prepare=prepare, after_step=method.after_step, on_epoch_end=on_epoch_end,
                desc=f"pretrain {run}/{pool}", progress=progress, checkpoint_at_end=False)
    loop.run()
    # The method's own modules (projection/task/group heads, momentum encoder, queue) travel with the backbone
    # so that the t-SNE features of Figure 3b can be computed from model.pt alone.
    method_state = {k: v for k, v in ckpt.cpu_state_dict(method).items() if not k.startswith("backbone.")}
    path = ckpt.save_model(out_dir / MODEL, ckpt.cpu_state_dict(backbone), epochs=loop.epoch,
                           method_state=method_state, **meta)
    loop.finish()
    return path
