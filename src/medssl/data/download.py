"""Public archives: streamed, resumable, md5-verified download and safe, atomic extraction.

Only the standard library is used for HTTP (``urllib``). The flow for a :class:`~medssl.registry.UrlSource`:

1. :func:`download_file` streams ``url`` into ``<dest>.part``, hashing while it writes. An existing ``.part``
   is resumed with a ``Range:`` request when the server answers ``206 Partial Content`` (else the download
   restarts from zero). Connection errors, truncated bodies and 5xx answers are retried with exponential
   backoff. The md5 is checked *before* the ``.part`` is renamed to ``dest``; a mismatch deletes the file
   and raises :class:`ChecksumError`.
2. :func:`extract_archive` checks every member (no absolute paths, no ``..``, no links at all, no
   devices) and that the archive's top-level folder is the source's ``root`` *before* extracting anything,
   extracts only that root into a hidden temporary folder inside ``dest_dir`` and renames that folder alone
   into place, so a failure never leaves partial data behind and no sibling of the root (e.g. manually
   placed data under ``resources/raw/``) is ever written, replaced or deleted. A damaged or truncated
   archive (even one whose md5 matched) raises :class:`CorruptArchiveError` naming it. Hidden ``.extract-*`` folders of killed jobs are removed at the
   next extraction (:func:`medssl.io.temp_dir`).
3. :func:`fetch_url_source` ties both together for a registry entry and writes the ready marker
   ``resources/raw/<root>/.medssl_ready`` (see :data:`MARKER`). A task already extracted there by hand (an
   offline cluster) is used as it is when it is complete (:func:`extracted_problem`: its ``dataset.json``
   lists training cases and every listed image and label exists): the marker is written and nothing is
   downloaded. A download that fails for good says so, naming that folder and the config's ``path:`` option.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import http.client
import lzma
import os
import socket
import ssl
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from medssl.io import no_space, read_json, replace_dir, temp_dir, write_json

MARKER = ".medssl_ready"
USER_AGENT = "medssl/0.1 (python-urllib)"

__all__ = [
    "MARKER", "ChecksumError", "CorruptArchiveError", "DownloadError", "UnsafeArchiveError", "md5_file",
    "download_file",
    "extract_archive", "extracted_problem", "fetch_url_source", "read_marker", "write_marker",
]


class ChecksumError(RuntimeError):
    """A downloaded file's md5 (or SHA-256) differs from the expected one (the file has been deleted)."""

    def __init__(self, url: str, expected: str, actual: str, path: Path | None = None, algo: str = "md5"):
        self.url, self.expected, self.actual, self.path = url, expected, actual, path
        super().__init__(
            f"{algo} mismatch for {url}: expected {expected}{'...' if len(expected) < len(actual) else ''}, "
            f"got {actual}" + (f" (deleted {path})" if path is not None else "")
        )


class DownloadError(RuntimeError):
    """A download failed for good (HTTP 4xx, or every retry used up)."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination (absolute path, ``..``, link, device)."""


class CorruptArchiveError(ValueError):
    """An archive cannot be read to its end (truncated or damaged); names the archive."""


# What a damaged tar/zip/gzip/bz2/xz stream raises while it is read (an OSError with an errno, e.g. a full
# disk, is not corruption and passes through).
_DAMAGED = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


# --------------------------------------------------------------------------------------------------
# Download


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _Incomplete(Exception):
    """The body ended before Content-Length bytes arrived (retried, resuming)."""


class _Restart(Exception):
    """The .part cannot be resumed (e.g. 416): start again from zero without counting a retry."""


# Errors worth retrying: network-level failures and truncated bodies. HTTPError is handled separately.
_RETRYABLE = (
    urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException,
    ssl.SSLError, _Incomplete,
)


