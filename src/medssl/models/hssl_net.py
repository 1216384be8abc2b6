"""HSSL network (paper A): ResNet-34 encoder, FC feature-pyramid neck, light multi-scale DeConv decoder.

The paper gives the ingredients ("ResNet-34 as the base encoder network, FC layers to obtain latent vectors,
and sequential DeConv layers to reconstruct images"; "compress multi-scale feature vectors from the feature
pyramid and concatenate them") and the total size, 22.07 M parameters, but not the layer widths (they are in
a supplementary file we do not have). The sizes below are chosen to be the simplest design that uses those
ingredients and lands on that total:

Encoder (``encoder.*``): torchvision ResNet-34, 1-channel ``conv1``, no FC -> 21,278,400 parameters.
Pyramid ``[stem, layer1, layer2, layer3, layer4]``: channels 64, 64, 128, 256, 512 at strides 2..32.

Neck (``neck.*``): per stage, global average pool -> ``Linear(C_s, fc_dim)`` -> ReLU; the five vectors are
concatenated. ``fc_dim = 64`` -> ``latent_dim = 320``; 65,856 parameters.

Decoder (``decoder.*``): five DeConv stages ``ConvTranspose2d(k=2, s=2, bias=False) -> BN -> ReLU``,
512 -> 256 -> 128 -> 64 -> 64 -> 32 channels at strides 16, 8, 4, 2, 1. After each of the first four the
encoder feature of the same stride is *added* (its width equals the decoder width, so fusion is
parameter-free); a final ``Conv3x3(32, 32) -> BN -> ReLU`` at full resolution smooths the 2x2 deconv
pattern. ``feature_channels = 32``; 723,072 parameters.

Head (``head.*``): ``Conv2d(32, out_channels, 1)``; 66 parameters for 2 classes.

Total with ``out_channels = 2``: 22,067,394 = 22.07 M (paper: 22.07 M; -0.01 %). The 2x2/stride-2 deconvs
(rather than 4x4) are what keep the decoder "light": with 4x4 kernels the decoder alone would be 2.86 M and
the total 24.21 M. A wider neck (``fc_dim = 128``, latent 640) gives 22.13 M (+0.28 %), also compatible.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import SegNet, init_weights
from .resnet_encoder import ResNetEncoder, scaled


class PyramidNeck(nn.Module):
    """Global-average-pool each pyramid level, compress it with ``Linear -> ReLU``, concatenate."""

    def __init__(self, channels: Sequence[int], dims: Sequence[int]):
        super().__init__()
        if len(channels) != len(dims):
            raise ValueError(f"need one FC width per pyramid level ({len(channels)}), got {list(dims)}")
        self.fcs = nn.ModuleList(nn.Sequential(nn.Linear(c, d), nn.ReLU(inplace=True)) for c, d in zip(channels, dims))
        self.dim = int(sum(dims))

    def forward(self, feats: list[Tensor]) -> Tensor:
        vecs = [fc(torch.flatten(F.adaptive_avg_pool2d(f, 1), 1)) for fc, f in zip(self.fcs, feats)]
        return torch.cat(vecs, dim=1)


class DeConvBlock(nn.Sequential):
    """``ConvTranspose2d(k=2, s=2) -> BN -> ReLU``: doubles the resolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class DeConvDecoder(nn.Module):
    """Sequential DeConv stages from the deepest level back to input resolution, adding the encoder feature
    of each stride on the way (additive skips: decoder widths equal the encoder widths)."""

    def __init__(self, enc_channels: Sequence[int], out_channels: int):
        super().__init__()
        enc = list(enc_channels)  # [stem, l1, l2, l3, l4], strides 2..32
        widths = enc[-2::-1] + [out_channels]  # 256, 128, 64, 64, out (strides 16, 8, 4, 2, 1)
        cins = [enc[-1]] + widths[:-1]
        self.up = nn.ModuleList(DeConvBlock(ci, co) for ci, co in zip(cins, widths))
        self.refine = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, feats: list[Tensor]) -> Tensor:
        skips = feats[-2::-1]  # layer3, layer2, layer1, stem
        x = feats[-1]
        for i, up in enumerate(self.up):
            x = up(x)
            if i < len(skips):
                x = x + skips[i]
        return self.refine(x)


class HSSLNet(SegNet):
    """ResNet-34 encoder + FC pyramid neck + light DeConv decoder (22.07 M parameters; see module doc).

    ``fc_dim``: FC width per pyramid level (int, or one per level: 5 values); ``feature_channels``: width
    of the last decoder feature map; ``width`` (demo only) scales the encoder, ``fc_dim`` (when an int) and
    ``feature_channels``."""

    arch = "hssl_net"

    def __init__(self, out_channels: int, fc_dim: int | Sequence[int] = 64, feature_channels: int = 32,
                 width: float = 1.0):
        super().__init__()
        self.encoder = ResNetEncoder("resnet34", width)
        chans = self.encoder.channels
        fc_dim = scaled(fc_dim, width) if isinstance(fc_dim, int) else fc_dim
        feature_channels = scaled(feature_channels, width)
        dims = [int(fc_dim)] * len(chans) if isinstance(fc_dim, int) else [int(d) for d in fc_dim]
        self.neck = PyramidNeck(chans, dims)
        self.decoder = DeConvDecoder(chans, feature_channels)
        init_weights(self.decoder)
        self.latent_dim = self.neck.dim
        self.feature_channels = int(feature_channels)
        self._make_head(out_channels)
