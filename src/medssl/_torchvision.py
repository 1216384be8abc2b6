"""torchvision's ResNet building blocks, imported cheaply and robustly.

medssl uses only ``torchvision.models.resnet`` (ResNet-34/50 trunks). Two problems with ``import torchvision``:

1. Start-up cost. ``import torchvision`` runs ``torchvision.ops``, which imports ``torch._dynamo``: about 2 s of
   CPU per process, paid by every Snakemake job (hundreds in the demo), for detection ops medssl never calls.
2. The pinned ``torchvision==0.28.0`` wheel on PyPI is built against CUDA torch. Next to a CPU-only
   ``torch==2.13.0`` its C extension cannot load, and ``import torchvision`` fails while registering fake
   kernels for ``torchvision::nms``/``qnms``.

:func:`resnet_module` therefore loads ``torchvision.models.resnet`` (and the pure-Python modules it needs)
without executing ``torchvision/__init__.py`` or ``torchvision/models/__init__.py``: the two packages are
created as plain namespace-style packages on torchvision's own directories. If torchvision was already
imported by someone else, its real module is used. :func:`import_torchvision` gives the full package, with
the missing-op workaround of point 2, for code that needs more than ResNet.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_MISSING_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_shim_library = None  # kept alive: the op schemas live as long as this object


def _declare_missing_ops() -> None:
    global _shim_library
    import torch

    _shim_library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _MISSING_OPS:
        _shim_library.define(schema)


def import_torchvision():
    """The full ``torchvision`` package, working around a missing C extension (module docstring, point 2)."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "__version__"):
        return sys.modules["torchvision"]
    _forget_light_packages()
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        _forget_light_packages(everything=True)
        _declare_missing_ops()
        import torchvision
    return torchvision


def _forget_light_packages(everything: bool = False) -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        if everything or getattr(sys.modules[name], "_medssl_light", False):
            del sys.modules[name]


def resnet_module():
    """``torchvision.models.resnet`` without importing ``torchvision.ops`` (module docstring, point 1)."""
    if "torchvision.models.resnet" in sys.modules:
        return sys.modules["torchvision.models.resnet"]
    if "torchvision" not in sys.modules:
        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("torchvision is not installed (pip install torchvision==0.28.0)")
        root = spec.submodule_search_locations[0]
        for name, path in (("torchvision", root), ("torchvision.models", f"{root}/models")):
            package = types.ModuleType(name)
            package.__path__ = [path]
            package._medssl_light = True
            sys.modules[name] = package
    return importlib.import_module("torchvision.models.resnet")
