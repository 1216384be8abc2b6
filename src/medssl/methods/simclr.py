"""SimCLR (Chen et al., ICML 2020) — paper A's "SimCLR" / single- and multi-domain CL baselines."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from ..augment import build_views
from ..losses import nt_xent
from ..parallel import gather, part
from .base import PretrainMethod, mlp


class SimCLR(PretrainMethod):
    """NT-Xent between two random views of each image, on an MLP projection of the backbone latent.

    ``z = g(embed(encode(view)))`` with SimCLR's projection head ``g = Linear(latent, hidden) -> ReLU ->
    Linear(hidden, proj_dim)``; loss :func:`medssl.losses.nt_xent` over the 2B views of the batch.

    Params (defaults):
      - ``temperature=0.5``: SimCLR's CIFAR-10 setting (its ImageNet runs at batch 4096 use 0.1); paper A is
        silent and trains with batch 30 on small grey images, closer to the CIFAR regime.
      - ``proj_dim=128`` (SimCLR), ``proj_hidden=None`` (= ``latent_dim``, SimCLR's hidden width = input).
      - ``views="crop_blur_noise"``: paper A's augmentation set (crop + resize, blur, noise).
      - ``directions="mean"``: SimCLR's 1/(2N) normalisation of the 2N directional terms; ``"sum"`` = HSSL's
        L_img (twice as large).
    Loss terms: ``ntxent``.
    """

    name: ClassVar[str] = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        temperature: float = 0.5,
        proj_dim: int = 128,
        proj_hidden: int | None = None,
        views: Any = "crop_blur_noise",
        directions: str = "mean",
        **pool: Any,
    ) -> None:
        super().__init__(backbone, **pool)
        latent = backbone.latent_dim
        self.temperature = float(temperature)
        self.directions = directions
        self.views = build_views(views)
        self.proj = mlp(latent, proj_hidden or latent, proj_dim)

    def project(self, x: Tensor) -> Tensor:
        return self.proj(self.backbone.embed(self.backbone.encode(x)))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch["image"]
        p = part(x.shape[0])  # several processes: views of the whole batch, projections of this part
        v_a, v_b = self.views(x, self.generator), self.views(x, self.generator)
        z_a, z_b = gather(self.project(p.of(v_a)), p), gather(self.project(p.of(v_b)), p)
        loss = nt_xent(z_a, z_b, self.temperature, directions=self.directions, rows=None if p.whole else p.rows)
        return {"loss": loss, "ntxent": loss.detach()}
