"""Datasets behind a registration wall: check they were put in place, or say exactly how to do it."""

from __future__ import annotations

import os
from pathlib import Path

from medssl.data.download import read_marker, write_marker

__all__ = ["ManualDatasetMissing", "check_manual_source", "manual_instructions"]


class ManualDatasetMissing(FileNotFoundError):
    """A manual dataset is not (completely) in place; the message tells the user what to do."""

    def __init__(self, message: str, *, dataset: str, directory: Path, missing: list[str]):
        super().__init__(message)
        self.dataset, self.directory, self.missing = dataset, directory, missing

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return self.args[0]


def manual_instructions(spec, resources: str | os.PathLike, missing: list[str] | None = None) -> str:
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
        lines.append(f"  Note: {src.note}")
    lines.append("  Expected inside that directory:")
    for rel in src.expect:
        state = "MISSING" if rel in missing else "ok"
        lines.append(f"    {root / rel}  [{state}]")
    lines.append("Then run the workflow again (or set `synthetic: true` to use the phantom twin).")
    return "\n".join(lines)


def check_manual_source(spec, resources: str | os.PathLike) -> Path:
    """Check ``resources/raw/<root>/<expect...>`` exist; write the ready marker; return the root.

    Raises :class:`ManualDatasetMissing` naming the dataset title, the registration URL, the archive to
    download, the exact absolute directory to put it in, the note and the expected files. The marker
    ``<root>/.medssl_ready`` records ``{"dataset", "kind": "manual", "url" (registration page), "md5": null,
    "archive", "expect", "date"}``; an existing valid marker is left untouched.
    """
    from medssl.registry import ManualSource

    src = spec.source
    if not isinstance(src, ManualSource):
        raise TypeError(f"dataset {spec.name} is not a manual source (source: {type(src).__name__})")
    root = Path(resources) / "raw" / src.root
    missing = [rel for rel in src.expect if not (root / rel).exists()]
    if not root.is_dir() or missing:
        missing = missing or list(src.expect)
        raise ManualDatasetMissing(
            manual_instructions(spec, resources, missing), dataset=spec.name, directory=root.resolve(),
            missing=missing,
        )
    marker = read_marker(root)
    if not (marker and marker.get("kind") == "manual" and marker.get("dataset") == spec.name
            and marker.get("expect") == list(src.expect)):
        write_marker(root, dataset=spec.name, kind="manual", url=src.register_url, md5=None,
                     archive=src.archive, expect=list(src.expect))
    return root
