"""Batched, on-device, per-sample random augmentations for the contrastive pretraining methods.

Every function takes a batch ``x`` of shape (B, C, H, W) and returns a tensor of the same shape, dtype and
device, each sample getting its own random parameters. Randomness comes from ``generator`` when given
(a ``torch.Generator`` on any device: draws happen on the generator's device and are moved to ``x``'s),
else from torch's global RNG on ``x``'s device, so a run is reproducible after ``torch.manual_seed(seed)``.

``ViewAugment`` chains them (crop -> flip -> blur -> noise) and ``build_views`` makes one from a preset name
or a dict, which is how the methods' ``views`` parameter is given in the config:

- ``"crop_blur_noise"`` — paper A (HSSL): "random cropping, resizing, blurring, and adding noise".
  Crop scale (0.08, 1.0) and aspect ratio (3/4, 4/3) as SimCLR's RandomResizedCrop; blur p = 0.5 with
  sigma ~ U(0.1, 2.0) px as SimCLR / MoCo v2; additive Gaussian noise p = 0.5 with std ~ U(0, 0.1) times
  the image's own standard deviation (paper silent on the noise model; relative so it suits both [0, 1] and
  instance-normalised images). No flip (not listed by the paper).
- ``"flip_blur"`` — paper B's MoCo v2 views: "random flipping and stochastic Gaussian blurring as proposed
  in MoCo V2": horizontal flip p = 0.5 (MoCo v2's RandomHorizontalFlip) and blur p = 0.5, sigma ~ U(0.1, 2.0).
- ``"none"`` — identity.

A dict ``{"preset": name, field: value, ...}`` overrides fields of a preset (e.g. ``{"preset":
"crop_blur_noise", "crop_scale": [0.2, 1.0]}``); a dict without ``preset`` starts from ``"none"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "random_resized_crop",
    "random_flip",
    "gaussian_blur",
    "gaussian_noise",
    "ViewAugment",
    "VIEW_PRESETS",
    "build_views",
]


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """n uniform [0, 1) draws on ``device`` (from ``generator`` if given, else the global RNG)."""
    if generator is None:
        return torch.rand(n, device=device)
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def _uniform(lo: float, hi: float, n: int, generator, device) -> Tensor:
    return lo + (hi - lo) * _rand(n, generator, device)


def random_resized_crop(
    x: Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Crop a random box per sample and resize it back to (H, W) (bilinear), as RandomResizedCrop.

    Box area fraction ~ U(scale), aspect ratio w/h log-uniform in ``ratio``; sides clipped to the image;
    position uniform among boxes that lie inside the image.
    """
    b, _, h, w = x.shape
    dev = x.device
    area = _uniform(scale[0], scale[1], b, generator, dev)
    log_r = _uniform(math.log(ratio[0]), math.log(ratio[1]), b, generator, dev)
    r = torch.exp(log_r)
    # fractions of the full width / height (normalised so that fw * fh = area for square pixels)
    fw = torch.sqrt(area * r).clamp(max=1.0)
    fh = torch.sqrt(area / r).clamp(max=1.0)
    # centre in normalised coords [-1, 1]: box stays inside
    cx = (1 - fw) * (2 * _rand(b, generator, dev) - 1)
    cy = (1 - fh) * (2 * _rand(b, generator, dev) - 1)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = fw
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = fh
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(
    x: Tensor, horizontal: float = 0.5, vertical: float = 0.0, generator: torch.Generator | None = None
) -> Tensor:
    """Flip each sample left-right with probability ``horizontal`` and up-down with ``vertical``."""
    b = x.shape[0]
    out = x
    if horizontal > 0:
        m = (_rand(b, generator, x.device) < horizontal).view(b, 1, 1, 1)
        out = torch.where(m, out.flip(-1), out)
    if vertical > 0:
        m = (_rand(b, generator, x.device) < vertical).view(b, 1, 1, 1)
        out = torch.where(m, out.flip(-2), out)
    return out


