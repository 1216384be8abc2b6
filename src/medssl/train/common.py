"""Helpers shared by pretraining, finetuning and evaluation: stores, splits, model factories, on-device input
transforms. (A study's options and their defaults: :func:`medssl.config.study_options`.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medssl import registry
from medssl.data.store import SliceStore
from medssl.io import read_json
from medssl.layout import Layout

def store_path(config: dict, dataset: str) -> Path:
    return Layout.of(config).store(dataset)


def open_store(config: dict, dataset: str, path: str | Path | None = None) -> SliceStore:
    """``dataset``'s slice store: ``path`` (a job's input, as the workflow passes it) or the experiment's
    layout. Refuses a store of another dataset, naming both."""
    store = SliceStore(path if path is not None else store_path(config, dataset))
    if store.name != dataset:
        raise ValueError(f"{store.path}: a slice store of {store.name!r}, not of {dataset!r}")
    return store


def split_path(config: dict, dataset: str) -> Path:
    return Layout.of(config).split(dataset)


def load_split(config: dict, dataset: str, path: str | Path | None = None) -> dict:
    """``dataset``'s split: ``path`` (a job's input) or the experiment's layout. Refuses another dataset's."""
    path = Path(path if path is not None else split_path(config, dataset))
    split = read_json(path)
    if split.get("dataset", dataset) != dataset:
        raise ValueError(f"{path}: the split of {split.get('dataset')!r}, not of {dataset!r}")
    return split


def pool_inputs(datasets: list[str], paths: list | None, what: str) -> list:
    """A pool job's per-dataset input paths (``--stores``/``--splits``: one per dataset, in the pool's order),
    or ``None`` for each when not given (the layout's)."""
    if paths is None:
        return [None] * len(datasets)
    if len(paths) != len(datasets):
        raise ValueError(f"{len(paths)} {what} given for the {len(datasets)} datasets of the pool "
                         f"({', '.join(datasets)}): pass one per dataset, in that order")
    return list(paths)


def task_group_ids(config: dict, study: str, datasets: list[str]) -> tuple[dict, dict, int, int]:
    """HSSL task and group ids of ``datasets``: ``(task_of, group_of, n_tasks, n_groups)``.

    Task id = index in the study's ``pretrain_datasets`` (a dataset outside that list is appended).
    Group id = the registry's ``paper_group`` made contiguous over those datasets (sorted); a dataset without
    ``paper_group`` is grouped by (ROI, modality) instead.
    """
    names = list(config["studies"][study]["pretrain_datasets"])
    names += [d for d in datasets if d not in names]
    task_of = {d: i for i, d in enumerate(names)}

    def key(d):
        spec = registry.get(d, config)
        return ("a", spec.paper_group, "") if spec.paper_group is not None else ("b", spec.roi, spec.modality)

    keys = sorted({key(d) for d in names}, key=lambda k: (k[0], str(k[1]).zfill(8), k[2]))
    gid = {k: i for i, k in enumerate(keys)}
    group_of = {d: gid[key(d)] for d in names}
    return task_of, group_of, len(names), len(keys)


# ---------------------------------------------------------------------------------------------- factories
# Looked up at call time so tests (and future code) can substitute them.

def build_model(arch: str, out_channels: int, width: float = 1.0) -> torch.nn.Module:
    """``models.build``; ``width`` (config ``model_width``, demo only) scales every layer width."""
    from medssl.models import build

    return build(arch, out_channels=out_channels, width=float(width))


def build_method(name: str, backbone, **kw):
    from medssl.methods import build_method as _build

    return _build(name, backbone, **kw)


def n_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ---------------------------------------------------------------------------------- on-device transforms

def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per image (B, C, H, W)."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


def normaliser(input_norm: str):
    return instance_norm if input_norm == "instance" else (lambda x: x)


def add_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, sigma²) noise drawn on the CPU (device-independent numbers) and moved to x's device."""
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return x + sigma * noise.to(x.device, non_blocking=True)


def random_crop_rotate(image: torch.Tensor, label: torch.Tensor | None, scale: tuple[float, float],
                       degrees: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Batched random crop (side fraction uniform in ``scale``, resized back) + rotation (±``degrees``).

    One affine grid per image; bilinear for images, nearest for labels, zero padding (background).
    Parameters are drawn from torch's global CPU RNG (seeded; saved in checkpoints), so a fixed seed gives
    the same augmentation on any device.
    """
    b = image.shape[0]
    r = torch.rand(b, 4)  # scale, angle, tx, ty
    s = scale[0] + (scale[1] - scale[0]) * r[:, 0]
    ang = (2 * r[:, 1] - 1) * degrees * np.pi / 180.0
    # crop centre so that the (unrotated) crop stays inside the image: |t| <= 1 - s
    tx = (2 * r[:, 2] - 1) * (1 - s)
    ty = (2 * r[:, 3] - 1) * (1 - s)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([s * cos, -s * sin, tx], 1), torch.stack([s * sin, s * cos, ty], 1)], 1)
    theta = theta.to(image.device, non_blocking=True)
    grid = torch.nn.functional.affine_grid(theta, list(image.shape), align_corners=False)
    image = torch.nn.functional.grid_sample(image, grid, mode="bilinear", padding_mode="zeros",
                                            align_corners=False)
    if label is not None:
        lab = torch.nn.functional.grid_sample(label.unsqueeze(1).float(), grid, mode="nearest",
                                              padding_mode="zeros", align_corners=False)
        label = lab.squeeze(1).long()
    return image, label


def check_image_size(store: SliceStore, multiple: int = 32) -> int:
    size = int(store.images.shape[-1])
    if store.images.shape[-2] % multiple or size % multiple:
        raise ValueError(f"{store.path}: slice size {tuple(store.images.shape[1:])} is not a multiple of "
                         f"{multiple}; set data.image_size to a multiple of {multiple}")
    return size

