"""Atomic, safe checkpoint files and config hashing.

``checkpoint.pt`` (resume state, written by :mod:`medssl.train.loop`) is a dict::

    format: 1, kind: "pretrain" | "finetune", epoch: last completed epoch, step: optimiser steps so far,
    module: state_dict of the trained module (pretraining: method incl. ``backbone.*``; finetuning: model),
    optimizer, scheduler: their state_dicts, rng: python/numpy/torch(/cuda) states (plain values and
    tensors, see :func:`medssl.train.seeding.get_rng_state`), config_hash: hash of the settings that must
    not change across a resume, log: the rows of log.csv so far, extra: stage-specific state (finetuning:
    best model + score)

``model.pt`` / ``epoch<E>.pt`` hold ``{"state_dict": <SegNet state_dict>, **metadata}`` (see
:func:`save_model`); :func:`load_state_dict` also accepts a bare state_dict.

Safety: every file is read with ``torch.load(weights_only=True)``, so a model or checkpoint file can hold
only tensors and plain values (dict, list, tuple, str, int, float, bool, None) and no code in it runs; a file
holding anything else is refused with :class:`UnsafeFileError`. :func:`save` converts numpy scalars and
arrays (to Python numbers and tensors) and refuses any other object, so medssl never writes a file it
cannot load. Files are written through an open file object, so the bytes of ``model.pt`` depend only on
its content (byte-reproducible for a seed on CPU), never on the temporary file name.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections import OrderedDict
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from medssl.io import atomic_path

FORMAT = 1


_PLAIN = (bool, int, float, str, bytes, type(None))


class CheckpointError(ValueError):
    """A model or checkpoint file that cannot be used; the message names the file."""


class UnsafeFileError(CheckpointError):
    """The file holds objects other than tensors and plain values (e.g. a pickled code payload)."""


class ModelMismatchError(CheckpointError):
    """A model file was written for another stage, architecture, dataset, run or class count."""


def plain(obj: Any, where: str = "value") -> Any:
    """``obj`` with numpy scalars/arrays turned into Python numbers/tensors and paths into strings.

    Raises :class:`TypeError` naming the key path (``where``) for anything ``torch.load(weights_only=True)``
    would refuse.
    """
    if type(obj) in _PLAIN:  # exact types: numpy.float64 subclasses float but pickles as a numpy object
        return obj
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (torch.Size, torch.dtype)):
        return obj
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, dict):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where}: key {k!r} ({type(k).__name__}) cannot be stored in a model file")
            out[k] = plain(v, f"{where}/{k}" if where != "value" else str(k))
        return out
    if isinstance(obj, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored in a model "
                    f"file (only tensors and plain values, which torch.load(weights_only=True) accepts)")


def save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` of :func:`plain` ``(obj)`` through a temporary file renamed into place (never a
    half-written file). The archive is written to an open file, so its bytes do not depend on file names."""
    path = Path(path)
    obj = plain(obj)
    with atomic_path(path, suffix=".pt") as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    return path


def load(path: str | Path, map_location="cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values only, no code runs.

    :class:`UnsafeFileError` when the file holds anything else, :class:`CheckpointError` when it is not a
    readable torch file (truncated, corrupt, another format); both name the file.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        what = f" (it refers to {found.group(1)})" if found else ""
        raise UnsafeFileError(
            f"{path}: refused to load: the file holds objects other than tensors and plain values{what}. "
            f"medssl loads model and checkpoint files with torch.load(weights_only=True), so no code in them "
            f"runs; use a file written by medssl (files of older medssl versions must be re-created)") from None
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable torch file (truncated or corrupt?): "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


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


def check_model(meta: dict, path: str | Path, **expected) -> None:
    """Refuse (:class:`ModelMismatchError`) a model whose metadata differ from ``expected``.

    ``expected`` maps metadata keys (e.g. ``kind``, ``arch``, ``dataset``, ``run``, ``out_channels``) to the
    values the caller needs; the message names the file and every key that differs (a missing key differs).
    """
    if not meta or "kind" not in meta:
        raise ModelMismatchError(f"{path}: no medssl metadata (a bare state_dict or a foreign file?); expected "
                                 f"a model.pt written by medssl with "
                                 + ", ".join(f"{k}={v!r}" for k, v in expected.items()))
    diffs = []
    for key, want in expected.items():
        have = meta.get(key, "<missing>")
        same = have == want or (have is not None and want is not None and str(have) == str(want))
        if not same:
            diffs.append(f"{key} is {have!r}, expected {want!r}")
    if diffs:
        raise ModelMismatchError(f"{path} does not fit: " + "; ".join(diffs))


def config_hash(*parts: Any) -> str:
    """Stable short hash of JSON-serialisable settings."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
