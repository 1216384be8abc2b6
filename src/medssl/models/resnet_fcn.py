"""ResNet50-FCN (paper B, SSMTL+ and its MoCo v2 baseline): FCN-8s-style decoder on a ResNet-50 encoder.

Encoder (``encoder.*``): torchvision ResNet-50 without the FC layer, 1-channel ``conv1`` (23.50 M).
Pyramid ``[stem, layer1, layer2, layer3, layer4]``: 64, 256, 512, 1024, 2048 channels at strides 2..32.
Neck: global average pool of ``layer4`` -> the 2048-d vector ``q`` of SSMTL+ / MoCo v2 (no parameters).

Decoder (``decoder.*``, FCN-8s-like, "more weight on the encoder" as paper B puts it): 1x1 lateral
``Conv -> BN -> ReLU`` projections of layer4 (2048), layer3 (1024) and layer2 (512) to ``width = 256``;
the stride-32 map is bilinearly up-sampled x2 and added to the stride-16 one, that sum x2 and added to the
stride-8 one (the FCN-32s -> 16s -> 8s skip fusions); ``Conv3x3(256, 64) -> BN -> ReLU`` at stride 8, a
bilinear x8 up-sampling to input resolution, and ``Conv3x3(64, 64) -> BN -> ReLU`` there.
``feature_channels = 64``; decoder 1,103,616 parameters (total
24,605,506 with 2 outputs; paper B gives no count); head ``Conv2d(64, C, 1)``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from .base import GlobalPool, SegNet, conv_bn_relu, init_weights
from .resnet_encoder import ResNetEncoder, scaled


def _up(x: Tensor, like: Tensor | None = None, scale: int | None = None) -> Tensor:
    size = like.shape[-2:] if like is not None else (x.shape[-2] * scale, x.shape[-1] * scale)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class FCN8sDecoder(nn.Module):
    def __init__(self, enc_channels: list[int], width: int = 256, out_channels: int = 64):
        super().__init__()
        self.lat4 = conv_bn_relu(enc_channels[4], width, 1, bias=False)
        self.lat3 = conv_bn_relu(enc_channels[3], width, 1, bias=False)
        self.lat2 = conv_bn_relu(enc_channels[2], width, 1, bias=False)
        self.reduce = conv_bn_relu(width, out_channels, 3, bias=False)
        self.refine = conv_bn_relu(out_channels, out_channels, 3, bias=False)

    def forward(self, feats: list[Tensor]) -> Tensor:
        f2, f3, f4 = feats[2], feats[3], feats[4]
        x = self.lat4(f4)
        x = _up(x, f3) + self.lat3(f3)
        x = _up(x, f2) + self.lat2(f2)
        x = self.reduce(x)
        return self.refine(_up(x, scale=8))


class ResNet50FCN(SegNet):
    """ResNet-50 encoder (no FC) + FCN-8s-like decoder; ``embed`` = pooled 2048-d vector. ``decoder_width``:
    the lateral projections' width; ``width`` (demo only) scales the encoder and the decoder."""

    arch = "resnet50_fcn"

    def __init__(self, out_channels: int, decoder_width: int = 256, feature_channels: int = 64,
                 width: float = 1.0):
        super().__init__()
        self.encoder = ResNetEncoder("resnet50", width)
        self.neck = GlobalPool()
        feature_channels = scaled(feature_channels, width)
        self.decoder = FCN8sDecoder(self.encoder.channels, scaled(decoder_width, width), feature_channels)
        init_weights(self.decoder)
        self.latent_dim = self.encoder.channels[-1]
        self.feature_channels = int(feature_channels)
        self._make_head(out_channels)
