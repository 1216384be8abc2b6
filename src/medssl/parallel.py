"""One global batch over several processes, computing exactly what one process computes with it.

A pretraining job on N GPUs (``pretrain: {gpus: N}``, :mod:`medssl.train.distributed`) runs N processes. Each
reads the same global batch and draws the same augmentations (same seeds, same order), then encodes only its
:class:`Part` of the batch. Every loss term is computed as this process's **share**, such that the shares of
all processes sum to the term one process computes from the whole batch:

* a mean over samples (cross entropy, MSE, negative cosine): ``share(mean over the part) = mean x n_part / n``
  (:meth:`Part.share`; every sample weighs the same, which holds for medssl's per-sample losses);
* NT-Xent: the projections of all processes are gathered (:func:`gather`, keeping gradients), every process
  computes the loss over all 2n views, and its share is the terms of its own pairs
  (:func:`medssl.losses.nt_xent` with ``rows``); the gradient reaching a process's projections sums what every
  share contributes (its views are the others' negatives);
* BatchNorm sees the statistics of the global batch: :func:`synchronise_batchnorm` turns every BatchNorm into
  ``torch.nn.SyncBatchNorm`` on CUDA or, on the CPU, where torch's SyncBatchNorm refuses to run, into
  :class:`GlobalBatchNorm` (the CPU twin, so that CI tests the same logic).

The training loop back-propagates ``loss x N`` so that DistributedDataParallel's gradient *average* is the
gradient *sum* of the shares, which is the single-process gradient; it all-reduces the logged terms (sums of
shares) so the log shows the single-process values. With one process nothing of this changes a number:
:func:`part` is the whole batch, :meth:`Part.share` returns its argument and :func:`gather` its input.

The gather is a small autograd function over ``torch.distributed.all_gather``/``all_reduce`` (as solo-learn's
and lightly's): torch's own differentiable collectives are deprecated (``torch.distributed.nn.functional``) or
private (``torch.distributed._functional_collectives``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    """Processes training together (1 without ``torch.distributed``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's place among them (0 without ``torch.distributed``)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def sizes(n: int, world: int) -> list[int]:
    """How ``n`` samples split over ``world`` processes: as evenly as possible, the larger parts first."""
    base, extra = divmod(int(n), int(world))
    return [base + (1 if r < extra else 0) for r in range(int(world))]


@dataclass(frozen=True)
class Part:
    """This process's contiguous rows ``[start, stop)`` of a global batch of ``n``."""

    start: int
    stop: int
    n: int
    world: int

    @property
    def rows(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def whole(self) -> bool:
        """One process holds the whole batch (nothing to share)."""
        return self.world == 1

    def of(self, t: Tensor) -> Tensor:
        """This part's rows of a tensor of the global batch (first dimension)."""
        return t if self.whole else t[self.rows]

    def local(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """This part's rows of every tensor of a batch."""
        return batch if self.whole else {k: self.of(v) for k, v in batch.items()}

    def share(self, mean: Tensor) -> Tensor:
        """This process's share of a mean over samples, from the mean over its part (module docstring)."""
        return mean if self.whole else mean * (self.size / self.n)


def part(n: int) -> Part:
    """This process's part of a global batch of ``n`` samples."""
    world = world_size()
    if n < world:
        raise ValueError(f"a global batch of {n} cannot be split over {world} processes: set batch_size >= gpus")
    counts = sizes(n, world)
    start = sum(counts[:rank()])
    return Part(start, start + counts[rank()], int(n), world)


class _Gather(torch.autograd.Function):
    """Concatenate every process's part (rows of possibly unequal size); backward: the sum over processes of
    the gradient of this process's rows."""

    @staticmethod
    def forward(ctx, t: Tensor, counts: tuple[int, ...], me: int) -> Tensor:
        ctx.counts, ctx.me = counts, me
        longest = max(counts)
        padded = t if t.shape[0] == longest else torch.cat([t, t.new_zeros((longest - t.shape[0], *t.shape[1:]))])
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)  # each process's loss share depends on every row
        start = sum(ctx.counts[:ctx.me])
        return grad[start:start + ctx.counts[ctx.me]], None, None


def gather(t: Tensor, p: Part) -> Tensor:
    """The global batch's rows of ``t`` (this process holds ``p``'s), with gradients flowing back to each
    process's own rows; ``t`` itself for one process."""
    if p.whole:
        return t
    return _Gather.apply(t, tuple(sizes(p.n, p.world)), rank())


@torch.no_grad()
def gather_detached(t: Tensor, p: Part) -> Tensor:
    """:func:`gather` without gradients (e.g. MoCo's keys, enqueued in the global batch's order)."""
    return t if p.whole else _Gather.apply(t.detach(), tuple(sizes(p.n, p.world)), rank())


def all_reduce_sum(t: Tensor) -> Tensor:
    """The sum over processes of ``t`` (in place; ``t`` for one process). For logging, not for gradients."""
    if world_size() > 1:
        dist.all_reduce(t)
    return t


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch of all processes: the CPU twin of
    ``torch.nn.SyncBatchNorm`` (which runs on GPUs only). Same parameters, buffers and state-dict keys as the
    BatchNorm it replaces. Two passes over the gathered sums (the mean, then the squared deviations from it)
    keep the variance as accurate as a single-process BatchNorm's; gradients flow through the gathers. In eval
    mode, or alone, it is ``F.batch_norm``."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() / x.shape[1]])
        total = _sum_over_processes(torch.cat([x.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        var = _sum_over_processes(((x - mean.view(shape)) ** 2).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _sum_over_processes(t: Tensor) -> Tensor:
    """Differentiable sum over processes of equally shaped ``t`` (all-gather, then add)."""
    world = world_size()
    return _Gather.apply(t.unsqueeze(0), tuple([1] * world), rank()).sum(0)


def synchronise_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` normalised with the global batch's statistics: ``nn.SyncBatchNorm`` on
    CUDA, :class:`GlobalBatchNorm` elsewhere (parameters and buffers carried over; a no-op for one process).
    Call it before the module moves to ``device``."""
    if world_size() == 1:
        return module
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global_batchnorm(module)


def _to_global_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict())
        return new.train(module.training)
    for name, child in module.named_children():
        setattr(module, name, _to_global_batchnorm(child))
    return module
