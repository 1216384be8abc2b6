"""Self-supervised pretraining of one run on one pool (``medssl pretrain``), from its settings record
(:class:`medssl.jobs.PretrainJob`) and nothing else.

Data: every slice of every patient of the pool's datasets, labels unused, as paper A states ("pre-training
uses all images"; paper B likewise pretrains on all 20 scans), restricted by the study's ``slice_filter``
(``foreground`` for paper hssl, ``all`` for ssmtl). This includes the test patients' *images* (never their
labels). The study's ``pretrain_patients: train`` excludes each dataset's test patients (per its split file)
for a leak-free variant.

Learning rate: Adam at ``lr`` (times ``batch_size / lr_reference_batch`` with ``lr_scaling: linear``),
times (1 - e / epochs) ** ``poly_power`` after e epochs, stepped per epoch as finetuning's poly schedule is:
``poly_power: 0`` is constant (paper B: "a fixed learning rate of 1e-3"), ``1`` a linear decay to 0. Paper
A's "Adam with a linear learning rate scaling for 1k epochs (initial learning rate = 3e-4)" is read as the
linear decay: an *initial* learning rate implies one that changes over the 1k epochs, as the "initial
learning rate Lr" of its finetuning poly policy does. The other reading, SimCLR's batch-size rule
lr = base x batch / 256, would start Adam at 3e-4 x 30 / 256 = 3.5e-5, not at the stated initial 3e-4, and
a scaling rule only matters when the batch size varies, which it does not in paper A (30 throughout); it
remains available as ``lr_scaling: linear``. config/paper.yaml sets ``poly_power: 1`` for paper A.

Seed: pretraining is seeded with :data:`PRETRAIN_SEED` (one pretraining per run and pool; finetuning seeds
vary downstream).

Several GPUs (``gpus: N``, started by :func:`medssl.train.distributed.launch`): every process reads the same
global batches and draws the same augmentations; each encodes its part of the batch and computes its share
of the loss (:mod:`medssl.parallel`), BatchNorm runs over the global batch, and DistributedDataParallel sums
the gradients, so the processes compute what one process computes (to float rounding). Process 0 writes.

Outputs in ``out_dir`` (see :mod:`medssl.train.loop` for ``log.csv``/``checkpoint.pt``): ``model.pt`` =
``{"state_dict": backbone state, "kind": "pretrain", "arch", "out_channels": 1, "n_params", "method",
"run", "study", "pool", "datasets", "epochs", "image_size", "patients", "width"}`` and the method's own
modules (``method_state``); ``epoch<E>.pt`` (same format, backbone only) for each E in ``keep_epochs``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from medssl import parallel
from medssl.data.loaders import IMAGE_KEYS, PoolDataset, SequenceDataset, SliceDataset, keep_on_device, make_loader
from medssl.jobs import PretrainJob, file_digest
from medssl.settings import Runtime
from medssl.train import checkpoint as ckpt
from medssl.train import common
from medssl.train import device as dev
from medssl.train.loop import MODEL, Loop, build_optimizer, ensure_logging, epoch_batches, poly_lambda
from medssl.train.monitor import RepresentationMonitor, monitor_sample
from medssl.train.seeding import seed_everything

log = logging.getLogger("medssl.train")

PRETRAIN_SEED = 0


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


def pretrain(job: PretrainJob, out_dir: str | Path, *, stores: list, splits: list, runtime: Runtime,
             progress: bool = True) -> Path:
    """Pretrain ``job.run`` on ``job.pool``; returns the path of ``model.pt``.

    ``stores``, ``splits``: the pool datasets' slice stores and split files, one each in the pool's order (the
    job's inputs)."""
    ensure_logging()
    out_dir = Path(out_dir)
    run, stage, opts, ids = job.run, job.stage, job.options, job.ids
    if run.method == "tfs":
        raise ValueError(f"run {run.name!r} uses method 'tfs' (training from scratch): it has no pretraining")
    device = dev.pick_device(runtime.device, index=parallel.rank() if parallel.world_size() > 1 else None)
    dev.configure(device, runtime.threads)
    seed_everything(PRETRAIN_SEED, deterministic=not dev.is_cuda(device))
    main = parallel.rank() == 0

    datasets = list(ids.datasets)
    stores = [common.open_store(d, path) for d, path in zip(datasets, common.pool_inputs(datasets, stores, "stores"))]
    split_files = dict(zip(datasets, common.pool_inputs(datasets, splits, "splits")))
    sizes = {common.check_image_size(s) for s in stores}
    if len(sizes) != 1:
        raise ValueError(f"pool {job.pool}: datasets have different slice sizes {sorted(sizes)}")
    image_size = sizes.pop()
    patients_of = {}
    if job.patients == "train":
        for d, store in zip(datasets, stores):
            test = set(common.load_split(d, split_files[d])["patients"]["test"])
            patients_of[d] = sorted(set(store.index["patient"]) - test)

    backbone = common.build_model(run.arch, 1, width=job.width)
    method = common.build_method(run.method, backbone, n_tasks=ids.n_tasks, n_groups=ids.n_groups,
                                 image_size=image_size, **run.params)
    method = dev.prepare_module(parallel.synchronise_batchnorm(method, device), device)
    backbone = method.backbone  # (BatchNorm layers replaced in place on several processes)
    dev.compile_network(backbone, runtime.compile)
    train_module = dev.distribute(method, device)
    dataset = build_pool_dataset(method, stores, datasets, ids.tasks, ids.groups, opts.slice_filter,
                                 patients_of, PRETRAIN_SEED)
    resident = keep_on_device(dataset, device, runtime.data_on_gpu, runtime.data_on_gpu_fraction)
    loader = make_loader(dataset, int(stage.batch_size), shuffle=True, drop_last=True, seed=PRETRAIN_SEED,
                         num_workers=0 if resident else runtime.num_workers,
                         pin_memory=dev.is_cuda(device) and not resident,
                         **dict(zip(("max_batches", "batches"), epoch_batches(stage))))
    lr = stage.scaled_lr
    optimizer = build_optimizer([p for p in method.parameters() if p.requires_grad], lr, stage.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(stage.epochs, stage.poly_power))
    if getattr(method, "queue_size", None) is not None:
        from medssl.methods.moco import queue_warning

        warning = queue_warning(method.queue_size, len(dataset))
        if warning:
            log.warning("pretrain %s/%s: %s", job.study, run.name, warning)
    log.info("pretrain %s/%s on %s: %s + %s, %d slices/anchors, %d batches/epoch, lr %.3g, device %s%s",
             job.study, run.name, job.pool, run.method, run.arch, len(dataset), len(loader), lr, device,
             f" x {parallel.world_size()} processes" if parallel.world_size() > 1 else "")

    norm = common.normaliser(opts.input_norm)
    prepare = None
    if opts.input_norm == "instance":
        def prepare(batch):
            for k in IMAGE_KEYS:
                if k in batch:
                    batch[k] = norm(batch[k])
            return batch

    monitor = build_monitor(job, backbone, stores, datasets, split_files, device, runtime,
                            (lambda x: norm(x)) if opts.input_norm == "instance" else None) if main else None
    keep = {int(e) for e in stage.keep_epochs}
    meta = {"kind": "pretrain", "arch": run.arch, "out_channels": 1, "n_params": common.n_params(backbone),
            "method": run.method, "run": run.name, "study": job.study, "pool": job.pool, "datasets": datasets,
            "image_size": image_size, "patients": job.patients, "width": job.width}

    def on_epoch_end(epoch: int):
        if not main:
            return None
        if epoch in keep:
            ckpt.save_model(out_dir / f"epoch{epoch}.pt", ckpt.cpu_state_dict(backbone), epochs=epoch, **meta)
        return monitor(epoch) if monitor is not None else None

    loop = Loop(method, optimizer, scheduler, loader, device=device, out_dir=out_dir, epochs=stage.epochs,
                kind="pretrain", checkpoint_every=runtime.checkpoint_every,
                config_hash=ckpt.config_hash(job.digest(), file_digest(*(s.path for s in stores), *split_files.values())),
                prepare=prepare, after_step=method.after_step, on_epoch_end=on_epoch_end,
                desc=f"pretrain {run.name}/{job.pool}", progress=progress, checkpoint_at_end=False,
                first_row=(lambda: monitor(0)) if monitor is not None else None, loggers=runtime.loggers,
                title=f"pretrain {job.study}/{run.name} ({run.method}, {run.arch}) on {job.pool}",
                train_module=train_module)
    loop.run()
    if not main:
        return out_dir / MODEL
    # The method's own modules (projection/task/group heads, momentum encoder, queue) travel with the backbone
    # so that the t-SNE features of Figure 3b can be computed from model.pt alone.
    method_state = {k: v for k, v in ckpt.cpu_state_dict(method).items() if not k.startswith("backbone.")}
    path = ckpt.save_model(out_dir / MODEL, ckpt.cpu_state_dict(backbone), epochs=loop.epoch,
                           method_state=method_state, **meta)
    loop.finish()
    return path


def build_monitor(job: PretrainJob, backbone, stores, datasets, split_files, device, runtime: Runtime, prepare):
    """The representation monitor (:mod:`medssl.train.monitor`) on a seeded sample of each pool dataset's
    held-out slices: its validation patients', with its test patients' added when those hold fewer than
    ``monitor_samples`` (small datasets; paper B's splits have no validation patients), filtered as
    pretraining filters them; None when ``monitor_every`` is unset."""
    if not runtime.monitor_every:
        return None
    rows_of = []
    for d, store in zip(datasets, stores):
        held_out = common.load_split(d, split_files[d])["patients"]
        rows = pool_rows(store, job.options.slice_filter, sorted(held_out["val"])) if held_out["val"] else []
        if len(rows) < runtime.monitor_samples and held_out["test"]:  # too few: the test patients' too
            rows = pool_rows(store, job.options.slice_filter, sorted(held_out["val"] + held_out["test"]))
        rows_of.append(rows)
    images, task, group = monitor_sample(stores, rows_of, [job.ids.tasks[d] for d in datasets],
                                         [job.ids.groups[d] for d in datasets], runtime.monitor_samples)
    monitor = RepresentationMonitor(backbone, images, task, group, device=device, every=runtime.monitor_every,
                                    epochs=job.stage.epochs, prepare=prepare)
    chance = ", ".join(f"{k} {v:.3g}" for k, v in monitor.chance().items())
    log.info("representation monitor: %d held-out slices, every %d epochs%s", len(images), runtime.monitor_every,
             f"; chance {chance}" if chance else "")
    return monitor
