"""Segmentation architectures and their registry.

>>> from medssl.models import build, n_params
>>> net = build("hssl_net", out_channels=2)          # SegNet: encode / embed / decode / head / forward

Every model follows the :class:`~medssl.models.base.SegNet` contract (:mod:`medssl.models.base`): 1-channel
input with H, W multiples of 32, output at input resolution, parameter names prefixed ``encoder.``,
``neck.``, ``decoder.``, ``head.``; random initialisation only (no downloaded weights).
"""

from __future__ import annotations

from collections.abc import Callable

from .base import PREFIXES, SIZE_MULTIPLE, SegNet, n_params, transferable_state
from .hssl_net import HSSLNet
from .resnet_fcn import ResNet50FCN
from .unet import UNet
from .unet3plus import UNet3Plus

#: arch name -> constructor ``(out_channels, **kw) -> SegNet``
MODELS: dict[str, Callable[..., SegNet]] = {
    "hssl_net": HSSLNet,
    "unet": UNet,
    "unet3plus": UNet3Plus,
    "resnet50_fcn": ResNet50FCN,
}

#: parameter counts reported by the papers (HSSL Table 3 / text); None where a paper gives none
PAPER_PARAMS: dict[str, int | None] = {
    "hssl_net": 22_070_000,
    "unet": 39_400_000,
    "unet3plus": 26_970_000,
    "resnet50_fcn": None,
}


def build(arch: str, out_channels: int, **kw) -> SegNet:
    """Build architecture ``arch`` with ``out_channels`` output channels (1 for reconstruction, C classes
    for segmentation); ``kw`` go to the constructor (see each class). Every architecture takes ``width``
    (demo only, default 1.0): every layer width times ``width``, the same layer names."""
    try:
        cls = MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(MODELS))}") from None
    return cls(out_channels, **kw)


__all__ = [
    "MODELS",
    "PAPER_PARAMS",
    "PREFIXES",
    "SIZE_MULTIPLE",
    "HSSLNet",
    "ResNet50FCN",
    "SegNet",
    "UNet",
    "UNet3Plus",
    "build",
    "n_params",
    "transferable_state",
]
