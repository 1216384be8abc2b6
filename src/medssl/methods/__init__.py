"""Pretraining-method registry: ``METHODS``, ``register_method``, ``build_method`` (see ``base``).

Paper A (HSSL): ``rotation``, ``inpainting``, ``moco``, ``simclr``, ``hssl``.
Paper B (SSMTL): ``ssmtl``, ``ssmtl_plus``, ``mocov2``.
``tfs`` (training from scratch) is not a method: such runs skip pretraining.
"""

from .base import METHODS, PretrainMethod, build_method, method_params, register_method
from .hssl import HSSL
from .inpainting import Inpainting
from .moco import MoCo, MoCoV2
from .rotation import Rotation
from .simclr import SimCLR
from .ssmtl import SSMTL, SSMTLPlus

#: The built-in methods, registered here by name (``cls.name``), not as a side effect of importing their
#: modules; :func:`register_method` adds one of your own.
BUILT_IN = (Rotation, Inpainting, MoCo, SimCLR, HSSL, SSMTL, SSMTLPlus, MoCoV2)
for _cls in BUILT_IN:
    register_method(_cls.name)(_cls)

__all__ = ["METHODS", "BUILT_IN", "PretrainMethod", "register_method", "build_method", "method_params"]
