"""1-channel torchvision ResNet trunks (random init, no FC) returning a five-level feature pyramid.

``width`` (demo only) scales every layer width (64·width ... 512·width planes); 1.0 is torchvision's network
itself. Narrower trunks are built from torchvision's own blocks with the same layer names and the same
initialisation, so weight transfer and parameter names do not change.
"""

from __future__ import annotations

from torch import Tensor, nn

from medssl._torchvision import resnet_module

_FACTORIES = {"resnet34": "resnet34", "resnet50": "resnet50"}


def scaled(channels: int, width: float) -> int:
    """``channels`` x ``width``, rounded, at least 4 (the demo's narrower networks; 1.0 = unchanged)."""
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width}")
    return max(4, int(round(channels * width)))


class ResNetEncoder(nn.Module):
    """torchvision ResNet-34/50 (``weights=None``) with ``conv1`` replaced by a 1-channel 7x7 conv and no
    ``avgpool``/``fc``. Sub-module names follow torchvision (``conv1, bn1, layer1..4``), so parameter names
    read ``encoder.layer3.0.conv1.weight``.

    ``forward(x)`` returns ``[stem, layer1, layer2, layer3, layer4]`` at strides 2, 4, 8, 16, 32
    (``stem`` = relu(bn1(conv1(x))), before the max-pool); ``channels`` lists their widths.
    """

    def __init__(self, name: str = "resnet34", width: float = 1.0):
        super().__init__()
        if name not in _FACTORIES:
            raise ValueError(f"unknown ResNet trunk {name!r}; known: {sorted(_FACTORIES)}")
        exp = 4 if name == "resnet50" else 1
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        if width == 1.0:
            net = getattr(resnet_module(), _FACTORIES[name])(weights=None)
            self.bn1 = net.bn1
            self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        else:
            self.bn1 = nn.BatchNorm2d(planes[0])
            self._make_layers(name, planes)
        conv1 = nn.Conv2d(1, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1 = conv1
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.channels: list[int] = [planes[0]] + [p * exp for p in planes]

    def _make_layers(self, name: str, planes: list[int]) -> None:
        """torchvision's ``ResNet._make_layer`` with ``planes`` instead of 64, 128, 256, 512 (same init)."""
        tv = resnet_module()
        block = tv.BasicBlock if name == "resnet34" else tv.Bottleneck
        inplanes = planes[0]
        for i, (p, n, stride) in enumerate(zip(planes, (3, 4, 6, 3), (1, 2, 2, 2)), start=1):
            down = None
            if stride != 1 or inplanes != p * block.expansion:
                down = nn.Sequential(tv.conv1x1(inplanes, p * block.expansion, stride),
                                     nn.BatchNorm2d(p * block.expansion))
            blocks = [block(inplanes, p, stride, down)]
            inplanes = p * block.expansion
            blocks += [block(inplanes, p) for _ in range(1, n)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        s = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(s))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [s, f1, f2, f3, f4]
