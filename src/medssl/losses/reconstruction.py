"""Image reconstruction losses: HSSL's decoder-initialisation L_rec and the context encoder's masked L2."""

from __future__ import annotations

import torch
from torch import Tensor


def reconstruction_mse(pred: Tensor, target: Tensor) -> Tensor:
    r"""HSSL's L_rec = mean ||S(E(I)) - I||^2, taken per pixel:

    .. math:: L_{rec} = \frac{1}{B\,C\,H\,W} \sum_{b,c,h,w} (\hat I_{bchw} - I_{bchw})^2

    (paper A writes a per-image squared L2 norm averaged over D; we average over pixels too, so that the
    weight lambda_4 = 50 does not depend on the image size).
    """
    return torch.mean((pred - target) ** 2)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor, outside_weight: float = 0.0) -> Tensor:
    r"""Context-encoder L2 on the dropped region M (Pathak et al. 2016, Eq. 1, per-pixel normalised):

    .. math::
        L = \frac{\sum M \odot (\hat x - x)^2}{\sum M}
            + w_{out} \frac{\sum (1-M) \odot (\hat x - x)^2}{\sum (1-M)}

    ``mask`` is 1 on the masked (to be inpainted) pixels, broadcastable to ``pred``; ``outside_weight``
    (w_out, default 0) adds the reconstruction error on the visible context. Pixels with mask 0 get no
    gradient when ``outside_weight == 0``.
    """
    mask = mask.to(pred.dtype).expand_as(pred)
    err = (pred - target) ** 2
    loss = (err * mask).sum() / mask.sum().clamp_min(1.0)
    if outside_weight:
        inv = 1.0 - mask
        loss = loss + outside_weight * (err * inv).sum() / inv.sum().clamp_min(1.0)
    return loss
