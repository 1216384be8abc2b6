"""Keep contrastive logits out of reduced precision."""

from __future__ import annotations

import torch
from torch import Tensor


def at_least_fp32(x: Tensor) -> Tensor:
    """``x`` as float32 when it is a half / bfloat16 (or integer) tensor, unchanged when float32/float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