def _content_range_start(value: str | None) -> int | None:
    # "bytes 500-999/1000"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _attempt(url: str, part: Path, chunk: int, timeout: float, desc: str, algo: str = "md5") -> tuple[str, bool]:
    """One HTTP request appending to / rewriting ``part``; return (``algo`` digest of the whole file, resumed?)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # our .part is not a prefix the server can continue
            part.unlink(missing_ok=True)
            raise _Restart from err
        raise
    with resp:
        status = resp.status
        if status == 206 and _content_range_start(resp.headers.get("Content-Range")) != offset:
            part.unlink(missing_ok=True)  # a partial answer we did not ask for: start again
            raise _Restart
        resumed = offset > 0 and status == 206
        h = hashlib.new(algo)
        if resumed:
            with open(part, "rb") as f:
                while block := f.read(chunk):
                    h.update(block)
            mode = "ab"
        else:  # 200 (Range ignored) or a fresh download
            offset = 0
            mode = "wb"
        length = resp.headers.get("Content-Length")
        expected_body = int(length) if length is not None and length.isdigit() else None
        total = offset + expected_body if expected_body is not None else None
        received = 0
        with open(part, mode) as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
            file=sys.stderr, mininterval=1.0, leave=False,
        ) as bar:
            while True:
                block = resp.read(chunk)
                if not block:
                    break
                f.write(block)
                h.update(block)
                received += len(block)
                bar.update(len(block))
        if expected_body is not None and received < expected_body:
            raise _Incomplete(f"{url}: got {received} of {expected_body} bytes")
        return h.hexdigest(), offset > 0


def file_digest(path: str | os.PathLike, algo: str, chunk: int = 1 << 20) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_file(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    *,
    sha256: str | None = None,
    retries: int = 5,
    chunk: int = 1 << 20,
    timeout: float = 60,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` and verify its md5 (or, with ``sha256``, its SHA-256, which may be given by
    its leading hex digits: torchvision names its weight files by the first 8); return ``dest``.

    If ``dest`` already exists with the right md5 nothing is fetched (a wrong one is deleted and fetched
    again). Data stream into ``<dest>.part``; an existing ``.part`` is resumed with ``Range:`` when the
    server supports it (``206``), else the download restarts. Network errors, truncated bodies and HTTP 5xx
    / 408 / 429 answers are retried up to ``retries`` times, sleeping ``backoff * 2**k`` seconds (at most
    60). The md5 is computed while streaming; on mismatch the file is deleted and :class:`ChecksumError`
    (naming the URL, expected and actual md5) is raised. If a *resumed* download mismatches, the stale
    ``.part`` is discarded and the file fetched once more from zero before giving up.
    """
    dest = Path(dest)
    algo, expected = ("sha256", sha256.lower()) if sha256 else ("md5", str(md5).lower())
    if len(expected) < 8:
        raise ValueError(f"{url}: a checksum of at least 8 hex digits is needed, got {expected!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if file_digest(dest, algo, chunk).startswith(expected):
            return dest
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    failures = 0
    restarts = 0
    while True:
        try:
            actual, was_resumed = _attempt(url, part, chunk, timeout, dest.name, algo)
        except _Restart:
            restarts += 1
            if restarts > 3:
                raise DownloadError(f"{url}: server keeps rejecting the byte range of {part}") from None
            continue
        except urllib.error.HTTPError as err:
            if err.code < 500 and err.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
            failures += 1
            if failures > retries:
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason} after {retries} retries") from err
            last = err
        except _RETRYABLE as err:
            failures += 1
            if failures > retries:
                raise DownloadError(f"{url}: {err!r} after {retries} retries") from err
            last = err
        except OSError as err:  # writing the .part: a full disk names the download (the .part is kept)
            full = no_space(err, dest)
            if full is err:
                raise
            raise full from err
        else:
            if actual.startswith(expected):
                os.replace(part, dest)
                return dest
            part.unlink(missing_ok=True)
            if was_resumed and restarts == 0:
                restarts += 1
                print(f"[medssl] {algo} mismatch after resuming {url}; restarting from zero", file=sys.stderr)
                continue
            raise ChecksumError(url, expected, actual, dest, algo)
        delay = min(60.0, backoff * 2 ** (failures - 1))
        print(f"[medssl] download of {url} failed ({last!r}); retry {failures}/{retries} in {delay:g}s",
              file=sys.stderr)
        time.sleep(delay)


# --------------------------------------------------------------------------------------------------
# Extraction


def _check_name(name: str, archive: Path) -> PurePosixPath:
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or p.is_absolute() or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in p.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    return p


