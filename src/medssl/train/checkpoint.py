"""Atomic checkpoint files and config hashing.

``checkpoint.pt`` (resume state, written by :mod:`medssl.train.loop`) is a dict::

    format: 1, kind: "pretrain" | "finetune", epoch: last completed epoch, step: optimiser steps so far,
    module: state_dict of the trained module (pretraining: method incl. ``backbone.*``; finetuning: model),
    optimizer, scheduler: their state_dicts, rng: python/numpy/torch(/cuda) states,
    config_hash: hash of the settings that must not change across a resume,
    log: the rows of log.csv so far, extra: stage-specific state (finetuning: best model + score)

``model.pt`` / ``epoch<E>.pt`` hold ``{"state_dict": <SegNet state_dict>, **metadata}`` (see
:func:`save_model`); :func:`load_state_dict` also accepts a bare state_dict.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from medssl.io import atomic_path

FORMAT = 1


def save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temporary file renamed into place (never a half-written file)."""
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)
    return path


def load(path: str | Path, map_location="cpu") -> Any:
    return torch.load(path, map_location=map_location, weights_only=False)


def cpu_state_dict(module: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def save_model(path: str | Path, state_dict: dict, **metadata) -> Path:
    return save({"state_dict": state_dict, **metadata}, path)


def load_state_dict(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, metadata) of a model file (``model.pt``/``epoch<E>.pt``) or a bare state_dict."""
    obj = load(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        return obj["state_dict"], meta
    if isinstance(obj, dict) and "module" in obj and "format" in obj:  # a checkpoint.pt
        return obj["module"], {"kind": obj.get("kind"), "epoch": obj.get("epoch")}
    return obj, {}


def config_hash(*parts: Any) -> str:
    """Stable short hash of JSON-serialisable settings."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
