"""SimSiam negative cosine similarity with stop-gradient (Chen & He 2021; paper B's L_sim)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._precision import at_least_fp32


def simsiam_negcos(p: Tensor, z: Tensor) -> Tensor:
    r"""One-directional negative cosine similarity, averaged over the batch:

    .. math::
        L = -\frac{1}{N}\sum_i \frac{p_i}{\|p_i\|_2} \cdot \frac{\mathrm{sg}(z_i)}{\|\mathrm{sg}(z_i)\|_2}

    ``p`` (N, D) is the predictor output h(q(x_j)); ``z`` (N, D) the target encoding q(x_k), detached here
    (stop-gradient ``sg``): no gradient ever reaches ``z``. Range [-1, 1]; -1 when aligned. Computed in
    float32.
    """
    with torch.autocast(p.device.type, enabled=False):  # float32 even under AMP
        return -F.cosine_similarity(at_least_fp32(p), at_least_fp32(z.detach()), dim=1).mean()
