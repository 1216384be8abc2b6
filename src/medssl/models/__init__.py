"""Segmentation architectures and their registry.

>>> from medssl.models import build, n_params
>>> net = build("hssl_net", out_channels=2)          # SegNet: encode / embed / decode / head / forward
>>> net = load("results/demo/hssl/pretrain/hssl/all/model.pt")  # a trained model file, as it was trained

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


def load(path, device="cpu") -> SegNet:
    """The network a medssl model file (``model.pt``, ``epoch<E>.pt``) holds, rebuilt as it was trained: its
    architecture, output channels and width come from the file's own metadata; its tensors load with
    ``strict=True``. Read with ``torch.load(weights_only=True)``: no code in the file runs. In eval mode.

    >>> net = load("results/demo/hssl/pretrain/hssl/all/model.pt")   # the demo's quarter-width hssl_net
    """
    from medssl.train.checkpoint import ModelMismatchError, load_state_dict

    state, meta = load_state_dict(path)
    missing = [k for k in ("arch", "out_channels") if k not in meta]
    if missing:
        raise ModelMismatchError(f"{path}: its metadata lack {', '.join(missing)}: not a model file written by "
                                 "medssl (a bare state dict loads into build(arch, out_channels, width=...))")
    net = build(meta["arch"], int(meta["out_channels"]), width=float(meta.get("width", 1.0)))
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


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
    "load",
    "n_params",
    "transferable_state",
]
