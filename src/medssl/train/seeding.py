"""Seeding and RNG state capture (python, numpy, torch CPU and CUDA) for exact resume.

On CPU a fixed seed gives bit-identical runs: :func:`seed_everything` also turns on
``torch.use_deterministic_algorithms(True, warn_only=True)``. Training on CUDA passes ``deterministic=False``
(cuDNN autotuning stays on for speed), so GPU runs are reproducible only up to non-deterministic kernels.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    set_deterministic(bool(deterministic))


def set_deterministic(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=True)`` without its import of ``torch._inductor``.

    That import pulls in ``torch._dynamo`` (2-4 s of CPU per process, paid by every Snakemake job) only to set
    inductor's ``deterministic`` flag; medssl compiles only with ``compile: true``, so the flag is set here only
    when inductor is already loaded, and by :func:`medssl.train.device.compile_network` when it compiles.
    """
    torch._C._set_deterministic_algorithms(mode, warn_only=True)
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = mode


def get_rng_state() -> dict:
    """The global RNG states as tensors and plain values (loadable with ``torch.load(weights_only=True)``):
    ``python`` (``random.getstate()``: a tuple of ints), ``numpy`` (legacy MT19937 state as a dict, the key
    as an int64 tensor), ``torch`` and, when CUDA is in use, ``cuda`` (lists of uint8 tensors)."""
    np_state = np.random.get_state(legacy=False)
    numpy_state = {"bit_generator": np_state["bit_generator"],
                   "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                   "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                   "gauss": float(np_state["gauss"])}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state(saved):
    if isinstance(saved, dict) and "key" in saved:
        key = saved["key"].cpu().numpy() if torch.is_tensor(saved["key"]) else np.asarray(saved["key"])
        return {"bit_generator": saved["bit_generator"],
                "state": {"key": key.astype(np.uint32), "pos": int(saved["pos"])},
                "has_gauss": int(saved["has_gauss"]), "gauss": float(saved["gauss"])}
    return saved  # np.random.get_state()'s tuple


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu() if hasattr(state["torch"], "cpu") else state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