def _check_tar(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every member of ``tf``, each checked (:func:`_check_name`, no link, no device).

    Links are refused whatever their target: a link that stays inside the tree by its name can still lead
    out of it once other links are followed (``R/here -> .`` then ``R/here/up -> ..``; ``R/up -> ..`` then
    members ``R/up/<sibling>/...`` wrote next to the root and replaced a manually placed dataset). The
    archives medssl fetches (MSD) hold no links, so refusing them all is the simple rule that cannot be
    outwitted.
    """
    members = tf.getmembers()
    for m in members:
        _check_name(m.name, archive)
        if m.issym() or m.islnk():
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a {'symbolic' if m.issym() else 'hard'} "
                                     f"link (-> {m.linkname!r}); medssl extracts no links, they could write "
                                     f"outside the archive's folder")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or fifo")
    return members


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    """Every member of ``zf``, each checked (:func:`_check_name`, no symbolic link: see :func:`_check_tar`)."""
    infos = zf.infolist()
    for info in infos:
        _check_name(info.filename, archive)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:  # S_IFLNK in the Unix mode bits
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; medssl extracts "
                                     f"no links, they could write outside the archive's folder")
    return infos


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ValueError(f"{archive}: not a tar or zip archive")


def _top(name: str) -> str | None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return parts[0] if parts else None


def _extract_into(archive: Path, kind: str, tmp: Path, root: str | None) -> list[str]:
    """Check every member, then extract those under ``root`` (all when None) into ``tmp``; return the
    archive's top-level names."""
    if kind == "tar":
        with tarfile.open(archive, "r:*") as tf:
            members = _check_tar(tf, archive)
            tops = sorted({t for m in members if (t := _top(m.name))})
            _check_root(archive, root, tops)
            chosen = [m for m in members if root is None or _top(m.name) == root]
            if hasattr(tarfile, "data_filter"):
                tf.extractall(tmp, members=chosen, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tf.extractall(tmp, members=chosen)
    else:
        with zipfile.ZipFile(archive) as zf:
            infos = _check_zip(zf, archive)
            tops = sorted({t for i in infos if (t := _top(i.filename))})
            _check_root(archive, root, tops)
            zf.extractall(tmp, members=[i for i in infos if root is None or _top(i.filename) == root])
    return tops


def _check_root(archive: Path, root: str | None, tops: list[str]) -> None:
    if root is not None and root not in tops:
        shown = ", ".join(tops[:10]) + (", ..." if len(tops) > 10 else "") or "nothing"
        raise FileNotFoundError(f"{archive}: no top-level folder {root}/ in this archive (it holds: {shown}); "
                                f"nothing was extracted: is it the right archive?")


def extract_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike, *, root: str | None = None
                    ) -> list[Path]:
    """Extract a tar (plain/gz/bz2/xz) or zip ``archive`` into ``dest_dir``; return the paths placed.

    Every member is checked first (:class:`UnsafeArchiveError`, naming the archive and the member, for
    absolute paths, ``..``, symbolic or hard links, devices). With ``root``, the archive must hold the
    top-level folder ``root`` (else :class:`FileNotFoundError` naming what it holds, before anything is
    written) and only that folder is extracted and placed, replacing an older ``dest_dir/root``; other
    top-level entries are ignored. Without
    ``root``, every top-level entry is placed, and one that already exists in ``dest_dir`` is an error
    (:class:`FileExistsError`, nothing placed): existing data are never replaced. Extraction goes to a hidden
    temporary folder inside ``dest_dir`` (same file system); only when it has fully succeeded is anything
    renamed into place. On any failure the temporary folder is removed and ``dest_dir`` is unchanged; a
    damaged or truncated archive raises :class:`CorruptArchiveError` naming it.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    kind = _archive_kind(archive)
    with temp_dir(dest_dir, f".extract-{archive.name}-") as tmp:
        try:
            tops = _extract_into(archive, kind, tmp, root)
        except _DAMAGED as err:
            raise CorruptArchiveError(f"{archive}: damaged or truncated archive ({type(err).__name__}: {err}); "
                                      f"delete it and fetch it again") from err
        except OSError as err:
            full = no_space(err, dest_dir / root if root else dest_dir, f"folder (extracting {archive})")
            if full is err:
                raise
            raise full from err
        # Only the archive's own top-level folders are placed (with ``root``: that folder alone), whatever
        # else the extraction might have made in ``tmp``; a top that is not a real folder or file is refused.
        wanted = [root] if root is not None else tops
        entries = [tmp / name for name in wanted if (tmp / name).exists() or (tmp / name).is_symlink()]
        for entry in entries:
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                raise UnsafeArchiveError(f"{archive}: {entry.name} is not a plain folder or file")
        if root is None:
            taken = [dest_dir / e.name for e in entries if (dest_dir / e.name).exists()
                     or (dest_dir / e.name).is_symlink()]
            if taken:
                raise FileExistsError(f"{archive}: extracting would replace {', '.join(map(str, taken))}; "
                                      f"move it away first")
        placed = []
        for entry in entries:  # an existing target is only dest_dir/root: an older copy of the same data
            replace_dir(entry, dest_dir / entry.name)
            placed.append(dest_dir / entry.name)
        return placed


# --------------------------------------------------------------------------------------------------
# Registry sources


def read_marker(root: str | os.PathLike) -> dict | None:
    """The ready marker of a source root, or None when absent or unreadable."""
    path = Path(root) / MARKER
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def write_marker(root: str | os.PathLike, **fields) -> Path:
    """Write ``root/.medssl_ready`` (JSON: the given fields plus ``date``, ISO 8601 UTC), atomically."""
    path = Path(root) / MARKER
    date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    write_json(path, {**fields, "date": date})
    return path


def extracted_problem(spec, root: str | os.PathLike) -> str:
    """Why ``root`` is not a complete extracted copy of ``spec``'s dataset ("" when it is): it must exist, its
    ``dataset.json`` (read by the source format's lister) must list training cases, and every listed image and
    label must be a file."""
    from medssl.data.listers import LISTERS  # imported on use: the listers import the registry

    root = Path(root)
    if not root.is_dir():
        return f"{root.resolve()} does not exist"
    try:
        cases = LISTERS[spec.source_format](spec, root)
    except (OSError, ValueError, KeyError) as err:
        return str(err)
    if not cases:
        return f"{root / 'dataset.json'} lists no training cases"
    for case in cases:
        for what, path in (("image", case.image), ("label", case.label)):
            if not Path(path).is_file():
                return f"{what} {path} of case {case.case_id} (listed in {root / 'dataset.json'}) is missing"
    return ""


def _offline_hint(spec, root: Path, problem: str) -> str:
    return (f"without the network, a complete extracted copy of {spec.source.root} at exactly {root.resolve()} "
            f"(dataset.json listing training cases, every listed image and label present) is used as it is, "
            f"with no download (now: {problem}); a copy elsewhere is read in place when the config declares it: "
            f"`datasets: {{{spec.name}: {{path: /folder/holding/dataset.json}}}}`")


def fetch_url_source(spec, resources: str | os.PathLike, *, keep_archive: bool = True, **download_kw) -> Path:
    """Download, verify and extract a registry entry with a :class:`~medssl.registry.UrlSource`.

    The archive goes to ``resources/downloads/<archive>``, is extracted into ``resources/raw/``, and
    ``resources/raw/<root>/`` must then exist. The marker ``resources/raw/<root>/.medssl_ready`` records
    ``{"dataset", "kind": "url", "url", "md5", "archive", "date"}``. Idempotent: nothing is done when the
    marker exists with the same md5. A complete folder already at ``resources/raw/<root>/``
    (:func:`extracted_problem`) is used as it is: the marker is written as after a download and nothing is
    fetched. A :class:`DownloadError` (network down, HTTP error) says that, and how to give a copy elsewhere
    (``datasets: {<name>: {path: ...}}``). Returns ``resources/raw/<root>``.
    """
    from medssl.registry import UrlSource

    src = spec.source
    if not isinstance(src, UrlSource):
        raise TypeError(f"dataset {spec.name} has no URL source (source: {type(src).__name__})")
    resources = Path(resources)
    raw = resources / "raw"
    root = raw / src.root
    marker = read_marker(root)
    if marker and str(marker.get("md5", "")).lower() == src.md5.lower() and root.is_dir():
        return root
    problem = extracted_problem(spec, root)
    if not problem:
        print(f"[medssl] {spec.name}: using the complete extracted folder {root.resolve()} as it is (no download)",
              file=sys.stderr)
        write_marker(root, dataset=spec.name, kind="url", url=src.url, md5=src.md5.lower(), archive=src.archive)
        return root
    try:
        archive = download_file(src.url, resources / "downloads" / src.archive, src.md5, **download_kw)
    except DownloadError as err:
        raise DownloadError(f"{err}; {_offline_hint(spec, root, problem)}") from err
    extract_archive(archive, raw, root=src.root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{archive} (from {src.url}) did not contain the expected folder {src.root}/ "
            f"(looked for {root.resolve()})"
        )
    write_marker(root, dataset=spec.name, kind="url", url=src.url, md5=src.md5.lower(), archive=src.archive)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return root
