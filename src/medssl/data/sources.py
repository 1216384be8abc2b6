"""Where a dataset's volumes live and how to get them there, for real data and synthetic twins alike.

- A synthetic config: every dataset is its phantom twin in MSD layout, written by its own workflow rule under
  ``<resources>/synthetic/<name>/<digest>/`` (:meth:`medssl.layout.Layout.synthetic`); slicing reads it there.
- URL sources (MSD tasks): ``<resources>/raw/<root>/`` after :func:`~medssl.data.download.fetch_url_source`
  (a complete folder already extracted there, e.g. on an offline cluster, is used as it is, not downloaded).
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
from medssl.data.download import fetch_url_source
from medssl.data.manual import check_manual_source, manual_problem

__all__ = ["source_root", "prepare_source", "read_source", "check_local_source", "pending_manual_datasets",
           "pending_manual_instructions"]


def source_root(spec: registry.DatasetSpec, resources: str | Path) -> Path:
    """Folder holding a real dataset's volumes: its declared ``path``, else ``<resources>/raw/<root>``."""
    if isinstance(spec.source, registry.LocalSource):
        return Path(spec.source.path).expanduser()
    return Path(resources) / "raw" / spec.source.root


def prepare_source(spec: registry.DatasetSpec, resources: str | Path, **download_kw) -> Path:
    """Make sure a real dataset is on disk and return its root.

    URL sources are downloaded and extracted (idempotent), manual sources are checked
    (:class:`~medssl.data.manual.ManualDatasetMissing` with instructions when absent), datasets declared with
    a ``path`` are checked in place (:func:`check_local_source`).
    """
    if isinstance(spec.source, registry.LocalSource):
        return check_local_source(spec)
    if isinstance(spec.source, registry.UrlSource):
        return fetch_url_source(spec, resources, **download_kw)
    return check_manual_source(spec, resources)


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


def read_source(source: str | Path) -> Path:
    """The root of a slicing job's source: a synthetic twin's folder itself, or the root a fetch job recorded
    in its ready file (``{"dataset": ..., "root": ...}``)."""
    source = Path(source)
    if source.is_dir():
        return source
    from medssl.io import read_json

    root = read_json(source).get("root")
    if not isinstance(root, str):
        raise ValueError(f"{source}: not a ready file of a fetched dataset (no 'root')")
    return Path(root)


def pending_manual_datasets(config: dict) -> list[str]:
    """One line per manual dataset of the resolved ``config`` that is not (completely) in place: where to
    register and the folder to put it in. [] for synthetic configs. Writes nothing: for the workflow to print
    when it is parsed (a dry run shows what must be done by hand before anything runs)."""
    if config["synthetic"]:
        return []
    lines = []
    for name in config["datasets"]:
        spec = registry.get(name, config)
        if isinstance(spec.source, registry.ManualSource) and manual_problem(spec, config["resources"]) is not None:
            folder = (Path(config["resources"]) / "raw" / spec.source.root).resolve()
            lines.append(f"{name}: register at {spec.source.register_url}, download {spec.source.archive} and put "
                         f"it in {folder}")
    return lines


def pending_manual_instructions(config: dict) -> str:
    """Placement instructions of every manual dataset of the resolved ``config`` that is not (completely) in
    place, or "" (also for synthetic configs). Writes nothing; for the workflow to print on the console, since
    a fetch job's own message goes to its log file."""
    if config["synthetic"]:
        return ""
    texts = []
    for name in config["datasets"]:
        spec = registry.get(name, config)
        if isinstance(spec.source, registry.ManualSource):
            err = manual_problem(spec, config["resources"])
            if err is not None:
                texts.append(str(err))
    return "\n\n".join(texts)
