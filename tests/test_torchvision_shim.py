"""medssl._torchvision: ResNet trunks without torchvision.ops, and the full package still importable."""

from __future__ import annotations

import subprocess
import sys

LIGHT = """
import sys
from medssl._torchvision import resnet_module
resnet = resnet_module()
net = resnet.resnet34(weights=None)
assert sum(p.numel() for p in net.parameters()) == 21797672
assert "torchvision.ops" not in sys.modules and "torch._dynamo" not in sys.modules
from medssl._torchvision import import_torchvision
tv = import_torchvision()
assert hasattr(tv, "__version__") and hasattr(tv.models, "resnet50")
print("ok")
"""


def test_resnet_without_ops_then_full_package():
    proc = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
