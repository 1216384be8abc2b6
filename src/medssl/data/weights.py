"""Published network weights a study reads, fetched as the datasets are: downloaded once into
``<resources>/weights/``, their SHA-256 checked before use, or placed by hand on an offline cluster.

The one such file is torchvision's ImageNet VGG-19 (:data:`VGG19`), the generic features of paper A's
Figure 3b (``reports: {hssl_fig3b_tsne: {generic: vgg19}}``, :mod:`medssl.reports.features`). torchvision names
its weight files by the first 8 hex digits of their SHA-256 (``vgg19-dcbb9e9d.pth``) and checks them the same
way (``torch.hub.load_state_dict_from_url(check_hash=True)``); so does :func:`fetch_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medssl.data.download import ChecksumError, DownloadError, download_file, file_digest


@dataclass(frozen=True)
class Weights:
    name: str
    file: str  # its name under <resources>/weights/ (and in torch's hub cache)
    url: str
    sha256: str  # leading hex digits of the file's SHA-256
    size: str  # for the instructions


VGG19 = Weights("vgg19", "vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                "dcbb9e9d", "548 MB")
WEIGHTS = {w.name: w for w in (VGG19,)}


def weights_path(resources: str | Path, weights: Weights) -> Path:
    return Path(resources) / "weights" / weights.file


def fetch_weights(weights: Weights, dest: str | Path, **download_kw) -> Path:
    """``dest``, downloaded from ``weights.url`` unless a file with the right SHA-256 is already there; the
    SHA-256 is checked either way. Offline: a :class:`DownloadError` saying where to put the file by hand."""
    dest = Path(dest)
    try:
        return download_file(weights.url, dest, sha256=weights.sha256, **download_kw)
    except (DownloadError, ChecksumError) as err:
        hub = Path("~/.cache/torch/hub/checkpoints") / weights.file
        raise DownloadError(
            f"{weights.name} weights: {err}. Offline? Download {weights.url} ({weights.size}) elsewhere, or copy "
            f"{hub} from a machine where torchvision loaded them, and put the file at {dest.resolve()} (its "
            f"SHA-256 must start with {weights.sha256}); then run snakemake again") from None


def check_weights(weights: Weights, path: str | Path) -> Path:
    """``path`` when its SHA-256 starts with the published digits, else ``ValueError`` naming the file."""
    path = Path(path)
    actual = file_digest(path, "sha256")
    if not actual.startswith(weights.sha256):
        raise ValueError(f"{path}: SHA-256 {actual[:16]}... is not torchvision's {weights.file} ({weights.sha256}...)")
    return path
