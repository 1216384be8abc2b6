"""Atomic file and folder writes: a reader (or a killed job) never sees a half-written file or folder.

Files: :func:`atomic_path` (and :func:`write_text`, :func:`write_json` on it). Folders: :func:`atomic_dir`
(a slice store, a phantom dataset), built on :func:`temp_dir` and :func:`replace_dir` (both also used to
extract and place archives).
Temporary files and folders carry their writer's tag (``<host>-<pid>``, :func:`owner_tag`) in their name,
e.g. ``.model.pt.node1-4711.k2j3.tmp.pt``; the next writer of the same output removes those whose writer is
gone (:func:`remove_stale`), so a job killed with ``kill -9`` leaves no debris behind for long.
A full disk (or quota) while writing raises :class:`NoSpaceError`, whose one-line message names the output
(an ``OSError`` from deep inside numpy or torch names only the temporary file, or nothing), with the
temporary file or folder removed and any previous output left in place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("medssl")

#: a temporary entry whose writer cannot be checked (another host, or no tag) is stale after this long
STALE_AFTER_S = 3600.0


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; results on a shared file system should get the
# permissions an ordinary open() would give them.
_FILE_MODE = 0o666 & ~_current_umask()
_DIR_MODE = 0o777 & ~_current_umask()  # mkdtemp makes 0700


class NoSpaceError(OSError):
    """The disk (or the quota) is full while an output is written; the message names the output."""


_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def no_space(err: OSError, target: str | os.PathLike, what: str = "file") -> OSError:
    """``err`` as a :class:`NoSpaceError` naming ``target`` (the output, not a temporary name) when it says
    the disk or the quota is full, else ``err`` itself (to be raised as it is)."""
    if isinstance(err, NoSpaceError) or err.errno not in _FULL:
        return err
    new = NoSpaceError(f"{target}: {_FULL[err.errno]} while writing this {what} (nothing was written in its "
                       f"place; free some space and run again)")
    new.errno = err.errno  # no strerror: str(new) is the message alone
    return new


def owner_tag() -> str:
    """``<host>-<pid>`` of this process (host name reduced to ``[A-Za-z0-9_]``), put in temporary names."""
    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname() or "host")
    return f"{host}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(directory: str | os.PathLike, prefix: str, suffix: str = "") -> list[Path]:
    """Remove entries ``<prefix>...<suffix>`` of ``directory`` left by writers that are gone; return them.

    Stale: tagged by this host with a process that no longer runs, or (another host, untagged) not modified
    for :data:`STALE_AFTER_S` seconds. Entries of live writers are kept.
    """
    directory = Path(directory)
    host, _, _ = owner_tag().rpartition("-")
    removed = []
    try:
        entries = [e for e in directory.iterdir() if e.name.startswith(prefix) and e.name.endswith(suffix)]
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = re.match(r"([A-Za-z0-9_]+)-(\d+)\.", entry.name[len(prefix):])
        try:
            age = now - entry.lstat().st_mtime
        except OSError:
            continue
        if m and m.group(1) == host:
            stale = not _alive(int(m.group(2)))
        else:
            stale = age > STALE_AFTER_S
        if not stale:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        log.info("removed %s, left by a killed job", entry)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` keeps the extension that some writers (numpy, SimpleITK) insist on. Temporary files of
    ``path`` left by killed writers are removed first (:func:`remove_stale`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{path.name}.", f".tmp{suffix}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except OSError as err:
        new = no_space(err, path)
        if new is err:
            raise
        raise new from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename the folder ``src`` onto ``dst`` (same file system), replacing an existing ``dst``.

    An existing ``dst`` (folder, file or link) is first moved aside into a hidden ``.<name>.<tag>.*.old``
    folder beside it, put back if the rename fails, and deleted once ``src`` is in place, so ``dst`` is never
    missing for longer than between two renames and never half-written. Such folders left by a killed
    writer are removed first (:func:`remove_stale`).
    """
    src, dst = Path(src), Path(dst)
    remove_stale(dst.parent, f".{dst.name}.", ".old")
    if not (dst.exists() or dst.is_symlink()):
        os.replace(src, dst)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.{owner_tag()}.", suffix=".old", dir=dst.parent))
    os.replace(dst, trash / dst.name)
    try:
        os.replace(src, dst)
    except OSError:
        os.replace(trash / dst.name, dst)
        trash.rmdir()
        raise
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def temp_dir(parent: str | os.PathLike, prefix: str, suffix: str = "") -> Iterator[Path]:
    """Yield a new empty folder ``<prefix><tag>.*<suffix>`` in ``parent`` (created if missing); it is deleted,
    with whatever is still in it, when the block ends.

    Such folders left by killed writers are removed first (:func:`remove_stale` with ``prefix``/``suffix``).
    Whatever the block moves out of it (:func:`replace_dir`) stays: the base of :func:`atomic_dir` and of the
    extraction of archives (:func:`medssl.data.download.extract_archive`).
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent, prefix, suffix)
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}.", suffix=suffix, dir=parent))
    try:
        os.chmod(tmp, _DIR_MODE)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; it replaces ``path`` (:func:`replace_dir`) only if the block
    succeeds, else it is deleted and ``path`` is unchanged.

    The folder is ``.<name>.<tag>.*.tmp`` in ``path``'s parent (same file system, so the rename is atomic);
    such folders left by killed writers of ``path`` are removed first (:func:`temp_dir`).
    """
    path = Path(path)
    with temp_dir(path.parent, f".{path.name}.", ".tmp") as tmp:
        try:
            yield tmp
            replace_dir(tmp, path)  # nothing left in tmp's place after a successful rename
        except OSError as err:
            new = no_space(err, path, "folder")
            if new is err:
                raise
            raise new from err


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``; :class:`ValueError` naming the file when it is not valid JSON (e.g. cut
    short), where ``json`` would name only a line and column."""
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{path}: not valid JSON ({err})") from None
