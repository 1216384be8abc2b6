"""The representation monitor of pretraining: is the encoder learning something, or collapsing?

Before training (epoch 0), every ``monitor_every`` epochs and at the last epoch, a fixed, seeded sample of
held-out slices (:func:`monitor_sample`: up to ``per_dataset`` of each pool dataset, drawn from its validation
patients' slices, with its test patients' added when those are fewer; the slices pretraining itself uses) is
embedded with the encoder being trained: z = ``embed(encode(x))``, the latent
vector the method heads read, then l2-normalised. Logged (``log.csv``, the job log, ``progress.png``):

* ``knn_task``, ``knn_group``: leave-one-out k-nearest-neighbour accuracy (cosine similarity, majority vote,
  ties to the nearest; k = 20, or one less than the smallest class's count in the sample, so that a perfect
  representation can score 1) of the HSSL task id (the pool dataset a slice comes from) and of the group id,
  for pools with more than one task or group: the online probe of solo-learn and lightly, so a useless
  representation shows after the first epochs, not after finetuning. Chance is the largest class share.
* ``embed_std``: the mean over dimensions of the standard deviation of z across the sample, SimSiam's collapse
  criterion: about 1/sqrt(d) for embeddings spread over the sphere, 0 for a collapsed encoder that maps every
  image to one point. A warning names the epoch when ``embed_std * sqrt(d)`` falls below
  :data:`COLLAPSE_RATIO` after training began (a randomly initialised encoder often maps images close together).

The monitor runs in eval mode under ``no_grad`` and draws no random numbers, so training is the same with it
or without it (bit for bit on the CPU); the model goes back to train mode after.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

log = logging.getLogger("medssl.train")

K = 20
COLLAPSE_RATIO = 0.1  # embed_std * sqrt(d) below this: collapsed (isotropic spread is 1)
SAMPLE_SEED = 0
BATCH = 64


def monitor_sample(stores, rows_of, tasks: list[int], groups: list[int], per_dataset: int, seed: int = SAMPLE_SEED):
    """Images (N, 1, H, W) float32 and their task and group ids: up to ``per_dataset`` rows of each store,
    drawn without replacement from ``rows_of[i]`` with a generator seeded by ``seed`` (sorted, store order)."""
    rng = np.random.default_rng(seed)
    images, task, group = [], [], []
    for store, rows, t, g in zip(stores, rows_of, tasks, groups):
        rows = np.asarray(rows)
        if len(rows) == 0:
            continue
        pick = np.sort(rng.choice(rows, size=min(per_dataset, len(rows)), replace=False))
        images.append(np.asarray(store.images[pick], dtype=np.float32)[:, None])
        task += [t] * len(pick)
        group += [g] * len(pick)
    if not images:
        return np.zeros((0, 1, 1, 1), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(images), np.asarray(task), np.asarray(group)


def knn_accuracy(z: torch.Tensor, labels: np.ndarray, k: int = K) -> float:
    """Leave-one-out kNN accuracy of ``labels`` from l2-normalised embeddings ``z`` (N, d): each sample's k
    most cosine-similar others vote (k at most one less than the smallest class's count); ties go to the class
    of the most similar voter."""
    n = len(labels)
    smallest = int(np.unique(labels, return_counts=True)[1].min())
    k = max(1, min(k, smallest - 1, n - 1))
    sim = z @ z.T
    sim.fill_diagonal_(-math.inf)
    idx = sim.topk(k, dim=1).indices.cpu().numpy()
    votes = labels[idx]  # (N, k), most similar first
    correct = 0
    for i in range(n):
        values, counts = np.unique(votes[i], return_counts=True)
        best = values[counts == counts.max()]
        pred = best[0] if len(best) == 1 else next(v for v in votes[i] if v in best)
        correct += int(pred == labels[i])
    return correct / n


@torch.no_grad()
def embed(backbone, images: np.ndarray, device, prepare=None) -> torch.Tensor:
    """l2-normalised ``embed(encode(x))`` of ``images`` (N, 1, H, W), in eval mode; the mode is restored."""
    was = backbone.training
    backbone.eval()
    out = []
    try:
        for i in range(0, len(images), BATCH):
            x = torch.from_numpy(images[i:i + BATCH]).to(device)
            if prepare is not None:
                x = prepare(x)
            out.append(backbone.embed(backbone.encode(x)).float())
    finally:
        backbone.train(was)
    return torch.nn.functional.normalize(torch.cat(out), dim=1)


class RepresentationMonitor:
    """Embeds the sample and returns the monitor's columns (module docstring)."""

    def __init__(self, backbone, images: np.ndarray, task: np.ndarray, group: np.ndarray, *, device,
                 every: int, epochs: int, prepare=None):
        self.backbone, self.images, self.device, self.prepare = backbone, images, device, prepare
        self.labels = {name: ids for name, ids in (("knn_task", task), ("knn_group", group))
                       if len(np.unique(ids)) > 1}
        self.every, self.epochs = int(every), int(epochs)

    def due(self, epoch: int) -> bool:
        return len(self.images) > 1 and (epoch == 0 or epoch == self.epochs or epoch % self.every == 0)

    def __call__(self, epoch: int) -> dict:
        if not self.due(epoch):
            return {}
        z = embed(self.backbone, self.images, self.device, self.prepare)
        row = {name: knn_accuracy(z, ids) for name, ids in self.labels.items()}
        std = float(z.std(dim=0, unbiased=False).mean())
        row["embed_std"] = std
        if epoch > 0 and std * math.sqrt(z.shape[1]) < COLLAPSE_RATIO:  # an untrained encoder need not spread
            log.warning("epoch %d: the representation has collapsed: embedding spread %.4g, below %.2g of an "
                        "isotropic one (%.4g); every image maps to nearly one point", epoch, std, COLLAPSE_RATIO,
                        1 / math.sqrt(z.shape[1]))
        return row

    def chance(self) -> dict:
        """The largest class share of each label: what a kNN accuracy must clear to mean anything."""
        return {name: float(np.bincount(ids).max() / len(ids)) for name, ids in self.labels.items()}
