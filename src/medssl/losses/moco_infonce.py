"""MoCo InfoNCE loss against a queue of negative keys (He et al. 2020; MoCo v2, Chen et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._precision import at_least_fp32


def moco_logits(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    r"""Logits of MoCo's (K+1)-way classification: ``[q·k, q·queue_1, ..., q·queue_K] / T``.

    ``q`` (N, D) queries and ``k`` (N, D) positive keys are L2-normalised here; ``queue`` (K, D) holds K
    keys that are already L2-normalised (as MoCo stores them). Column 0 is the positive. Computed in
    float32 (autocast disabled).
    """
    with torch.autocast(q.device.type, enabled=False):  # float32 logits even under AMP
        q = F.normalize(at_least_fp32(q), dim=1)
        k = F.normalize(at_least_fp32(k), dim=1)
        l_pos = (q * k).sum(dim=1, keepdim=True)          # (N, 1)
        l_neg = q @ queue.to(q.dtype).t()                     # (N, K)
        return torch.cat([l_pos, l_neg], dim=1) / temperature


def moco_infonce(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    r"""InfoNCE with queue negatives, averaged over the N queries:

    .. math::
        L = -\frac{1}{N}\sum_i \log \frac{\exp(q_i \cdot k_i / T)}
                                        {\exp(q_i \cdot k_i / T) + \sum_{j=1}^{K} \exp(q_i \cdot \kappa_j / T)}

    i.e. cross entropy of :func:`moco_logits` with label 0. Gradients flow into ``q`` only in MoCo
    (``k`` comes from the momentum encoder under ``no_grad``; the queue is a buffer); this function does
    not detach anything itself.
    """
    logits = moco_logits(q, k, queue, temperature)
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels)
