"""Datasets behind a registration wall: check they were put in place, or say exactly how to do it.

The check and the case listers share one definition of the expected source format: a manual dataset is in place
when its source format's lister (:mod:`medssl.data.listers`) finds at least one complete case under
``resources/raw/<root>/`` (so ACDC's ``database/training/`` and M&Ms' ``OpenDataset/`` trees pass, and an
empty ``training/`` or an M&Ms tree without its info CSV does not). The lister's own complaint (the missing
file, the case) ends the instructions.

Every path in the instructions is under the actual resources folder (the config's ``resources:``, e.g.
``/scratch/res``), the note's too: a ``ManualSource.note`` writes ``{root}`` for ``<resources>/raw/<root>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from medssl.data.download import read_marker, write_marker
from medssl.data.listers import EXPECT_ALTERNATIVES, LISTERS

__all__ = ["ManualDatasetMissing", "check_manual_source", "manual_instructions", "manual_problem",
           "placement_note"]


class ManualDatasetMissing(FileNotFoundError):
    """A manual dataset is not (completely) in place; the message tells the user what to do."""

    def __init__(self, message: str, *, dataset: str, directory: Path, missing: list[str], problem: str = ""):
        super().__init__(message)
        self.dataset, self.directory, self.missing, self.problem = dataset, directory, missing, problem

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return self.args[0]


def _alternatives(spec, rel: str) -> tuple[str, ...]:
    """The accepted forms of ``expect`` entry ``rel`` (itself first), as the source format's lister reads them."""
    return tuple(EXPECT_ALTERNATIVES.get(spec.source_format, {}).get(rel, (rel,)))


def placement_note(spec, resources: str | os.PathLike) -> str:
    """``spec.source.note`` with ``{root}`` replaced by the absolute ``<resources>/raw/<root>`` folder."""
    root = (Path(resources) / "raw" / spec.source.root).resolve()
    return spec.source.note.replace("{root}", str(root))


def _missing(spec, root: Path) -> list[str]:
    """Entries of ``spec.source.expect`` of which no accepted form exists under ``root``."""
    return [rel for rel in spec.source.expect
            if not any((root / alt).exists() for alt in _alternatives(spec, rel))]


def manual_instructions(spec, resources: str | os.PathLike, missing: list[str] | None = None,
                        problem: str = "") -> str:
    """Human-readable placement instructions for ``spec`` (a :class:`~medssl.registry.ManualSource`)."""
    src = spec.source
    root = (Path(resources) / "raw" / src.root).resolve()
    missing = list(src.expect) if missing is None else missing
    lines = [
        f"Dataset '{spec.name}' ({spec.title}) needs a manual download (registration required).",
        f"  1. Register and download at: {src.register_url}",
        f"  2. Download: {src.archive}",
        f"  3. Unpack it into this exact directory: {root}",
    ]
    if src.note:
        lines.append(f"  Note: {placement_note(spec, resources)}")
    lines.append("  Expected inside that directory:")
    for rel in src.expect:
        state = "MISSING" if rel in missing else "ok"
        also = [alt for alt in _alternatives(spec, rel) if alt != rel]
        lines.append(f"    {root / rel}  [{state}]" + (f"  (or {', '.join(str(root / a) for a in also)})"
                                                          if also else ""))
    if problem:
        lines.append(f"  Problem: {problem}")
    lines.append("Then run the workflow again (or set `synthetic: true` to use the phantom twin).")
    return "\n".join(lines)


def check_manual_source(spec, resources: str | os.PathLike) -> Path:
    """Check ``resources/raw/<root>/`` holds the dataset (its ``expect`` entries, or their accepted
    alternatives, and at least one complete case as the source format's lister reads it); write the ready marker;
    return the root.

    Raises :class:`ManualDatasetMissing` naming the dataset title, the registration URL, the archive to
    download, the exact absolute directory to put it in, the note and the expected files. The marker
    ``<root>/.medssl_ready`` records ``{"dataset", "kind": "manual", "url" (registration page), "md5": null,
    "archive", "expect", "date"}``; an existing valid marker is left untouched.
    """
    from medssl.registry import ManualSource

    src = spec.source
    if not isinstance(src, ManualSource):
        raise TypeError(f"dataset {spec.name} is not a manual source (source: {type(src).__name__})")
    err = manual_problem(spec, resources)
    if err is not None:
        raise err
    root = Path(resources) / "raw" / src.root
    marker = read_marker(root)
    if not (marker and marker.get("kind") == "manual" and marker.get("dataset") == spec.name
            and marker.get("expect") == list(src.expect)):
        write_marker(root, dataset=spec.name, kind="manual", url=src.register_url, md5=None,
                     archive=src.archive, expect=list(src.expect))
    return root


def _lister_problem(spec, root: Path) -> str:
    """Why ``spec``'s source format lister finds no complete case under ``root`` ("" when it finds some)."""
    try:
        cases = LISTERS[spec.source_format](spec, root)
    except (OSError, KeyError, ValueError) as err:
        return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return "" if cases else f"no cases found under {root.resolve()}"


def manual_problem(spec, resources: str | os.PathLike) -> ManualDatasetMissing | None:
    """The :class:`ManualDatasetMissing` that :func:`check_manual_source` would raise, or None; writes
    nothing."""
    from medssl.registry import ManualSource

    src = spec.source
    if not isinstance(src, ManualSource):
        raise TypeError(f"dataset {spec.name} is not a manual source (source: {type(src).__name__})")
    root = Path(resources) / "raw" / src.root
    if not root.is_dir():
        missing, problem = list(src.expect), ""
    else:
        missing = _missing(spec, root)
        problem = "" if missing else _lister_problem(spec, root)
    if not missing and not problem:
        return None
    return ManualDatasetMissing(manual_instructions(spec, resources, missing, problem), dataset=spec.name,
                                directory=root.resolve(), missing=missing, problem=problem)
