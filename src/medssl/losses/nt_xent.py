"""NT-Xent (SimCLR) contrastive loss, as HSSL's image-level loss L_img defines it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._precision import at_least_fp32


def nt_xent(z_a: Tensor, z_b: Tensor, temperature: float = 0.5, *, directions: str = "sum",
            rows: slice | None = None) -> Tensor:
    r"""Normalised temperature-scaled cross entropy over a batch of N positive pairs (2N views).

    ``z_a[i]`` and ``z_b[i]`` are projections of two augmentations of image i. With the 2N views
    :math:`v = [z_a; z_b]`, :math:`s(u, v) = u^\top v / (\|u\| \|v\|)` (cosine) and temperature
    :math:`\tau`, for the positive pair (a, b):

    .. math::
        l(a, b) = -\log \frac{\exp(s(z_a, z_b)/\tau)}
                             {\exp(s(z_a, z_b)/\tau) + \sum_{n \in \Lambda^-(a)} \exp(s(z_a, z_n)/\tau)}

    where :math:`\Lambda^-(a)` are the other 2N-2 views of the batch (every view except a itself and its
    positive b). Reduction over the N pairs:

    - ``directions="sum"`` (default; HSSL / papers.md): :math:`L = \frac{1}{N}\sum_i [l(a_i,b_i) + l(b_i,a_i)]`,
      i.e. the two directions are **summed** per pair and the sum is averaged over pairs.
    - ``directions="mean"`` (SimCLR, Chen et al. 2020, Alg. 1): :math:`L = \frac{1}{2N}\sum_i [l(a_i,b_i) +
      l(b_i,a_i)]` = half of the above.

    Computed in float32 (autocast disabled), as small logit errors matter at low temperature.
    Returns a scalar. ``z_a``/``z_b``: (N, D), N >= 2 (with N = 1 there are no negatives and l = 0).

    ``rows`` (training on several processes, :mod:`medssl.parallel`): ``z_a``/``z_b`` hold the whole global
    batch and the result is the share of the pairs ``rows``, the same reduction over those pairs' terms only
    (still divided by N), so that the shares of all processes sum to L.
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"nt_xent needs two (N, D) tensors of the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if directions not in ("sum", "mean"):
        raise ValueError(f"directions must be 'sum' or 'mean', got {directions!r}")
    n = z_a.shape[0]
    with torch.autocast(z_a.device.type, enabled=False):            # logits in float32 even under AMP
        z = F.normalize(at_least_fp32(torch.cat([z_a, z_b], dim=0)), dim=1)
        sim = z @ z.t() / temperature                               # (2N, 2N) cosine / tau
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))                 # a view is never its own negative
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    per_view = F.cross_entropy(sim, target, reduction="none")        # l(a_i,b_i) for i<N, l(b_i,a_i) for i>=N
    if rows is None:
        total = per_view.sum() / n                                   # mean over pairs of l(a,b)+l(b,a)
    else:                                                            # the terms of pairs `rows` only
        total = (per_view[:n][rows].sum() + per_view[n:][rows].sum()) / n
    return total if directions == "sum" else total / 2
