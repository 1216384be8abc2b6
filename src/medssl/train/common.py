"""Helpers shared by pretraining, finetuning and evaluation: stores, splits, model factories, on-device input
transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medssl.data.splits import read_split
from medssl.data.store import SliceStore


def open_store(dataset: str, path: str | Path) -> SliceStore:
    """``dataset``'s slice store at ``path`` (a job's input). Refuses a store of another dataset, naming both."""
    store = SliceStore(path)
    if store.name != dataset:
        raise ValueError(f"{store.path}: a slice store of {store.name!r}, not of {dataset!r}")
    return store


def load_split(dataset: str, path: str | Path) -> dict:
    """``dataset``'s split at ``path`` (a job's input). Refuses another dataset's."""
    split = read_split(path)
    if split.get("dataset", dataset) != dataset:
        raise ValueError(f"{path}: the split of {split.get('dataset')!r}, not of {dataset!r}")
    return split


def pool_inputs(datasets: list[str], paths: list, what: str) -> list:
    """A pool job's per-dataset input paths (``--stores``/``--splits``: one per dataset, in the pool's order)."""
    if len(paths) != len(datasets):
        raise ValueError(f"{len(paths)} {what} given for the {len(datasets)} datasets of the pool "
                         f"({', '.join(datasets)}): pass one per dataset, in that order")
    return list(paths)


# ---------------------------------------------------------------------------------------------- factories
# Looked up at call time so tests (and future code) can substitute them.

def build_model(arch: str, out_channels: int, width: float) -> torch.nn.Module:
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

