"""Features of a pretrained HSSL model for the t-SNE figure (paper A, Figure 3b).

Draws ``per_task`` foreground slices from each dataset of the pretraining pool (a seeded sample, the
same for every model), rebuilds the pretraining method from its ``model.pt`` (the backbone state plus
``method_state``, which holds the heads), and writes, per slice:

- the paper's generic feature: ``VGG-19 (ImageNet)`` when torchvision's VGG-19 weights are in the local
  torch hub cache, else ``pixels (no VGG-19 weights cached)``, down-sampled intensities
  (:func:`medssl.reports.features.generic_extractor`; nothing is downloaded);
- ``F_image``, ``F_task``, ``F_group``: the outputs of the image-level projection head P_l and of the task
  and group heads P_t, P_g on the shared latent vector (only those the run trained).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medssl import config as cfg
from medssl import registry
from medssl.reports.features import compute_features, generic_extractor, save_features
from medssl.train import checkpoint as ckpt
from medssl.train import common
from medssl.layout import Layout

HEAD_NAMES = {"image": "F_image", "task": "F_task", "group": "F_group"}


def sample_pool(config: dict, datasets: list[str], per_task: int, seed: int, store_dirs: list | None = None):
    """``per_task`` foreground slices per dataset: images (N, H, W), dataset index (N,). ``store_dirs``: one
    store per dataset (default: the experiment's layout)."""
    rng = np.random.default_rng(seed)
    images, task = [], []
    for i, (name, path) in enumerate(zip(datasets, common.pool_inputs(datasets, store_dirs, "stores"))):
        store = common.open_store(config, name, path)
        rows = store.rows(foreground_only=True)
        rows = np.sort(rng.choice(rows, size=min(per_task, len(rows)), replace=False))
        images.append(np.asarray(store.images[rows], dtype=np.float32))
        task.append(np.full(len(rows), i))
    return np.concatenate(images), np.concatenate(task)


def extract_features(config: dict, study: str, run: str, out: str | Path, *, per_task: int = 100,
                     seed: int = 0, model: str | Path | None = None, store_dirs: list | None = None) -> Path:
    """Write the features .npz that :func:`medssl.reports.figures` turns into Figure 3b. ``model`` (the
    pretrained model file) and ``store_dirs`` (the pool's stores, in its order) are the job's inputs
    (default: the experiment's layout)."""
    pool = cfg.features_pool(config, study, run)
    state = ckpt.load(model if model is not None else Layout.of(config).pretrained_model(study, run, pool))
    datasets = cfg.pool_datasets(config, study, pool)
    store_dirs = common.pool_inputs(datasets, store_dirs, "stores")
    images, index = sample_pool(config, datasets, per_task, seed, store_dirs)
    task_of, group_of, n_tasks, n_groups = common.task_group_ids(config, study, datasets)
    task = np.array([task_of[datasets[i]] for i in index])
    group = np.array([group_of[datasets[i]] for i in index])

    rs = cfg.run_settings(config, study, run)
    backbone = common.build_model(rs["arch"], 1, width=state.get("width", 1.0))
    method = common.build_method(rs["method"], backbone, n_tasks=n_tasks, n_groups=n_groups,
                                 image_size=images.shape[-1], **rs["params"])
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
    generic_name, generic = generic_extractor()
    extractors = {generic_name: generic}
    extractors.update({name: head_output(key) for key, name in HEAD_NAMES.items() if key in probe})
    features = compute_features(images[:, None], extractors)
    task_labels, group_labels = [""] * n_tasks, [""] * n_groups
    members: dict[int, list] = {}  # group id -> its datasets' specs: a group is named by what it holds
    for d in datasets:
        spec = registry.get(d, config)
        task_labels[task_of[d]] = f"T{spec.paper_task or task_of[d] + 1} {spec.roi} {spec.modality}"
        members.setdefault(group_of[d], []).append(spec)
    for g, specs in members.items():
        rois = ", ".join(dict.fromkeys(s.roi for s in specs))
        modalities = "/".join(dict.fromkeys(s.modality for s in specs))
        group_labels[g] = f"G{specs[0].paper_group or g + 1} {rois} {modalities}"
    synthetic = bool(common.open_store(config, datasets[0], store_dirs[0]).meta.get("synthetic", False))
    save_features(out, features, task, group, task_labels=task_labels, group_labels=group_labels,
                  synthetic=synthetic)
    return Path(out)
