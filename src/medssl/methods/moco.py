"""MoCo v2 (He et al. CVPR 2020; Chen et al. arXiv:2003.04297): paper A's "MoCo" and paper B's "MoCo V2"."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..augment import build_views
from ..losses import moco_infonce
from ..parallel import Part, gather_detached, part
from .base import PretrainMethod
from .base import mlp as make_mlp


def stale_self_keys(queue_size: int, n_images: int) -> float:
    """Expected number of a query image's own earlier keys in a full queue of ``queue_size`` keys when each
    epoch enqueues one key per image of a pool of ``n_images``: ``K / N`` (each is a false negative)."""
    return float(queue_size) / max(int(n_images), 1)


def queue_warning(queue_size: int, n_images: int) -> str | None:
    """A warning when the queue is not below the pool (``K >= N``: every image has a stale key of its own
    among its negatives), else None. Pretraining logs it."""
    if queue_size < n_images:
        return None
    return (f"MoCo queue K = {queue_size} >= {n_images} pool images: about {stale_self_keys(queue_size, n_images):.1f} "
            f"stale keys of every image, its own among them, are negatives; set params.queue_size below the pool")


def key_encoder_copy(backbone: nn.Module) -> nn.Module:
    """Deep copy of ``backbone`` keeping only what ``encode``/``embed`` use (``encoder.*``, ``neck.*``):
    ``decoder`` and ``head`` are replaced by empty ``nn.Identity`` modules. All parameters frozen."""
    key = copy.deepcopy(backbone)
    for name in ("decoder", "head"):
        if isinstance(getattr(key, name, None), nn.Module):
            setattr(key, name, nn.Identity())
    for p in key.parameters():
        p.requires_grad_(False)
    return key


class MoCo(PretrainMethod):
    """MoCo v2: query encoder = backbone ``encode`` + ``embed`` + MLP head, momentum key encoder, queue.

    - Query ``q = normalize(P(embed(encode(v1))))`` with the 2-layer MLP projection head P
      (``Linear(latent, latent) -> ReLU -> Linear(latent, dim)``, MoCo v2's ``--mlp``); key
      ``k = normalize(P_k(embed_k(encode_k(v2))))`` from the momentum copy (encoder + neck + head P_k, no
      gradient), v1, v2 two random views of the batch.
    - Loss: InfoNCE over ``[q·k, q·queue] / T`` (label 0), computed with the queue as it was **before**
      this batch; then the keys are enqueued at ``queue_ptr`` (overwriting the oldest, index modulo K) and
      the pointer advances modulo K. Enqueue happens in training mode only.
    - ``after_step()``: momentum update ``θ_k <- m θ_k + (1 - m) θ_q`` over encoder, neck and head
      parameters (buffers such as BN running statistics are the key encoder's own, as in MoCo).

    Params (defaults = MoCo v2's ``main_moco.py`` with ``--mlp --moco-t 0.2 --aug-plus``):
      - ``queue_size=65536`` (K; paper B: 1024 -> method ``mocov2``; the demo config sets a small K). K must
        stay well below the number of pretraining images N: the queue holds the keys of the last K images
        seen, so with K >= N every image's own keys from earlier epochs (about K / N of them, stale by up to
        K / N epochs) are among its negatives, the query's positive included. Paper A does not give K; its
        pool is about 29,400 slices (Table 1), where MoCo's ImageNet default 65,536 would hold ~2.2 epochs of
        keys. config/paper.yaml therefore sets K = 4096 for paper A: K / N ~ 0.14, close to paper B's own
        choice for small data (K = 1024 on MM-WHS CT, about 5,400 slices: K / N ~ 0.19), a power of two like
        MoCo's values, and still 70 times the 58 in-batch negatives SimCLR gets at paper A's batch of 30.
        Pretraining logs a warning when K >= N (:mod:`medssl.train.pretrain`).
      - ``momentum=0.999`` (m), ``temperature=0.2`` (T), ``dim=128`` (feature dimension), ``mlp=True``,
      - ``views="crop_blur_noise"``: paper A's augmentations T (random crop + resize, blur, noise, as for its
        SimCLR / HSSL; see ``medssl.augment``); paper B: ``"flip_blur"``. A preset name or a dict.
      - ``bn_splits=1``: shuffle-BN emulation on one device — the key batch is shuffled and forwarded in
        ``bn_splits`` chunks so its BN statistics differ from the query's (MoCo shuffles across 8 GPUs;
        paper B trained on a single GPU, where MoCo's shuffle has no effect, hence default 1 = off).
    Loss terms: ``infonce``, ``acc`` (top-1 of the positive among K+1, not a loss).
    """

    name: ClassVar[str] = "moco"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        dim: int = 128,
        mlp: bool = True,
        views: Any = "crop_blur_noise",
        bn_splits: int = 1,
        **pool: Any,
    ) -> None:
        super().__init__(backbone, **pool)
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError("momentum must be in [0, 1]")
        self.queue_size = int(queue_size)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.dim = int(dim)
        self.bn_splits = max(1, int(bn_splits))
        self.views = build_views(views)
        latent = backbone.latent_dim
        self.proj = make_mlp(latent, latent, self.dim) if mlp else nn.Linear(latent, self.dim)
        self.key_backbone = key_encoder_copy(backbone)
        self.key_proj = copy.deepcopy(self.proj)
        for p in self.key_proj.parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(self.queue_size, self.dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    # -- encoders ---------------------------------------------------------------------------------------
    def query(self, x: Tensor) -> Tensor:
        return F.normalize(self.proj(self.backbone.embed(self.backbone.encode(x))), dim=1)

    @torch.no_grad()
    def key(self, x: Tensor) -> Tensor:
        def enc(v: Tensor) -> Tensor:
            return F.normalize(self.key_proj(self.key_backbone.embed(self.key_backbone.encode(v))), dim=1)

        b = x.shape[0]
        splits = min(self.bn_splits, b // 2) if self.training else 1
        if splits <= 1:
            return enc(x)
        perm = torch.randperm(b, device=x.device)
        k = torch.cat([enc(c) for c in x[perm].chunk(splits)], dim=0)
        out = torch.empty_like(k)
        out[perm] = k
        return out

    def encode_pair(self, x: Tensor, p: Part | None = None) -> tuple[Tensor, Tensor]:
        """Two random views of ``x`` -> (normalised queries with grad, normalised keys without grad); with
        several processes the views are drawn for the whole batch and only part ``p`` is encoded."""
        p = p or part(x.shape[0])
        v1 = self.views(x, self.generator)
        v2 = self.views(x, self.generator)
        return self.query(p.of(v1)), self.key(p.of(v2))

    # -- queue ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def enqueue(self, k: Tensor) -> None:
        """Write keys at the pointer (wrapping modulo K) and advance the pointer by their number (mod K)."""
        k = k.detach()
        n = k.shape[0]
        if n > self.queue_size:  # only the newest K survive
            k = k[-self.queue_size:]
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(k.shape[0], device=k.device)) % self.queue_size
        self.queue[idx] = k.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + n) % self.queue_size)

    def _momentum_pairs(self):
        q_params = dict(self.backbone.named_parameters())
        for name, pk in self.key_backbone.named_parameters():
            yield q_params[name], pk
        yield from zip(self.proj.parameters(), self.key_proj.parameters())

    @torch.no_grad()
    def after_step(self) -> None:
        m = self.momentum
        for pq, pk in self._momentum_pairs():
            pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch["image"]
        p = part(x.shape[0])  # several processes: queries and keys of this part, every key enqueued
        if not p.whole and self.bn_splits > 1:
            raise ValueError("MoCo's bn_splits (shuffle-BN on one device) is for one process; on several GPUs "
                             "BatchNorm is synchronised over the global batch: set params.bn_splits: 1")
        q, k = self.encode_pair(x, p)
        queue = self.queue.clone().detach()  # negatives = the queue before this batch's keys
        loss = p.share(moco_infonce(q, k, queue, self.temperature))
        with torch.no_grad():
            acc = p.share(((q * k).sum(1, keepdim=True) > q @ queue.t()).all(dim=1).float().mean())
        if self.training:
            self.enqueue(gather_detached(k, p))
        return {"loss": loss, "infonce": loss.detach(), "acc": acc}


class MoCoV2(MoCo):
    """Paper B's MoCo V2 baseline: :class:`MoCo` with paper B's settings.

    "We use the default hyperparameters except for K and the stochastic data augmentation policy": K = 1024,
    views = random (horizontal) flip + stochastic Gaussian blur (``"flip_blur"``); m = 0.999, T = 0.2,
    dim = 128, MLP head as MoCo v2. Paper B transfers only the encoder (config ``transfer: encoder``).
    Params as :class:`MoCo`, with defaults ``queue_size=1024``, ``views="flip_blur"``; the others (and the
    pool context) pass through to :class:`MoCo` unchanged.
    """

    name: ClassVar[str] = "mocov2"

    def __init__(
        self, backbone: nn.Module, *, queue_size: int = 1024, views: Any = "flip_blur", **params: Any
    ) -> None:
        super().__init__(backbone, queue_size=queue_size, views=views, **params)
