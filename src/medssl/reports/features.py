"""Features for the t-SNE figure (HSSL Fig. 3b), decoupled from the models.

A features file (``.npz``) holds one ``(N, d)`` array per feature name, ``task (N,)`` and ``group (N,)``
(integer ids), and optionally ``task_labels``/``group_labels`` (display names indexed by id),
``feature_order`` (names in plotting order) and ``synthetic`` (bool). The step that writes it
(:func:`medssl.reports.extract.extract_features`) calls :func:`compute_features` with one numpy callable per
feature (the generic baseline below, and the pretrained method's projection heads) and :func:`save_features`::

    from medssl.reports.features import compute_features, generic_extractor, save_features
    name, generic = generic_extractor("vgg19", "resources/weights/vgg19-dcbb9e9d.pth")
    feats = compute_features(images, {name: generic, "F_task": task_head})  # images (N, 1, H, W), float
    save_features(path, feats, task, group, task_labels=[...], group_labels=[...], synthetic=True)

The paper's generic baseline (Figure 3b's first panel) is ImageNet VGG-19 features (:data:`VGG_NAME`), from
torchvision's published weight file, which the workflow fetches as it fetches the datasets and checks by its
SHA-256 (:mod:`medssl.data.weights`; the report block's ``generic: vgg19``, the default). ``generic: pixels``
(the demo's: no 548 MB download for a synthetic run) draws ``pixel_features`` (down-sampled intensities)
instead, under the name :data:`PIXELS_NAME`, which the panel title shows. VGG-19 features are the last convolutional
block's output (``features``, 512 channels) globally average-pooled, on the grey slice repeated to 3 channels,
resized to 224 x 224 and normalised with the ImageNet mean and std: a 512-d descriptor that, unlike the
4096-d fc7 layer, does not depend on the 224-px input size the classifier layers were trained for (the paper
does not say which VGG layer it used).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from medssl.io import atomic_path

RESERVED = {"task", "group", "task_labels", "group_labels", "feature_order", "synthetic"}
Extractor = Callable[[np.ndarray], np.ndarray]

VGG_NAME = "VGG-19 (ImageNet)"
PIXELS_NAME = "down-sampled pixels (generic: pixels, not the paper's VGG-19)"
GENERIC = ("vgg19", "pixels")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

log = logging.getLogger("medssl.reports")


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


def load_vgg19(path: str | Path):
    """torchvision's VGG-19 with the weights in ``path`` (evaluation mode, no download)."""
    import torch

    from medssl._torchvision import import_torchvision

    model = import_torchvision().models.vgg19(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def vgg_features(model, *, device: str = "cpu", size: int = 224) -> Extractor:
    """Numpy extractor: ``model.features`` on ImageNet-normalised 3-channel ``size`` px copies of the slices,
    globally average-pooled (module docstring)."""
    import torch
    import torch.nn.functional as F

    model = model.to(device).eval()
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
        if x.ndim == 3:
            x = x[:, None]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
        with torch.no_grad():
            f = model.features((x - mean) / std)
        return f.mean(dim=(2, 3)).cpu().numpy()

    return fn


def generic_extractor(kind: str, weights: str | Path | None = None, *, device: str = "cpu") -> tuple[str, Extractor]:
    """``(name, extractor)`` for Figure 3b's first panel: ``vgg19`` (ImageNet VGG-19 features from the weight file
    ``weights``, checked by its SHA-256) or ``pixels`` (module docstring)."""
    if kind == "pixels":
        return PIXELS_NAME, pixel_features
    if kind != "vgg19":
        raise ValueError(f"unknown generic features {kind!r}; known: {', '.join(GENERIC)}")
    if weights is None:
        raise ValueError("generic: vgg19 needs the VGG-19 weight file (--vgg19; the workflow fetches it)")
    from medssl.data.weights import VGG19, check_weights

    return VGG_NAME, vgg_features(load_vgg19(check_weights(VGG19, weights)), device=device)


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
