"""Finding and reading evaluation outputs (``<study>/metrics/<run>/<D>/<ratio>/seed<N>.json`` and
``seed<N>_pred.npz``) for the report builders.

Builders accept either the experiment's results folder (``results/<exp>``) or an explicit list of files
(Snakemake's ``input``); files are recognised by their path suffix. A required file that is not there is
named in the error.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from medssl.layout import Layout

Key = tuple[str, str, str, str, int]  # study, run, dataset, ratio, seed

_PATH_RE = re.compile(r"(?:^|/)(?P<study>[^/]+)/metrics/(?P<run>[^/]+)/(?P<dataset>[^/]+)/(?P<ratio>[^/]+)/"
                      r"seed(?P<seed>\d+)(?P<kind>\.json|_pred\.npz)$")


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


def parse_metrics_path(path: str | os.PathLike) -> tuple[Key, str] | None:
    m = _PATH_RE.search(Path(path).as_posix())
    if not m:
        return None
    kind = "json" if m["kind"] == ".json" else "pred"
    return (m["study"], m["run"], m["dataset"], m["ratio"], int(m["seed"])), kind


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
        files = {}
        for p in inputs_list:
            parsed = parse_metrics_path(p)
            if parsed is not None:
                files[parsed] = Path(p)
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
