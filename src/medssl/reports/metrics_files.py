"""Finding and reading evaluation outputs (``<study>/metrics/<run>/<D>/<ratio>/seed<N>.json`` and
``seed<N>_pred.npz``) for the report builders.

Builders accept either the experiment's results folder (``results/<exp>``) or an explicit list of files
(Snakemake's ``input``). A listed file is keyed by what it holds, not by its path: a metrics JSON by its
``study``, ``run``, ``dataset``, ``ratio`` and ``seed`` fields, a predictions ``.npz`` by its ``key`` array
(files written before that array existed: by the metrics JSON beside them). So inputs may sit anywhere and
be named anyhow. A required file that is not there is named in the error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from medssl.layout import Layout

Key = tuple[str, str, str, str, int]  # study, run, dataset, ratio, seed


class MissingInputError(FileNotFoundError):
    """Required metrics/prediction files are absent; ``missing`` lists their paths."""

    def __init__(self, target: str, missing: Sequence[Path | str]):
        self.missing = [str(p) for p in missing]
        shown = "\n  ".join(self.missing[:20])
        more = f"\n  ... and {len(self.missing) - 20} more" if len(self.missing) > 20 else ""
        super().__init__(f"{target}: {len(self.missing)} required input file(s) missing:\n  {shown}{more}\n"
                         "(run the evaluation jobs, or pass allow_missing=True to print '—' cells)")


def relative_metrics_path(key: Key, kind: str = "json") -> Path:
    path = Layout.relative_metrics(*key)
    return path if kind == "json" else Layout.predictions(path)


def metrics_path(config: dict, key: Key, kind: str = "json") -> Path:
    """``results/<exp>/<study>/metrics/<run>/<D>/<ratio>/seed<N>.json`` (or ``_pred.npz``)."""
    return Layout.of(config).root / relative_metrics_path(key, kind)


_KEY_FIELDS = ("study", "run", "dataset", "ratio", "seed")


def _key_of(values, path) -> Key:
    try:
        study, run, dataset, ratio, seed = (str(v) for v in values)
        return study, run, dataset, ratio, int(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a medssl evaluation output (its study/run/dataset/ratio/seed are "
                         f"{list(values)!r})") from exc


def file_key(path: str | os.PathLike) -> tuple[Key, str] | None:
    """``(key, "json")`` for a metrics JSON, ``(key, "pred")`` for a predictions ``.npz``, from the file's
    contents (module docstring); None for other files. A metrics or predictions file without its key is an
    error naming it."""
    path = Path(path)
    if path.suffix == ".json":
        data = read_metrics(path)
        missing = [k for k in _KEY_FIELDS if k not in data]
        if missing:
            raise ValueError(f"{path}: not a medssl metrics file (no {', '.join(missing)})")
        return _key_of([data[k] for k in _KEY_FIELDS], path), "json"
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                key = npz["key"].tolist() if "key" in npz.files else None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable predictions file ({exc})") from exc
        if key is None:  # written before predictions carried their key: the metrics JSON beside it
            beside = Layout.metrics_beside(path)
            if beside is None or not beside.is_file():
                raise ValueError(f"{path}: a predictions file without its key, and no metrics file beside it "
                                 "(rerun its finetune job)")
            return file_key(beside)[0], "pred"
        return _key_of(key, path), "pred"
    return None


@dataclass
class MetricsSource:
    """Resolves keys to files: a results folder, or an explicit list of files."""

    config: dict
    root: Path | None = None
    files: dict | None = None  # (key, kind) -> Path

    @classmethod
    def from_inputs(cls, config: dict, inputs) -> "MetricsSource":
        if isinstance(inputs, MetricsSource):
            return inputs
        if isinstance(inputs, (str, os.PathLike)):
            inputs_list = [inputs]
        else:
            inputs_list = list(inputs)
        if len(inputs_list) == 1 and Path(inputs_list[0]).is_dir():
            return cls(config, root=Path(inputs_list[0]))
        files: dict = {}
        for p in inputs_list:
            found = file_key(p)
            if found is None:
                continue
            if found in files and Path(files[found]) != Path(p):
                raise ValueError(f"{p} and {files[found]} hold the same evaluation {found[0]} ({found[1]})")
            files[found] = Path(p)
        return cls(config, files=files)

    def path(self, key: Key, kind: str = "json") -> Path:
        if self.root is not None:
            return self.root / relative_metrics_path(key, kind)
        return self.files.get((key, kind)) or metrics_path(self.config, key, kind)

    def exists(self, key: Key, kind: str = "json") -> bool:
        if self.root is None and (key, kind) not in self.files:
            return False
        return self.path(key, kind).is_file()


def read_metrics(path: str | os.PathLike) -> dict:
    """A metrics JSON; non-finite numbers (NaN/Infinity, e.g. HD95 of an empty prediction) become None."""
    try:
        with open(path) as f:
            data = json.load(f, parse_constant=lambda c: None)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a metrics file must hold a JSON object")
    return data
