"""Context-encoder in-painting (Pathak et al., CVPR 2016) — paper A's "In-painting" baseline."""

from __future__ import annotations

from typing import Any, ClassVar

import math

import torch
from torch import Tensor, nn

from ..augment import _rand
from ..losses import masked_mse
from ..parallel import part
from .base import PretrainMethod


def square_mask(
    b: int, h: int, w: int, fraction: float, region: str, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """(B, 1, H, W) float mask, 1 inside one square-ish box of area ``fraction`` * H * W per sample.

    Box sides ``round(sqrt(fraction) * H)`` x ``round(sqrt(fraction) * W)``; ``region="center"``: centred box
    (Pathak's "central region"); ``"random"``: position uniform inside the image, per sample (Pathak's
    "random block", one block).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"inpainting fraction must be in (0, 1), got {fraction}")
    bh = max(1, min(h - 1, round(math.sqrt(fraction) * h)))
    bw = max(1, min(w - 1, round(math.sqrt(fraction) * w)))
    if region == "center":
        top = torch.full((b,), (h - bh) // 2, device=device)
        left = torch.full((b,), (w - bw) // 2, device=device)
    elif region == "random":
        top = torch.floor(_rand(b, generator, device) * (h - bh + 1)).long()
        left = torch.floor(_rand(b, generator, device) * (w - bw + 1)).long()
    else:
        raise ValueError(f"inpainting region must be 'random' or 'center', got {region!r}")
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    top, left = top.view(b, 1, 1), left.view(b, 1, 1)
    inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)
    return inside.unsqueeze(1).float()


class Inpainting(PretrainMethod):
    """Drop a square region of each image and reconstruct it through the full encoder-decoder.

    The dropped pixels are filled with the image's mean intensity (Pathak fills with the dataset mean
    pixel), the network predicts a 1-channel image ``head(decode(encode(x_masked)))`` (the backbone's head if
    it has 1 output channel, else a 1x1 conv owned by the method), and the loss is the L2 error on the
    dropped region, normalised per masked pixel (Pathak's reconstruction loss; the adversarial term is left
    out, the L2-only context encoder).

    Params (defaults):
      - ``fraction=0.25``: masked area fraction (Pathak: the central block is 1/4 of the image area and random
        blocks/regions remove up to 1/4).
      - ``region="random"``: ``"random"`` = one randomly placed square per image (Pathak's "random block";
        paper A does not say which variant it used), ``"center"`` = the fixed central square.
      - ``outside_weight=0.0``: weight of an extra L2 term on the visible context (0 = masked region only,
        as Eq. 1 of Pathak; Pathak's code also puts weight on a thin overlap border, not reproduced).
    Loss terms: ``rec_masked``.
    """

    name: ClassVar[str] = "inpainting"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        fraction: float = 0.25,
        region: str = "random",
        outside_weight: float = 0.0,
        **pool: Any,
    ) -> None:
        super().__init__(backbone, **pool)
        if region not in ("random", "center"):
            raise ValueError(f"inpainting region must be 'random' or 'center', got {region!r}")
        if not 0 < fraction < 1:
            raise ValueError(f"inpainting fraction must be in (0, 1), got {fraction}")
        self.fraction = float(fraction)
        self.region = region
        self.outside_weight = float(outside_weight)
        self._recon_head()

    def make_mask(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return square_mask(b, h, w, self.fraction, self.region, x.device, self.generator)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        p = part(batch["image"].shape[0])  # several processes: masks drawn for the whole batch, this part used
        mask = p.of(self.make_mask(batch["image"]))
        x = p.of(batch["image"])
        fill = x.mean(dim=(1, 2, 3), keepdim=True)
        x_in = x * (1 - mask) + fill * mask
        pred = self.reconstruct(x_in)
        loss = p.share(masked_mse(pred, x, mask, self.outside_weight))  # every image masks the same area
        return {"loss": loss, "rec_masked": loss.detach()}
