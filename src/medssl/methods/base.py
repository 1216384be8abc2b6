"""Pretraining-method base class and registry.

A method wraps a backbone ``SegNet`` (see ``medssl.models``: ``encode / embed / decode / head``,
``latent_dim``, ``feature_channels``) and adds whatever heads / momentum encoders / queues its pretext task
needs. ``forward(batch)`` returns a dict with the scalar ``"loss"`` (the weighted total that is
back-propagated) and the individual terms (for logging). Only ``method.backbone`` is transferred to
finetuning.

Hyper-parameters are keyword-only ``__init__`` arguments of each method class; their defaults are the
papers' (or the cited originals') values, listed in each class docstring. The pool context (``n_tasks``,
``n_groups``, ``image_size``) is :class:`PretrainMethod`'s own and not a config parameter; subclasses pass it
through. An unknown parameter name in the config is an error (``TypeError`` naming the valid ones).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["PretrainMethod", "METHODS", "register_method", "build_method", "method_params", "mlp"]

METHODS: dict[str, type["PretrainMethod"]] = {}


def register_method(name: str) -> Callable[[type["PretrainMethod"]], type["PretrainMethod"]]:
    """Class decorator: register a ``PretrainMethod`` subclass under ``name`` (sets ``cls.name``)."""

    def deco(cls: type[PretrainMethod]) -> type[PretrainMethod]:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"pretraining method {name!r} is already registered ({METHODS[name].__qualname__})")
        if not (isinstance(cls, type) and issubclass(cls, PretrainMethod)):
            raise TypeError(f"{cls!r} is not a PretrainMethod subclass")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


class PretrainMethod(nn.Module):
    """Base class of pretraining methods (contract in this module's docstring).

    The base class owns the pool context: ``n_tasks`` / ``n_groups`` (number of tasks / groups in the
    pretraining pool, for heads that classify them) and ``image_size``. Subclasses declare only their own
    hyper-parameters as keyword-only ``__init__`` arguments and pass everything else through::

        def __init__(self, backbone, *, temperature: float = 0.5, **pool: Any) -> None:
            super().__init__(backbone, **pool)

    A subclass of a method that only changes some defaults re-declares just those and forwards the rest
    (``**params``) to its parent; :func:`method_params` follows such ``**`` chains up the MRO.
    """

    name: ClassVar[str] = ""
    sampling: ClassVar[str] = "slice"  # "slice" | "sequence"

    def __init__(self, backbone: nn.Module, *, n_tasks: int = 1, n_groups: int = 1, image_size: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        self.n_tasks = int(n_tasks)
        self.n_groups = int(n_groups)
        self.image_size = int(image_size)
        self.generator: torch.Generator | None = None  # augmentation RNG; None = torch's global RNG

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_step(self) -> None:
        """Called by the trainer after each ``optimizer.step()`` (momentum updates). Default: nothing."""

    def sequence_options(self) -> dict[str, Any]:
        """For ``sampling == "sequence"``: ``{"offset": t, "pair": bool}``. Slice methods: ``{}``."""
        return {}

    # -- helpers shared by the methods ------------------------------------------------------------------
    def _recon_head(self) -> nn.Module:
        """The 1-channel reconstruction head: the backbone's own ``head`` when it has 1 output channel
        (so it is pretrained too), else a method-owned 1x1 conv ``feature_channels -> 1`` (``rec_head``)."""
        head = getattr(self.backbone, "head", None)
        if isinstance(head, nn.Conv2d) and head.out_channels == 1:
            return head
        if not hasattr(self, "rec_head"):
            self.rec_head = nn.Conv2d(self.backbone.feature_channels, 1, kernel_size=1)
        return self.rec_head

    def reconstruct(self, x: Tensor, feats: list[Tensor] | None = None) -> Tensor:
        """1-channel image predicted through decoder + 1-channel head: ``head(decode(encode(x)))``."""
        if feats is None:
            feats = self.backbone.encode(x)
        return self._recon_head()(self.backbone.decode(feats))

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """The method's hyper-parameters and their defaults (from the ``__init__`` signature)."""
        return method_params(cls)


POOL_CONTEXT = ("n_tasks", "n_groups", "image_size")  # PretrainMethod's own arguments, not config params


def method_params(cls: type[PretrainMethod]) -> dict[str, Any]:
    """``{param: default}`` of a method class's keyword-only hyper-parameters.

    Walks the MRO from ``cls``: each ``__init__`` contributes its keyword-only parameters (a subclass's
    default wins over its parent's); an ``__init__`` that takes ``**kwargs`` forwards them to the next one up,
    one without ends the walk. The pool context (:data:`POOL_CONTEXT`) is left out.
    """
    skip = {"self", "backbone", *POOL_CONTEXT}
    chain = []
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        chain.append({p.name: p.default for p in params
                      if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in skip})
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    out: dict[str, Any] = {}
    for own in reversed(chain):  # parent order first, subclass defaults override
        out.update(own)
    return out


def build_method(
    name: str,
    backbone: nn.Module,
    n_tasks: int = 1,
    n_groups: int = 1,
    image_size: int = 64,
    **params: Any,
) -> PretrainMethod:
    """Instantiate registered method ``name`` around ``backbone`` with config ``params``.

    The method's extra modules are moved to the device of the backbone's parameters.
    """
    if name == "tfs":
        raise ValueError("'tfs' (training from scratch) is not a pretraining method: such runs skip pretraining")
    if name not in METHODS:
        raise KeyError(f"unknown pretraining method {name!r}; registered: {sorted(METHODS)}")
    cls = METHODS[name]
    valid = method_params(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TypeError(f"method {name!r} got unknown params {unknown}; valid: {sorted(valid)}")
    method = cls(backbone, n_tasks=n_tasks, n_groups=n_groups, image_size=image_size, **params)
    p = next(backbone.parameters(), None)
    if p is not None:
        method.to(p.device)
    return method


def mlp(in_dim: int, hidden: int, out_dim: int, *, bn: bool = False, bn_last: bool = False) -> nn.Sequential:
    """Two-layer MLP ``Linear -> [BN] -> ReLU -> Linear [-> BN]`` used for projection / prediction heads."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)]
    if bn_last:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)

