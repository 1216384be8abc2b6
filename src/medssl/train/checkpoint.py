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
holding anything else is refused with :class:`UnsafeFileError`. A file that is no torch file at all (e.g. a
text file given as a model) or a damaged one is refused with :class:`CheckpointError` saying so, never
called unsafe.

Damage: ``torch.load`` does not check the CRC-32 sums its zip archive carries, so a changed byte in tensor
data loads silently. :func:`load_checkpoint` (the resume state, the job's own scratch file) checks them
(:func:`verify_zip`) and the state's structure (:func:`check_resume_state`); the training loop starts afresh
on any :class:`CheckpointError` it raises. :func:`save` converts numpy scalars and
arrays (to Python numbers and tensors) and refuses any other object, so medssl never writes a file it
cannot load. Files are written through an open file object, so the bytes of ``model.pt`` depend only on
its content (byte-reproducible for a seed on CPU), never on the temporary file name.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
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


# The first bytes of a torch file: a zip archive (torch >= 1.6) or a pickle (the legacy format, protocol 2).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
# Phrases of torch's weights-only unpickler when a file names a global it will not load: unsafe content,
# as opposed to a damaged pickle stream (any other UnpicklingError).
_UNSAFE = ("Unsupported global", "unsupported class", "unrecognized function", "Can only create new object")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line.split(". This is an internal miniz error")[0]  # torch's long advice for a damaged zip


def _not_torch(path: Path) -> CheckpointError | None:
    """A :class:`CheckpointError` when ``path`` does not begin like any torch file, else None."""
    with open(path, "rb") as f:
        head = f.read(16)
    if any(head.startswith(m) for m in _TORCH_MAGIC):
        return None
    text = head.decode("utf-8", errors="replace").rstrip("\ufffd")  # a character cut at byte 16 is fine
    if not head:
        what = "an empty file"
    elif text and "\ufffd" not in text and all(c.isprintable() or c.isspace() for c in text):
        what = "it looks like a text file"
    else:
        what = f"it begins with {head[:8]!r}"
    return CheckpointError(f"{path}: not a torch file ({what}); expected a file written by torch.save, "
                           f"e.g. a medssl model.pt")


def load(path: str | Path, map_location="cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values only, no code runs.

    :class:`UnsafeFileError` when the file holds anything else, :class:`CheckpointError` when it is not a
    torch file at all ("not a torch file": e.g. a text file) or not a readable one (truncated, corrupt); all
    name the file in one line. A missing file raises :class:`FileNotFoundError`.
    """
    path = Path(path)
    refused = _not_torch(path)  # FileNotFoundError / IsADirectoryError pass through
    if refused is not None:
        raise refused
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found is None and not any(p in str(err) for p in _UNSAFE):
            raise CheckpointError(f"{path}: not a readable torch file (truncated or corrupt?): "
                                  f"{_first_line(err)}") from None
        what = f" (it refers to {found.group(1)})" if found else ""
        raise UnsafeFileError(
            f"{path}: refused to load: the file holds objects other than tensors and plain values{what}. "
            f"medssl loads model and checkpoint files with torch.load(weights_only=True), so no code in them "
            f"runs; use a file written by medssl (files of older medssl versions must be re-created)") from None
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged file raises anything (KeyError, OverflowError, ...)
        raise CheckpointError(f"{path}: not a readable torch file (truncated or corrupt?): "
                              f"{type(err).__name__}: {_first_line(err)}") from None


def verify_zip(path: str | Path) -> None:
    """Check the CRC-32 of every record of the torch file ``path`` (a zip archive); :class:`CheckpointError`
    naming the file and the record on a mismatch or a damaged archive.

    ``torch.load`` reads the records without checking their sums, so a changed byte in tensor data would load
    as a silently different number. medssl writes every file with torch's default (sums computed).
    """
    path = Path(path)
    refused = _not_torch(path)
    if refused is not None:
        raise refused
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except OSError:
        raise  # the disk, not the file: say so as it is
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, struct.error, ... of a damaged archive
        raise CheckpointError(f"{path}: not a readable torch file (truncated or corrupt?): "
                              f"{type(err).__name__}: {_first_line(err)}") from None
    if bad is not None:
        raise CheckpointError(f"{path}: damaged: the checksum of its record {bad!r} does not match")


def _is_int(v) -> bool:
    return type(v) is int and v >= 0


def check_resume_state(state: Any, path: str | Path) -> dict:
    """``state`` if it has the structure of a ``checkpoint.pt`` (module docstring), else
    :class:`CheckpointError` naming ``path`` and what is wrong. Values are checked for type, not content
    (whether the module's tensors fit the model is for ``load_state_dict`` to say)."""
    def fail(why: str):
        raise CheckpointError(f"{path}: not a medssl checkpoint ({why})")

    if not isinstance(state, dict):
        fail(f"it holds a {type(state).__name__}, not a dict")
    missing = [k for k in ("format", "kind", "epoch", "step", "module", "optimizer", "rng", "config_hash")
               if k not in state]
    if missing:
        fail(f"missing {', '.join(missing)}")
    if state["format"] != FORMAT:
        fail(f"format {state['format']!r}, this medssl writes {FORMAT}")
    if not (_is_int(state["epoch"]) and _is_int(state["step"])):
        fail(f"epoch {state['epoch']!r} / step {state['step']!r} are not counts")
    module = state["module"]
    if not (isinstance(module, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in module.items())):
        fail("module is not a state_dict of tensors")
    opt = state["optimizer"]
    if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict)
            and isinstance(opt.get("param_groups"), list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"])):
        fail("optimizer is not an optimizer state_dict")
    if not (state.get("scheduler") is None or isinstance(state["scheduler"], dict)):
        fail("scheduler is not a state_dict")
    rng = state["rng"]
    if not (isinstance(rng, dict) and {"python", "numpy", "torch"} <= rng.keys() and torch.is_tensor(rng["torch"])):
        fail("rng lacks the python, numpy and torch states")
    gens = state.get("generators", [])
    if not (isinstance(gens, list) and all(torch.is_tensor(g) for g in gens)):
        fail("generators is not a list of generator states")
    log_rows = state.get("log", [])
    if not (isinstance(log_rows, list) and all(isinstance(r, dict) for r in log_rows)):
        fail("log is not a list of rows")
    if not isinstance(state.get("extra", {}), dict):
        fail("extra is not a dict")
    return state


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The resume state in ``path`` (a ``checkpoint.pt``): checksums verified (:func:`verify_zip`), loaded
    safely (:func:`load`) and its structure checked (:func:`check_resume_state`). Any problem raises
    :class:`CheckpointError` naming the file and why (a missing file: :class:`FileNotFoundError`)."""
    verify_zip(path)
    return check_resume_state(load(path, map_location=map_location), path)


def cpu_state_dict(module: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def save_model(path: str | Path, state_dict: dict, **metadata) -> Path:
    return save({"state_dict": state_dict, **metadata}, path)


def load_state_dict(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, metadata) of a model file (``model.pt``/``epoch<E>.pt``) or a bare state_dict.

    A torch file holding no state_dict (a dict of tensors) is refused with :class:`CheckpointError`."""
    obj = load(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        state, meta = obj["state_dict"], {k: v for k, v in obj.items() if k != "state_dict"}
    elif isinstance(obj, dict) and "module" in obj and "format" in obj:  # a checkpoint.pt
        state, meta = obj["module"], {"kind": obj.get("kind"), "epoch": obj.get("epoch")}
    else:
        state, meta = obj, {}
    if not (isinstance(state, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items())):
        raise CheckpointError(f"{path}: not a model file: it holds a {type(state).__name__}, not a state_dict "
                              f"(a dict of tensors)")
    return state, meta


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
