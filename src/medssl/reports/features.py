"""Features for the t-SNE figure (HSSL Fig. 3b), decoupled from the models.

A features file (``.npz``) holds one ``(N, d)`` array per feature name, ``task (N,)`` and ``group (N,)``
(integer ids), and optionally ``task_labels``/``group_labels`` (display names indexed by id),
``feature_order`` (names in plotting order) and ``synthetic`` (bool). The step that writes it calls
:func:`compute_features` with one callable per feature and :func:`save_features`::

    from medssl.reports.features import compute_features, embedding_extractors, pixel_features, save_features
    ex = {"raw pixels": pixel_features,
          **embedding_extractors(method.backbone, {"F_image": method.<image head>, "F_task": method.<task head>,
                                                   "F_group": method.<group head>})}
    feats = compute_features(images, ex)                 # images (N, H, W) or (N, 1, H, W), float
    save_features(path, feats, task, group, task_labels=[...], group_labels=[...], synthetic=True)

The paper's generic baseline is ImageNet VGG-19 features; ``pixel_features`` (down-sampled intensities) is the
offline stand-in, and any callable (e.g. a VGG-19 with local weights) can be passed under another name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from medssl.io import atomic_path

RESERVED = {"task", "group", "task_labels", "group_labels", "feature_order", "synthetic"}
Extractor = Callable[[np.ndarray], np.ndarray]


def pixel_features(images: np.ndarray, size: int = 16) -> np.ndarray:
    """Generic baseline feature: intensities block-averaged to ``size x size`` (B, size*size)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4:
        x = x[:, 0]
    b, h, w = x.shape
    fh, fw = max(h // size, 1), max(w // size, 1)
    x = x[:, : fh * (h // fh), : fw * (w // fw)]
    x = x.reshape(b, h // fh, fh, w // fw, fw).mean(axis=(2, 4))
    return x.reshape(b, -1)


def compute_features(images: np.ndarray, extractors: Mapping[str, Extractor], *, batch_size: int = 64
                     ) -> dict[str, np.ndarray]:
    """Apply each extractor batch-wise to ``images`` (N, H, W) or (N, 1, H, W); returns {name: (N, d)}."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    out: dict[str, list[np.ndarray]] = {name: [] for name in extractors}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        for name, fn in extractors.items():
            f = np.asarray(fn(batch), dtype=np.float32)
            out[name].append(f.reshape(len(batch), -1))
    return {name: np.concatenate(parts) if parts else np.zeros((0, 0), np.float32) for name, parts in out.items()}


def embedding_extractors(backbone, heads: Mapping[str, Callable] | None = None, *, include_latent: bool = False,
                         device: str = "cpu") -> dict[str, Extractor]:
    """Numpy callables on a SegNet (contract: ``embed(encode(x))``), optionally followed by projection heads.

    ``heads`` maps a feature name (e.g. ``F_task``) to a module applied to the latent vector; with
    ``include_latent`` the latent itself is added as ``latent``.
    """
    import torch

    def wrap(head):
        def fn(batch: np.ndarray) -> np.ndarray:
            was_training = backbone.training
            backbone.eval()
            with torch.no_grad():
                x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
                z = backbone.embed(backbone.encode(x))
                if head is not None:
                    z = head(z)
            backbone.train(was_training)
            return z.detach().cpu().float().numpy()
        return fn

    ex = {"latent": wrap(None)} if include_latent else {}
    for name, head in (heads or {}).items():
        ex[name] = wrap(head)
    return ex


def save_features(path: str | Path, features: Mapping[str, np.ndarray], task: Sequence[int], group: Sequence[int], *,
                  task_labels: Sequence[str] | None = None, group_labels: Sequence[str] | None = None,
                  synthetic: bool = False) -> None:
    bad = RESERVED & set(features)
    if bad:
        raise ValueError(f"feature names {sorted(bad)} are reserved")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in features.items()}
    n = len(task)
    for k, v in arrays.items():
        if v.ndim != 2 or len(v) != n:
            raise ValueError(f"feature {k!r}: expected shape (N={n}, d), got {v.shape}")
    extra = {"task": np.asarray(task, dtype=np.int64), "group": np.asarray(group, dtype=np.int64),
             "feature_order": np.asarray(list(features), dtype=str), "synthetic": np.asarray(bool(synthetic))}
    if task_labels is not None:
        extra["task_labels"] = np.asarray(list(task_labels), dtype=str)
    if group_labels is not None:
        extra["group_labels"] = np.asarray(list(group_labels), dtype=str)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays, **extra)


def load_features(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict]:
    """(features in plotting order, task, group, meta{task_labels, group_labels, synthetic})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file missing: {path} (written by the feature-extraction step)")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for key in ("task", "group"):
        if key not in data:
            raise ValueError(f"{path}: no '{key}' array")
    order = [str(x) for x in data["feature_order"]] if "feature_order" in data else \
        [k for k in data if k not in RESERVED]
    feats = {k: data[k] for k in order}
    meta = {"task_labels": [str(x) for x in data["task_labels"]] if "task_labels" in data else None,
            "group_labels": [str(x) for x in data["group_labels"]] if "group_labels" in data else None,
            "synthetic": bool(data["synthetic"]) if "synthetic" in data else None}
    return feats, data["task"].astype(int), data["group"].astype(int), meta


def subsample(task: np.ndarray, per_task: int, seed: int = 0) -> np.ndarray:
    """Indices with at most ``per_task`` samples of each task (deterministic)."""
    rng = np.random.default_rng(seed)
    keep = []
    for t in np.unique(task):
        idx = np.flatnonzero(task == t)
        if len(idx) > per_task:
            idx = np.sort(rng.choice(idx, per_task, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def tsne_embed(x: np.ndarray, *, perplexity: float = 30.0, seed: int = 0, threads: int = 1) -> np.ndarray:
    """2-D t-SNE (PCA to 50 dims first when wider); perplexity clamped below N/3."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 3:
        return np.zeros((n, 2))
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    if x.shape[1] > 50 and n > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    from threadpoolctl import threadpool_limits

    perp = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
    with threadpool_limits(limits=threads):  # OpenMP oversubscription on shared cores is ~20x slower
        return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed, learning_rate="auto"
                    ).fit_transform(x)
