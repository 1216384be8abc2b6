"""UNet 3+ (Huang et al., ICASSP 2020) with full-scale skip connections, for 1-channel inputs.

Encoder (``encoder.*``): the U-Net encoder (five levels, 64..1024 channels, ``[Conv3x3 -> BN -> ReLU] x 2``,
bottleneck at stride 16). Neck: global average pool of the bottleneck (``latent_dim = 1024``).
Decoder (``decoder.*``): decoder levels 4, 3, 2, 1 (strides 8, 4, 2, 1); each gathers all five scales —
finer encoder maps max-pooled down, the same-scale encoder map, coarser *decoder* maps (and the bottleneck)
bilinearly up-sampled — each through ``Conv3x3 -> BN -> ReLU`` to ``CatChannels = 64``, concatenates them
(``UpChannels = 5 x 64 = 320``) and fuses with ``Conv3x3(320, 320) -> BN -> ReLU``. No deep supervision and
no classification-guided module. ``feature_channels = 320``; head ``Conv2d(320, C, 1)`` (the reference
code's output layer is a 3x3 conv; a 1x1 head keeps the SegNet contract).

Parameter count: 26,968,386 with 2 outputs (paper: 26.97 M, -0.01 %; the same layers with the reference
code's 3-channel input and 3x3 one-output conv count 26,971,777).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import GlobalPool, SegNet, conv_bn_relu, init_weights
from .resnet_encoder import scaled
from .unet import FILTERS, UNetEncoder


class FullScaleDecoder(nn.Module):
    def __init__(self, filters: tuple[int, ...] = FILTERS, cat_channels: int = 64):
        super().__init__()
        n = len(filters)  # 5 scales; decoder levels n-1 .. 1 (1-based as in the paper)
        self.n = n
        self.up_channels = cat_channels * n
        self.levels = nn.ModuleList()
        for d in range(n - 2, -1, -1):  # 0-based decoder level index: 3, 2, 1, 0
            branches = nn.ModuleList()
            for s in range(n):  # source scale 0..4
                if s <= d or s == n - 1:  # encoder map (finer or same scale) or the bottleneck
                    cin = filters[s]
                else:  # a coarser decoder map
                    cin = self.up_channels
                branches.append(conv_bn_relu(cin, cat_channels))
            fuse = conv_bn_relu(self.up_channels, self.up_channels)
            self.levels.append(nn.ModuleDict({"branches": branches, "fuse": fuse}))

    def forward(self, feats: list[Tensor]) -> Tensor:
        n = self.n
        dec: dict[int, Tensor] = {n - 1: feats[-1]}  # decoder maps by scale; the bottleneck is hd5
        for level, d in zip(self.levels, range(n - 2, -1, -1)):
            size = feats[d].shape[-2:]
            parts = []
            for s, branch in enumerate(level["branches"]):
                if s < d:
                    k = 2 ** (d - s)
                    x = F.max_pool2d(feats[s], kernel_size=k, stride=k, ceil_mode=True)
                elif s == d:
                    x = feats[s]
                else:
                    x = F.interpolate(dec[s], size=size, mode="bilinear", align_corners=False)
                parts.append(branch(x))
            dec[d] = level["fuse"](torch.cat(parts, dim=1))
        return dec[0]


class UNet3Plus(SegNet):
    """UNet 3+ without deep supervision / CGM (26.97 M parameters); ``width`` (demo only) scales
    ``base_channels`` and ``cat_channels``."""

    arch = "unet3plus"

    def __init__(self, out_channels: int, cat_channels: int = 64, base_channels: int = 64, width: float = 1.0):
        super().__init__()
        base_channels, cat_channels = scaled(base_channels, width), scaled(cat_channels, width)
        filters = tuple(base_channels * 2**i for i in range(5))
        self.encoder = UNetEncoder(1, filters)
        self.neck = GlobalPool()
        self.decoder = FullScaleDecoder(filters, cat_channels)
        init_weights(self)
        self.latent_dim = filters[-1]
        self.feature_channels = self.decoder.up_channels
        self._make_head(out_channels)
