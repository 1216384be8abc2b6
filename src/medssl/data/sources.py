"""Where a dataset's volumes live and how to get them there, for real data and synthetic twins alike.

- ``config["synthetic"]`` true: every dataset is its phantom twin in MSD layout under
  ``<resources>/synthetic/<name>/`` (written by a separate workflow rule).
- URL sources (MSD tasks): ``<resources>/raw/<root>/`` after :func:`~medssl.data.download.fetch_url_source`.
- Manual sources (ACDC, M&Ms, OAI-ZIB, MM-WHS): ``<resources>/raw/<root>/`` placed by the user, checked by
  :func:`~medssl.data.manual.check_manual_source`.
"""

from __future__ import annotations

from pathlib import Path

from medssl import registry
from medssl.data import listers as _listers  # noqa: F401  (registers the non-MSD layouts)
from medssl.data.cases import Case, list_cases
from medssl.data.download import MARKER, fetch_url_source
from medssl.data.manual import check_manual_source

__all__ = ["resources_dir", "source_root", "source_layout", "ready_marker", "prepare_source",
           "list_source_cases"]


def resources_dir(config: dict) -> Path:
    return Path(config.get("resources", "resources"))


def _synthetic(config: dict) -> bool:
    return bool(config.get("synthetic", False))


def source_root(config: dict, name: str) -> Path:
    """Folder holding dataset ``name``'s volumes (synthetic twin or real source)."""
    if _synthetic(config):
        return resources_dir(config) / "synthetic" / name
    spec = registry.get(name)
    return resources_dir(config) / "raw" / spec.source.root


def source_layout(config: dict, name: str) -> str:
    """Case-lister layout: ``"msd"`` for synthetic twins, else the registry entry's layout."""
    return "msd" if _synthetic(config) else registry.get(name).layout


def ready_marker(config: dict, name: str) -> Path:
    """The file proving the source is in place: ``dataset.json`` of a twin, else ``<root>/.medssl_ready``."""
    root = source_root(config, name)
    return root / "dataset.json" if _synthetic(config) else root / MARKER


def prepare_source(config: dict, name: str, **download_kw) -> Path:
    """Make sure dataset ``name`` is on disk and return its root.

    URL sources are downloaded and extracted (idempotent), manual sources are checked
    (:class:`~medssl.data.manual.ManualDatasetMissing` with instructions when absent); a synthetic twin
    must already exist (another workflow rule writes it), else :class:`FileNotFoundError`.
    """
    spec = registry.get(name)
    if _synthetic(config):
        root = source_root(config, name)
        if not (root / "dataset.json").exists():
            raise FileNotFoundError(
                f"synthetic twin of {name} not found at {root.resolve()} (no dataset.json); it is written "
                f"by the workflow's synthetic-data rule"
            )
        return root
    if isinstance(spec.source, registry.UrlSource):
        return fetch_url_source(spec, resources_dir(config), **download_kw)
    return check_manual_source(spec, resources_dir(config))


def list_source_cases(config: dict, name: str) -> list[Case]:
    """Cases of dataset ``name`` from its source root, with the right lister."""
    spec = registry.get(name)
    return list_cases(spec, source_root(config, name), layout=source_layout(config, name))
