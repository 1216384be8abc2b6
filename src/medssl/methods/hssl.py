"""HSSL (paper A): hierarchical image / task / group pretext losses + decoder reconstruction."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..augment import build_views
from ..losses import nt_xent, reconstruction_mse
from ..parallel import gather, part
from .base import PretrainMethod, mlp


class HSSL(PretrainMethod):
    """L_total = λ1 L_img + λ2 L_task + λ3 L_group + λ4 L_rec on the backbone's pyramid latent.

    - L_img: NT-Xent (two directions summed per positive pair, averaged over pairs, as paper A's
      L_img) between ``P_l(embed(encode(t~(I))))`` and ``P_l(embed(encode(t^(I))))``, two random views
      (crop + resize, blur, noise); negatives = the other 2B-2 views of the batch.
    - L_task: cross entropy of ``P_t(embed(encode(I)))`` against ``batch["task"]`` (``n_tasks`` classes).
    - L_group: cross entropy of ``P_g(embed(encode(I)))`` against ``batch["group"]`` (``n_groups`` classes).
    - L_rec: per-pixel MSE between ``head(decode(encode(I)))`` (1 channel) and the un-augmented I.
    I is the un-augmented image; its encoder features are computed once and shared by L_task, L_group
    and L_rec. A term whose weight is 0 is neither computed nor reported and its head is not created (nor
    is the clean-image pass when λ2 = λ3 = λ4 = 0), so Table 4's ablation rows are configs.

    Params (defaults; paper A: λ1 = λ2 = λ3 = 1/3, λ4 = 50):
      - ``lambda_img=1/3``, ``lambda_task=1/3``, ``lambda_group=1/3``, ``lambda_rec=50.0``.
      - ``temperature=0.5`` (paper silent; SimCLR's CIFAR-scale value, see ``simclr``).
      - ``proj_dim=128`` (SimCLR's output width for P_l), ``proj_hidden=None`` (= ``latent_dim``) for the
        hidden layer of all three heads, each a 2-layer MLP ``Linear -> ReLU -> Linear`` (paper silent on
        the head structure; P_t / P_g end in ``n_tasks`` / ``n_groups`` logits).
      - ``views="crop_blur_noise"`` (see ``medssl.augment``).
    Loss terms: ``img``, ``task``, ``group``, ``rec`` (each only when its weight > 0).
    """

    name: ClassVar[str] = "hssl"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        lambda_img: float = 1 / 3,
        lambda_task: float = 1 / 3,
        lambda_group: float = 1 / 3,
        lambda_rec: float = 50.0,
        temperature: float = 0.5,
        proj_dim: int = 128,
        proj_hidden: int | None = None,
        views: Any = "crop_blur_noise",
        **pool: Any,
    ) -> None:
        super().__init__(backbone, **pool)
        self.weights = {
            "img": float(lambda_img),
            "task": float(lambda_task),
            "group": float(lambda_group),
            "rec": float(lambda_rec),
        }
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"HSSL loss weights must be >= 0, got {self.weights}")
        if not any(self.weights.values()):
            raise ValueError("HSSL needs at least one loss weight > 0")
        latent = backbone.latent_dim
        hidden = proj_hidden or latent
        self.temperature = float(temperature)
        self.views = build_views(views)
        self.img_head = mlp(latent, hidden, proj_dim) if self.weights["img"] else None
        self.task_head = mlp(latent, hidden, self.n_tasks) if self.weights["task"] else None
        self.group_head = mlp(latent, hidden, self.n_groups) if self.weights["group"] else None
        if self.weights["rec"]:
            self._recon_head()

    def latent(self, x: Tensor) -> Tensor:
        return self.backbone.embed(self.backbone.encode(x))

    @torch.no_grad()
    def features(self, image: Tensor) -> dict[str, Tensor]:
        """Features of un-augmented images for t-SNE (paper A Fig. 3b): the latent and each head's output."""
        z = self.latent(image)
        out = {"latent": z}
        for key, head in (("image", self.img_head), ("task", self.task_head), ("group", self.group_head)):
            if head is not None:
                out[key] = head(z)
        return out

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        p = part(batch["image"].shape[0])  # several processes: this part's terms (medssl.parallel)
        x = batch["image"]
        w = self.weights
        terms: dict[str, Tensor] = {}
        if w["img"]:
            v_a, v_b = self.views(x, self.generator), self.views(x, self.generator)
            z_a = gather(self.img_head(self.latent(p.of(v_a))), p)
            z_b = gather(self.img_head(self.latent(p.of(v_b))), p)
            terms["img"] = nt_xent(z_a, z_b, self.temperature, directions="sum", rows=None if p.whole else p.rows)
        if w["task"] or w["group"] or w["rec"]:
            mine = p.local(batch)
            x = mine["image"]
            feats = self.backbone.encode(x)
            if w["task"] or w["group"]:
                z = self.backbone.embed(feats)
                if w["task"]:
                    terms["task"] = p.share(F.cross_entropy(self.task_head(z), mine["task"].long()))
                if w["group"]:
                    terms["group"] = p.share(F.cross_entropy(self.group_head(z), mine["group"].long()))
            if w["rec"]:
                terms["rec"] = p.share(reconstruction_mse(self.reconstruct(x, feats), x))
        loss = sum(w[k] * v for k, v in terms.items())
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}