def gaussian_blur(
    x: Tensor,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """With probability ``p`` per sample, blur with an isotropic Gaussian of sigma ~ U(sigma) pixels.

    One separable kernel per sample (size 2*ceil(3*sigma_max)+1, reflect padding, weights normalised),
    applied as a grouped convolution; samples not selected are returned unchanged.
    """
    b, c, h, w = x.shape
    dev = x.device
    sig = _uniform(sigma[0], sigma[1], b, generator, dev).to(x.dtype)
    apply = _rand(b, generator, dev) < p
    radius = max(1, int(math.ceil(3 * sigma[1])))
    radius = min(radius, (min(h, w) - 1) // 2) if min(h, w) > 2 else 1
    t = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
    k1 = torch.exp(-(t[None, :] ** 2) / (2 * sig[:, None] ** 2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)                          # (B, K)
    ks = 2 * radius + 1
    kx = k1.repeat_interleave(c, dim=0).view(b * c, 1, 1, ks)
    ky = k1.repeat_interleave(c, dim=0).view(b * c, 1, ks, 1)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), kx, groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), ky, groups=b * c)
    y = y.reshape(b, c, h, w)
    return torch.where(apply.view(b, 1, 1, 1), y, x)


def gaussian_noise(
    x: Tensor,
    std: tuple[float, float] = (0.0, 0.1),
    p: float = 0.5,
    relative: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """With probability ``p`` per sample, add zero-mean Gaussian noise of std s ~ U(std).

    ``relative=True``: s is a fraction of the sample's own intensity standard deviation (so the same setting
    suits [0, 1] and instance-normalised images); else s is absolute.
    """
    b = x.shape[0]
    dev = x.device
    s = _uniform(std[0], std[1], b, generator, dev).to(x.dtype)
    if relative:
        s = s * x.reshape(b, -1).std(dim=1)
    s = torch.where(_rand(b, generator, dev) < p, s, torch.zeros_like(s))
    return x + s.view(b, 1, 1, 1) * _randn(tuple(x.shape), generator, dev).to(x.dtype)


@dataclass(frozen=True)
class ViewAugment:
    """A stochastic view: random resized crop -> flips -> Gaussian blur -> Gaussian noise (each optional).

    ``crop_scale=None`` disables the crop; probabilities 0 disable flips / blur / noise.
    """

    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.0
    vflip_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_p: float = 0.0
    noise_std: tuple[float, float] = (0.0, 0.1)
    noise_relative: bool = True

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.crop_scale is not None:
            x = random_resized_crop(x, tuple(self.crop_scale), tuple(self.crop_ratio), generator)
        if self.hflip_p > 0 or self.vflip_p > 0:
            x = random_flip(x, self.hflip_p, self.vflip_p, generator)
        if self.blur_p > 0:
            x = gaussian_blur(x, tuple(self.blur_sigma), self.blur_p, generator)
        if self.noise_p > 0:
            x = gaussian_noise(x, tuple(self.noise_std), self.noise_p, self.noise_relative, generator)
        return x


VIEW_PRESETS: dict[str, ViewAugment] = {
    "none": ViewAugment(),
    "crop_blur_noise": ViewAugment(crop_scale=(0.08, 1.0), blur_p=0.5, noise_p=0.5),
    "flip_blur": ViewAugment(hflip_p=0.5, blur_p=0.5),
}


def build_views(spec: str | dict[str, Any] | ViewAugment) -> ViewAugment:
    """A ``ViewAugment`` from a preset name, a ``{"preset": ..., field: value}`` dict, or itself."""
    if isinstance(spec, ViewAugment):
        return spec
    if isinstance(spec, str):
        if spec not in VIEW_PRESETS:
            raise ValueError(f"unknown views preset {spec!r}; known: {sorted(VIEW_PRESETS)}")
        return VIEW_PRESETS[spec]
    if isinstance(spec, dict):
        spec = dict(spec)
        base = build_views(spec.pop("preset", "none"))
        known = {f.name for f in fields(ViewAugment)}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown views fields {sorted(unknown)}; known: {sorted(known)}")
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        return replace(base, **spec)
    raise TypeError(f"views must be a preset name, a dict or a ViewAugment, got {type(spec).__name__}")
