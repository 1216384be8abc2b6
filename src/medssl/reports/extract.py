"""Features of a pretrained HSSL model for the t-SNE figure (paper A, Figure 3b).

Draws ``per_task`` foreground slices from each dataset of the pretraining pool (a seeded sample, the
same for every model), rebuilds the pretraining method from its ``model.pt`` (the backbone state plus
``method_state``, which holds the heads), and writes, per slice:

- the paper's generic feature: ``VGG-19 (ImageNet)`` from torchvision's weight file (the job's ``--vgg19``
  input, fetched by the workflow), or down-sampled pixels with the report block's ``generic: pixels``
  (:func:`medssl.reports.features.generic_extractor`);
- ``F_image``, ``F_task``, ``F_group``: the outputs of the image-level projection head P_l and of the task
  and group heads P_t, P_g on the shared latent vector (only those the run trained).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medssl.jobs import FeaturesJob
from medssl.reports.features import compute_features, generic_extractor, save_features
from medssl.train import checkpoint as ckpt
from medssl.train import common

HEAD_NAMES = {"image": "F_image", "task": "F_task", "group": "F_group"}


def sample_pool(datasets: list[str], stores: list, per_task: int, seed: int):
    """``per_task`` foreground slices per dataset: images (N, H, W), dataset index (N,). ``stores``: one store
    folder per dataset."""
    rng = np.random.default_rng(seed)
    images, task = [], []
    for i, (name, path) in enumerate(zip(datasets, common.pool_inputs(datasets, stores, "stores"))):
        store = common.open_store(name, path)
        rows = store.rows(foreground_only=True)
        rows = np.sort(rng.choice(rows, size=min(per_task, len(rows)), replace=False))
        images.append(np.asarray(store.images[rows], dtype=np.float32))
        task.append(np.full(len(rows), i))
    return np.concatenate(images), np.concatenate(task)


def extract_features(job: FeaturesJob, out: str | Path, *, model: str | Path, stores: list,
                     vgg19: str | Path | None = None) -> Path:
    """Write the features .npz that :func:`medssl.reports.figures` turns into Figure 3b. ``model`` (the
    pretrained model file), ``stores`` (the pool's stores, in its order) and ``vgg19`` (the VGG-19 weight file,
    for ``generic: vgg19``) are the job's inputs."""
    state = ckpt.load(model)
    ids = job.ids
    datasets = list(ids.datasets)
    images, index = sample_pool(datasets, stores, job.per_task, job.seed)
    task = np.array([ids.tasks[datasets[i]] for i in index])
    group = np.array([ids.groups[datasets[i]] for i in index])

    backbone = common.build_model(job.run.arch, 1, width=state["width"])
    method = common.build_method(job.run.method, backbone, n_tasks=ids.n_tasks, n_groups=ids.n_groups,
                                 image_size=images.shape[-1], **job.run.params)
    backbone.load_state_dict(state["state_dict"])
    method.load_state_dict({**{f"backbone.{k}": v for k, v in state["state_dict"].items()},
                            **state["method_state"]})
    method.eval()

    def head_output(key):
        def extract(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return method.features(torch.from_numpy(batch))[key].numpy()
        return extract

    probe = method.features(torch.from_numpy(images[:2, None]))
    generic_name, generic = generic_extractor(job.generic, vgg19)
    extractors = {generic_name: generic}
    extractors.update({name: head_output(key) for key, name in HEAD_NAMES.items() if key in probe})
    features = compute_features(images[:, None], extractors)
    synthetic = bool(common.open_store(datasets[0], stores[0]).meta.get("synthetic", False))
    save_features(out, features, task, group, task_labels=list(ids.task_labels),
                  group_labels=list(ids.group_labels), synthetic=synthetic)
    return Path(out)
