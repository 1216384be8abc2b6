"""Adam without the per-process import of ``torch._dynamo`` (same arithmetic as ``torch.optim.Adam``).

``torch.optim.Optimizer`` wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict``
in ``torch._disable_dynamo``, and ``Adam.step`` in ``_use_grad_for_differentiable``; both import
``torch._dynamo`` on first use, only to keep ``torch.compile`` from tracing them. That import costs 1.5-4 s
of CPU per process, which every Snakemake training job pays (``bench/bench_jobs.py`` measures it). medssl
never compiles, so :class:`Adam` calls the undecorated functions. When ``torch._dynamo`` is already loaded
(someone compiles in this process) the wrappers are left as they are.
"""

from __future__ import annotations

import inspect
import sys

import torch

_DISABLED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _skip_dynamo_wrappers() -> None:
    """Give each ``torch._disable_dynamo`` wrapper of ``Optimizer`` its own function as the cached
    "dynamo-disabled" version, which the wrapper otherwise builds by importing ``torch._dynamo``."""
    if "torch._dynamo" in sys.modules:
        return
    for name in _DISABLED:
        raw = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if raw is not None and getattr(raw, "__dynamo_disable", None) is None:
            setattr(raw, "__dynamo_disable", raw)


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (same defaults and update) whose ``step`` runs without importing ``torch._dynamo``."""

    def __init__(self, params, **kwargs):
        _skip_dynamo_wrappers()
        super().__init__(params, **kwargs)

    def step(self, closure=None):
        if "torch._dynamo" in sys.modules:
            return super().step(closure)
        # the update itself, below torch's profiler hook and grad-mode wrapper, under the grad mode that
        # wrapper sets (this class's own step gets the profiler hook from Optimizer.__init__)
        update = inspect.unwrap(torch.optim.Adam.step)
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return update(self, closure)
