"""Pretraining-method registry: ``METHODS``, ``register_method``, ``build_method`` (see ``base``).

Paper A (HSSL): ``rotation``, ``inpainting``, ``moco``, ``simclr``, ``hssl``.
Paper B (SSMTL): ``ssmtl``, ``ssmtl_plus``, ``mocov2``.
``tfs`` (training from scratch) is not a method: such runs skip pretraining.
"""

from .base import METHODS, PretrainMethod, build_method, method_params, register_method
from . import hssl, inpainting, moco, rotation, simclr, ssmtl  # noqa: F401,E402  (register the methods)

__all__ = ["METHODS", "PretrainMethod", "register_method", "build_method", "method_params"]
