"""Where a dataset's volumes live and how to get them there, for real data and synthetic twins alike.

- ``config["synthetic"]`` true: every dataset is its phantom twin in MSD layout under
  ``<resources>/synthetic/<name>/`` (written by a separate workflow rule).
- URL sources (MSD tasks): ``<resources>/raw/<root>/`` after :func:`~medssl.data.download.fetch_url_source`.
- Manual sources (ACDC, M&Ms, OAI-ZIB, MM-WHS): ``<resources>/raw/<root>/`` placed by the user, checked by
  :func:`~medssl.data.manual.check_manual_source`.
- Datasets declared with a ``path`` in the config (:func:`medssl.registry.spec_from_config`): that folder,
  read in place and checked by :func:`check_local_source`; nothing is downloaded or written there.
"""

from __future__ import annotations

from pathlib import Path

from medssl import registry
from medssl.data.cases import Case
from medssl.data.listers import list_cases
from medssl.data.download import MARKER, fetch_url_source
from medssl.data.manual import check_manual_source, manual_problem

__all__ = ["resources_dir", "source_root", "source_layout", "ready_marker", "prepare_source",
           "list_source_cases", "check_local_source", "pending_manual_instructions"]


def resources_dir(config: dict) -> Path:
    return Path(config.get("resources", "resources"))


def _synthetic(config: dict) -> bool:
    return bool(config.get("synthetic", False))


def source_root(config: dict, name: str) -> Path:
    """Folder holding dataset ``name``'s volumes (synthetic twin or real source)."""
    if _synthetic(config):
        return resources_dir(config) / "synthetic" / name
    spec = registry.get(name, config)
    if isinstance(spec.source, registry.LocalSource):
        return Path(spec.source.path).expanduser()
    return resources_dir(config) / "raw" / spec.source.root


def source_layout(config: dict, name: str) -> str:
    """Case-lister layout: ``"msd"`` for synthetic twins, else the registry entry's layout."""
    return "msd" if _synthetic(config) else registry.get(name, config).layout


def ready_marker(config: dict, name: str) -> Path:
    """The file proving the source is in place: ``dataset.json`` of a twin or of a dataset declared with a
    ``path`` in MSD layout (the folder itself in another layout), else ``<root>/.medssl_ready``."""
    root = source_root(config, name)
    if _synthetic(config):
        return root / "dataset.json"
    if registry.is_user_dataset(config, name):
        return root / "dataset.json" if source_layout(config, name) == "msd" else root
    return root / MARKER


def prepare_source(config: dict, name: str, **download_kw) -> Path:
    """Make sure dataset ``name`` is on disk and return its root.

    URL sources are downloaded and extracted (idempotent), manual sources are checked
    (:class:`~medssl.data.manual.ManualDatasetMissing` with instructions when absent); a synthetic twin
    must already exist (another workflow rule writes it), else :class:`FileNotFoundError`.
    """
    spec = registry.get(name, config)
    if _synthetic(config):
        root = source_root(config, name)
        if not (root / "dataset.json").exists():
            raise FileNotFoundError(
                f"synthetic twin of {name} not found at {root.resolve()} (no dataset.json); it is written "
                f"by the workflow's synthetic-data rule"
            )
        return root
    if isinstance(spec.source, registry.LocalSource):
        return check_local_source(spec)
    if isinstance(spec.source, registry.UrlSource):
        return fetch_url_source(spec, resources_dir(config), **download_kw)
    return check_manual_source(spec, resources_dir(config))


def check_local_source(spec: registry.DatasetSpec) -> Path:
    """Check a dataset declared with a ``path``: the folder exists and every listed case's image and label
    file is there (:class:`FileNotFoundError` naming the first missing one). Returns the folder."""
    root = Path(spec.source.path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {spec.name}: folder {root.resolve()} (config key "
                                f"'datasets/{spec.name}/path') does not exist")
    cases = list_cases(spec, root)
    for case in cases:
        for what, path in (("image", case.image), ("label", case.label)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"dataset {spec.name}: {what} of case {case.case_id} not found at {path}")
    return root


def list_source_cases(config: dict, name: str) -> list[Case]:
    """Cases of dataset ``name`` from its source root, with the right lister."""
    spec = registry.get(name, config)
    return list_cases(spec, source_root(config, name), layout=source_layout(config, name))


def pending_manual_instructions(config: dict) -> str:
    """Placement instructions of every manual dataset of ``config`` that is not (completely) in place, or ""
    (also for synthetic configs). Writes nothing; for the workflow to print on the console, since a fetch
    job's own message goes to its log file."""
    if _synthetic(config):
        return ""
    texts = []
    for name in config["datasets"]:
        spec = registry.get(name, config)
        if isinstance(spec.source, registry.ManualSource):
            err = manual_problem(spec, resources_dir(config))
            if err is not None:
                texts.append(str(err))
    return "\n\n".join(texts)
