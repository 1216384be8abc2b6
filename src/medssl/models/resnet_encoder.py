"""1-channel torchvision ResNet trunks (random init, no FC) returning a five-level feature pyramid."""

from __future__ import annotations

from torch import Tensor, nn

from medssl._torchvision import resnet_module

_FACTORIES = {"resnet34": "resnet34", "resnet50": "resnet50"}


class ResNetEncoder(nn.Module):
    """torchvision ResNet-34/50 (``weights=None``) with ``conv1`` replaced by a 1-channel 7x7 conv and no
    ``avgpool``/``fc``. Sub-module names follow torchvision (``conv1, bn1, layer1..4``), so parameter names
    read ``encoder.layer3.0.conv1.weight``.

    ``forward(x)`` returns ``[stem, layer1, layer2, layer3, layer4]`` at strides 2, 4, 8, 16, 32
    (``stem`` = relu(bn1(conv1(x))), before the max-pool); ``channels`` lists their widths.
    """

    def __init__(self, name: str = "resnet34"):
        super().__init__()
        if name not in _FACTORIES:
            raise ValueError(f"unknown ResNet trunk {name!r}; known: {sorted(_FACTORIES)}")
        net = getattr(resnet_module(), _FACTORIES[name])(weights=None)
        conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1 = conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        exp = 4 if name == "resnet50" else 1
        self.channels: list[int] = [64, 64 * exp, 128 * exp, 256 * exp, 512 * exp]

    def forward(self, x: Tensor) -> list[Tensor]:
        s = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(s))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [s, f1, f2, f3, f4]
