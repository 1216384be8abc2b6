"""The segmentation-network contract shared by every architecture (:class:`SegNet`).

A :class:`SegNet` is four named sub-modules, so that parameter names carry the prefixes that weight
transfer relies on:

- ``encoder`` — ``encoder(x) -> list[Tensor]``: multi-scale features, finest first, deepest last;
- ``neck``    — ``neck(feats) -> Tensor (B, latent_dim)``: image-level latent vector (may hold no
  parameters, e.g. plain global average pooling);
- ``decoder`` — ``decoder(feats) -> Tensor (B, feature_channels, H, W)``: full-resolution features;
- ``head``    — ``nn.Conv2d(feature_channels, out_channels, 1)``.

``forward(x) = head(decode(encode(x)))``. Inputs are ``(B, 1, H, W)`` with H, W multiples of 32; outputs
are at input resolution. Transfer: keep ``encoder.*`` only (paper B's MoCo v2), or everything except
``head.*`` (see :func:`transferable_state`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: input spatial sizes must be multiples of this (five stride-2 stages in the deepest encoders)
SIZE_MULTIPLE = 32
#: the only top-level parameter-name prefixes a SegNet may have
PREFIXES = ("encoder.", "neck.", "decoder.", "head.")


class SegNet(nn.Module):
    """Base class: subclasses set ``encoder``, ``neck``, ``decoder``, ``latent_dim``, ``feature_channels``
    and call :meth:`_make_head` last."""

    arch: str = "segnet"
    latent_dim: int
    feature_channels: int
    out_channels: int
    encoder: nn.Module
    neck: nn.Module
    decoder: nn.Module
    head: nn.Conv2d

    def _make_head(self, out_channels: int) -> None:
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        self.out_channels = int(out_channels)
        self.head = nn.Conv2d(self.feature_channels, self.out_channels, kernel_size=1)

    def init_head_bias(self, prior, floor: float = 1e-4, *, mean: float | None = None) -> Tensor:
        """Set the head's bias to ``log(prior)`` (class frequencies, clipped at ``floor``; returns the bias), or
        with ``mean`` (a regression head: denoising) every output's bias to that mean target value.

        An initialisation choice the papers leave open: with zero biases an untrained network predicts
        every class about equally often, so on masks that are 1-2 % foreground the first steps of
        cross-entropy go into unlearning "all foreground"; starting from the prior (softmax(bias) = prior
        for features near zero, as for detection heads, Lin et al. 2017) the steps go into the shapes."""
        if mean is not None:
            with torch.no_grad():
                self.head.bias.fill_(float(mean))
            return self.head.bias.detach()
        p = torch.as_tensor(prior, dtype=torch.float64).flatten()
        if p.numel() != self.out_channels or not torch.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"{self.arch}: class prior must be {self.out_channels} non-negative frequencies, "
                             f"got {p.tolist()}")
        bias = torch.log(torch.clamp(p / p.sum(), min=floor))
        with torch.no_grad():
            self.head.bias.copy_(bias.to(self.head.bias.dtype))
        return self.head.bias.detach()

    def encode(self, x: Tensor) -> list[Tensor]:
        """Multi-scale encoder features of ``x`` (B, 1, H, W), deepest last."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"{self.arch}: expected input (B, 1, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(f"{self.arch}: input H, W must be multiples of {SIZE_MULTIPLE}, got {h}x{w}")
        return self.encoder(x)

    def embed(self, feats: list[Tensor]) -> Tensor:
        """Image-level latent vector (B, latent_dim) from the encoder features."""
        return self.neck(feats)

    def decode(self, feats: list[Tensor]) -> Tensor:
        """Full-resolution decoder features (B, feature_channels, H, W)."""
        return self.decoder(feats)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.decode(self.encode(x)))


class GlobalPool(nn.Module):
    """Parameter-free neck: global average pool of the deepest feature map -> (B, C)."""

    def forward(self, feats: list[Tensor]) -> Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(feats[-1], 1), 1)


def conv_bn_relu(cin: int, cout: int, kernel_size: int = 3, bias: bool = True) -> nn.Sequential:
    """``Conv2d(k, padding=k//2) -> BatchNorm2d -> ReLU``."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, zero biases, unit/zero BatchNorm, as torchvision does."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``model``; shared parameters are counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def transferable_state(model: nn.Module, keep: str = "all_but_head") -> dict[str, Tensor]:
    """State dict to transfer into a model with another head: ``keep`` is ``"all_but_head"`` (drop
    ``head.*``) or ``"encoder"`` (``encoder.*`` only). Load it with ``load_state_dict(sd, strict=False)``."""
    sd = model.state_dict()
    if keep == "all_but_head":
        return {k: v for k, v in sd.items() if not k.startswith("head.")}
    if keep == "encoder":
        return {k: v for k, v in sd.items() if k.startswith("encoder.")}
    raise ValueError(f"keep must be 'all_but_head' or 'encoder', got {keep!r}")
