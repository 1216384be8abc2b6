"""Classic U-Net (Ronneberger et al. 2015) with BatchNorm, for 1-channel inputs.

Encoder (``encoder.*``): five levels of ``[Conv3x3 -> BN -> ReLU] x 2`` with 64, 128, 256, 512, 1024
channels, 2x2 max-pool between them (4 down-samplings; bottleneck at stride 16). ``encode`` returns the
five level outputs, the bottleneck last. Neck: global average pool of the bottleneck (``latent_dim=1024``,
no parameters). Decoder (``decoder.*``): four up levels, each ``ConvTranspose2d(C, C/2)`` -> concatenate the
skip -> ``[Conv3x3 -> BN -> ReLU] x 2`` to C/2 channels; the last decoder feature map has 64 channels
(``feature_channels = 64``; paper B's SSMTL heads are 64 -> 1 1x1 convs). Head: ``Conv2d(64, C, 1)``.

Parameter count. HSSL Table 3 lists U-Net at 39.40 M, the figure UNet 3+ (Huang et al. 2020, Table 1)
gives for its U-Net baseline (39.39 M). The textbook variant (2x2 up-convolutions) has 31.04 M; the 8.36 M
difference is exactly the up-convolutions having 4x4 kernels (``ConvTranspose2d(k=4, s=2, p=1)``, as in
UNet 3+'s code base), which gives 39,398,274 with 2 outputs (-0.004 %; 39,399,873 with that code's 3-channel
input and 3x3 one-output conv) — so that is the default (``up_kernel=4``); ``up_kernel=2`` builds the
textbook network, 31,042,434 parameters. Convolutions keep their biases (as in that code base).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import GlobalPool, SegNet, init_weights
from .resnet_encoder import scaled

FILTERS = (64, 128, 256, 512, 1024)


class DoubleConv(nn.Sequential):
    """``[Conv3x3 -> BN -> ReLU] x 2``."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class UNetEncoder(nn.Module):
    """Contracting path + bottleneck; returns the five level outputs (strides 1, 2, 4, 8, 16)."""

    def __init__(self, in_channels: int = 1, filters: tuple[int, ...] = FILTERS):
        super().__init__()
        cins = (in_channels,) + tuple(filters[:-1])
        self.blocks = nn.ModuleList(DoubleConv(ci, co) for ci, co in zip(cins, filters))
        self.pool = nn.MaxPool2d(2)
        self.channels = list(filters)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


def up_conv(cin: int, cout: int, kernel_size: int) -> nn.ConvTranspose2d:
    """Stride-2 transposed convolution doubling H, W (kernel 2, or 4 with padding 1)."""
    if kernel_size == 2:
        return nn.ConvTranspose2d(cin, cout, 2, stride=2)
    if kernel_size == 4:
        return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
    raise ValueError(f"up_kernel must be 2 or 4, got {kernel_size}")


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, up_kernel: int):
        super().__init__()
        self.up = up_conv(cin, cout, up_kernel)
        self.conv = DoubleConv(2 * cout, cout)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNetDecoder(nn.Module):
    def __init__(self, filters: tuple[int, ...] = FILTERS, up_kernel: int = 4):
        super().__init__()
        rev = filters[::-1]  # 1024, 512, 256, 128, 64
        self.ups = nn.ModuleList(UpBlock(ci, co, up_kernel) for ci, co in zip(rev[:-1], rev[1:]))

    def forward(self, feats: list[Tensor]) -> Tensor:
        x = feats[-1]
        for up, skip in zip(self.ups, feats[-2::-1]):
            x = up(x, skip)
        return x


class UNet(SegNet):
    """U-Net, 64..1024 channels, BN, transposed-conv up-sampling (39.40 M with ``up_kernel=4``); ``width``
    (demo only) scales ``base_channels``."""

    arch = "unet"

    def __init__(self, out_channels: int, up_kernel: int = 4, base_channels: int = 64, width: float = 1.0):
        super().__init__()
        base_channels = scaled(base_channels, width)
        filters = tuple(base_channels * 2**i for i in range(5))
        self.encoder = UNetEncoder(1, filters)
        self.neck = GlobalPool()
        self.decoder = UNetDecoder(filters, up_kernel)
        init_weights(self)
        self.latent_dim = filters[-1]
        self.feature_channels = filters[0]
        self._make_head(out_channels)
