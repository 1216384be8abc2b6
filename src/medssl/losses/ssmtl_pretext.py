"""Paper B's two-direction slice prediction loss (SSMTL, Eq. 1)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def ssmtl_pretext(pred_prev: Tensor, pred_next: Tensor, prev: Tensor, next: Tensor) -> Tensor:  # noqa: A002
    r"""L_pretext = MSE(g^-(f(x_j)), x_{j-t}) + MSE(g^+(f(x_j)), x_{j+t}).

    Each MSE is the mean of squared differences over batch and pixels (paper B: "a standard Euclidean
    distance (i.e. mean squared error)"); the two directions are summed. ``pred_prev`` is compared with
    ``prev`` only and ``pred_next`` with ``next`` only.
    """
    return F.mse_loss(pred_prev, prev) + F.mse_loss(pred_next, next)
