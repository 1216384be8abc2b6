"""SSMTL / SSMTL+ (paper B): predict neighbouring slices from an anchor slice (+ SimSiam-style L_sim)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..losses import simsiam_negcos, ssmtl_pretext
from ..parallel import part
from .base import PretrainMethod, mlp


class SSMTL(PretrainMethod):
    """L_pretext = MSE(g-(f(x_j)), x_{j-t}) + MSE(g+(f(x_j)), x_{j+t}) on sequences of one scan.

    f = the backbone's encoder + decoder (``decode(encode(x))``, ``feature_channels`` maps at full
    resolution); g-, g+ = two 1x1 convs ``feature_channels -> 1`` replacing the backbone's last conv (the
    backbone ``head`` is not used in pretraining; finetuning re-creates it). No augmentation (paper B).
    Batches: ``image`` = x_j, ``prev`` = x_{j-t}, ``next`` = x_{j+t}.

    Params (defaults): ``offset=5`` (t; paper B tries 5, 10, 15 and finds 5 best, also used for SSMTL+).
    Loss terms: ``pretext``, ``pretext_prev``, ``pretext_next``.
    """

    name: ClassVar[str] = "ssmtl"

    sampling = "sequence"

    def __init__(self, backbone: nn.Module, *, offset: int = 5, **pool: Any) -> None:
        super().__init__(backbone, **pool)
        if int(offset) < 1:
            raise ValueError(f"offset t must be >= 1, got {offset}")
        self.offset = int(offset)
        c = backbone.feature_channels
        self.head_prev = nn.Conv2d(c, 1, kernel_size=1)  # g-
        self.head_next = nn.Conv2d(c, 1, kernel_size=1)  # g+

    def sequence_options(self) -> dict[str, Any]:
        return {"offset": self.offset, "pair": False}

    def pretext(self, feats: list[Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        f = self.backbone.decode(feats)
        pred_prev, pred_next = self.head_prev(f), self.head_next(f)
        loss = ssmtl_pretext(pred_prev, pred_next, batch["prev"], batch["next"])
        with torch.no_grad():
            parts = {
                "pretext_prev": torch.mean((pred_prev - batch["prev"]) ** 2),
                "pretext_next": torch.mean((pred_next - batch["next"]) ** 2),
            }
        return {"pretext": loss, **parts}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        p = part(batch["image"].shape[0])  # several processes: this part's anchors and their neighbours
        batch = p.local(batch)
        terms = {k: p.share(v) for k, v in self.pretext(self.backbone.encode(batch["image"]), batch).items()}
        loss = terms["pretext"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}


class SSMTLPlus(SSMTL):
    """SSMTL+: L_self = L_pretext + λ L_sim with a natural positive pair (x_j, x_k) from the same scan.

    q = the backbone encoder's pooled latent ``embed(encode(x))`` (2048-d for ``resnet50_fcn``);
    h = SimSiam predictor MLP ``latent -> pred_hidden -> latent`` (``Linear(no bias) -> BN -> ReLU ->
    Linear``, as SimSiam's predictor; paper B: 2048 -> 512 -> 2048);
    L_sim = -cos(h(q(x_j)), stopgrad(q(x_k))), **one-directional** as paper B's Eq. 2 (SimSiam symmetrises;
    paper B does not). x_k = ``batch["pair"]``, k uniform in {j-2t..j-t-1} U {j+t+1..j+2t} (sampler). The
    target q(x_k) is computed without gradient (stop-gradient); the anchor's encoder features are shared by
    L_pretext and L_sim.

    Params (defaults): ``offset=5`` (t, as :class:`SSMTL`: paper B uses the same t for SSMTL+),
    ``lambda_sim=1/3`` (λ), ``pred_hidden=512``.
    Loss terms: ``pretext``, ``pretext_prev``, ``pretext_next``, ``sim``.
    """

    name: ClassVar[str] = "ssmtl_plus"

    def __init__(
        self, backbone: nn.Module, *, lambda_sim: float = 1 / 3, pred_hidden: int = 512, **params: Any
    ) -> None:
        super().__init__(backbone, **params)
        self.lambda_sim = float(lambda_sim)
        latent = backbone.latent_dim
        self.predictor = mlp(latent, int(pred_hidden), latent, bn=True)

    def sequence_options(self) -> dict[str, Any]:
        return {"offset": self.offset, "pair": True}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        part_ = part(batch["image"].shape[0])  # several processes: this part's anchors, neighbours and pairs
        batch = part_.local(batch)
        feats = self.backbone.encode(batch["image"])
        terms = self.pretext(feats, batch)
        p = self.predictor(self.backbone.embed(feats))
        with torch.no_grad():
            z = self.backbone.embed(self.backbone.encode(batch["pair"]))
        terms["sim"] = simsiam_negcos(p, z)
        terms = {k: part_.share(v) for k, v in terms.items()}
        loss = terms["pretext"] + self.lambda_sim * terms["sim"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}
