"""RotNet rotation prediction (Gidaris et al., ICLR 2018) — paper A's "Rotation" baseline."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..parallel import part
from .base import PretrainMethod

N_ROTATIONS = 4


def rotate_batch(x: Tensor) -> tuple[Tensor, Tensor]:
    """All four rotations of every image: returns ``(4B, C, H, W)`` images and ``(4B,)`` labels.

    Block k (rows ``k*B .. (k+1)*B-1``) is ``torch.rot90(x, k, dims=(2, 3))`` (k * 90 degrees
    counter-clockwise) with label k. H must equal W.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square images, got {tuple(x.shape[-2:])}")
    b = x.shape[0]
    xs = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(N_ROTATIONS)], dim=0)
    labels = torch.arange(N_ROTATIONS, device=x.device).repeat_interleave(b)
    return xs, labels


class Rotation(PretrainMethod):
    """Predict which of 0/90/180/270 degrees an image was rotated by (4-way cross entropy).

    As in Gidaris et al., every image of the batch is fed in all four rotations at once (the effective batch
    is 4B), labels 0..3 = k * 90 degrees. The classifier is a linear layer ``latent_dim -> 4`` on the
    backbone's image-level latent ``embed(encode(x))`` (paper A does not describe the head; RotNet's own
    classifier sits on the network's top features, which for our SegNets is the pooled latent).

    Params: none. Loss terms: ``rotation`` (CE), ``acc`` (top-1 accuracy, not a loss).
    """

    name: ClassVar[str] = "rotation"

    def __init__(self, backbone: nn.Module, **pool: Any) -> None:
        super().__init__(backbone, **pool)
        self.classifier = nn.Linear(backbone.latent_dim, N_ROTATIONS)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        p = part(batch["image"].shape[0])  # several processes: this part's images in their four rotations
        xs, labels = rotate_batch(p.of(batch["image"]))
        logits = self.classifier(self.backbone.embed(self.backbone.encode(xs)))
        loss = p.share(F.cross_entropy(logits, labels))
        acc = p.share((logits.detach().argmax(1) == labels).float().mean())
        return {"loss": loss, "rotation": loss.detach(), "acc": acc}
