"""Download / extraction against a loopback HTTP server (no network)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medssl.data.download import (
    MARKER, ChecksumError, CorruptArchiveError, DownloadError, UnsafeArchiveError, download_file,
    extract_archive, fetch_url_source,
)
from medssl.registry import DatasetSpec, UrlSource

ROOT = "Task99_Tiny"
CHUNK = 4096


def _build_tar() -> bytes:
    buf = io.BytesIO()
    payload = {
        f"{ROOT}/dataset.json": json.dumps({"name": "tiny", "training": [
            {"image": "./imagesTr/t_001.nii.gz", "label": "./labelsTr/t_001.nii.gz"}]}).encode(),
        f"{ROOT}/imagesTr/t_001.nii.gz": os.urandom(60_000),
        f"{ROOT}/labelsTr/t_001.nii.gz": os.urandom(30_000),
        f"{ROOT}/imagesTr/._t_001.nii.gz": b"apple double",
    }
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in payload.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output quiet
        pass

    def do_GET(self):  # noqa: N802
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.range_support and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        if srv.range_support:
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if srv.drops > 0:  # send part of the body, then drop the connection
            srv.drops -= 1
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def tar_bytes() -> bytes:
    return _build_tar()


@pytest.fixture
def server(tar_bytes):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files = {f"/{ROOT}.tar": tar_bytes}
    srv.requests = []
    srv.range_support = True
    srv.drops = 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _spec(url: str, md5: str) -> DatasetSpec:
    return DatasetSpec(name="tiny", title="Tiny MSD-like", modality="CT", roi="x", classes=(("a", (1,)),),
                       source=UrlSource(url=url, md5=md5, archive=f"{ROOT}.tar", root=ROOT))


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_fetch_downloads_extracts_and_marks(server, tar_bytes, tmp_path):
    url = f"{server.base}/{ROOT}.tar"
    spec = _spec(url, _md5(tar_bytes))
    root = fetch_url_source(spec, tmp_path, chunk=CHUNK)
    assert root == tmp_path / "raw" / ROOT
    assert json.loads((root / "dataset.json").read_text())["name"] == "tiny"
    assert (root / "imagesTr" / "t_001.nii.gz").stat().st_size == 60_000
    assert (tmp_path / "downloads" / f"{ROOT}.tar").read_bytes() == tar_bytes
    assert not (tmp_path / "downloads" / f"{ROOT}.tar.part").exists()
    marker = json.loads((root / MARKER).read_text())
    assert marker["url"] == url and marker["md5"] == _md5(tar_bytes) and marker["archive"] == f"{ROOT}.tar"
    assert marker["date"]
    # no temporary extraction folders left behind
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [ROOT]
    # idempotent: a second call makes no request
    n = len(server.requests)
    assert fetch_url_source(spec, tmp_path) == root
    assert len(server.requests) == n


def test_wrong_md5_raises_and_leaves_nothing(server, tar_bytes, tmp_path):
    url = f"{server.base}/{ROOT}.tar"
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as exc:
        fetch_url_source(_spec(url, wrong), tmp_path, chunk=CHUNK)
    msg = str(exc.value)
    assert url in msg and wrong in msg and _md5(tar_bytes) in msg
    raw = tmp_path / "raw"
    assert not raw.exists() or not any(raw.iterdir())
    assert not any((tmp_path / "downloads").iterdir())


def test_resume_with_range(server, tar_bytes, tmp_path):
    dest = tmp_path / "a.tar"
    half = len(tar_bytes) // 2
    (tmp_path / "a.tar.part").write_bytes(tar_bytes[:half])
    out = download_file(f"{server.base}/{ROOT}.tar", dest, _md5(tar_bytes), chunk=CHUNK)
    assert out == dest and dest.read_bytes() == tar_bytes
    assert [r["range"] for r in server.requests] == [f"bytes={half}-"]
    assert not (tmp_path / "a.tar.part").exists()


def test_resume_without_range_support_restarts(server, tar_bytes, tmp_path):
    server.range_support = False
    dest = tmp_path / "a.tar"
    (tmp_path / "a.tar.part").write_bytes(b"garbage" * 100)
    download_file(f"{server.base}/{ROOT}.tar", dest, _md5(tar_bytes), chunk=CHUNK)
    assert dest.read_bytes() == tar_bytes


def test_stale_part_with_range_restarts_once(server, tar_bytes, tmp_path):
    dest = tmp_path / "a.tar"
    (tmp_path / "a.tar.part").write_bytes(b"x" * 1000)  # not a prefix of the file: md5 fails after resume
    download_file(f"{server.base}/{ROOT}.tar", dest, _md5(tar_bytes), chunk=CHUNK)
    assert dest.read_bytes() == tar_bytes
    assert [r["range"] for r in server.requests] == ["bytes=1000-", None]


def test_retry_after_dropped_connection(server, tar_bytes, tmp_path):
    server.drops = 1
    dest = tmp_path / "a.tar"
    download_file(f"{server.base}/{ROOT}.tar", dest, _md5(tar_bytes), chunk=CHUNK, backoff=0)
    assert dest.read_bytes() == tar_bytes
    assert len(server.requests) == 2
    assert server.requests[1]["range"] is not None  # the second attempt resumed the partial body


def test_retries_exhausted(server, tar_bytes, tmp_path):
    server.drops = 10
    with pytest.raises(DownloadError):
        download_file(f"{server.base}/{ROOT}.tar", tmp_path / "a.tar", _md5(tar_bytes), chunk=CHUNK,
                      retries=2, backoff=0)
    assert len(server.requests) == 3


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_file(f"{server.base}/missing.tar", tmp_path / "m.tar", "0" * 32, backoff=0)
    assert len(server.requests) == 1


def test_existing_file_with_right_md5_is_kept(server, tar_bytes, tmp_path):
    dest = tmp_path / "a.tar"
    dest.write_bytes(tar_bytes)
    download_file(f"{server.base}/{ROOT}.tar", dest, _md5(tar_bytes))
    assert server.requests == []


def _tar_with(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tf:
        for member, data in (("ok/good.txt", b"fine"), (name, b"evil")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/medssl_evil_abs.txt"])
def test_path_traversal_rejected(tmp_path, name):
    archive = _tar_with(tmp_path, name)
    dest = tmp_path / "out" / "raw"
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, dest)
    assert not any(dest.iterdir())
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_symlink_escape_rejected(tmp_path):
    path = tmp_path / "link.tar"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("ok/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError):
        extract_archive(path, tmp_path / "raw")


def test_zip_extract_and_traversal(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("data/a.txt", "a")
        zf.writestr("data/sub/b.txt", "b")
    placed = extract_archive(good, tmp_path / "raw")
    assert placed == [tmp_path / "raw" / "data"]
    assert (tmp_path / "raw" / "data" / "sub" / "b.txt").read_text() == "b"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("x/ok.txt", "ok")
        zf.writestr("../evil.txt", "evil")
    with pytest.raises(UnsafeArchiveError):
        extract_archive(bad, tmp_path / "raw2")
    assert not any((tmp_path / "raw2").iterdir())


def test_corrupt_archive_leaves_no_partial_data(tmp_path, tar_bytes):
    gz = tmp_path / "t.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src:
            for m in src.getmembers():
                tf.addfile(m, src.extractfile(m))
    gz.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # truncated gzip stream
    dest = tmp_path / "raw"
    with pytest.raises(Exception):
        extract_archive(gz, dest)
    assert not any(dest.iterdir())


def test_reextract_replaces_existing(tmp_path, tar_bytes):
    archive = tmp_path / "t.tar"
    archive.write_bytes(tar_bytes)
    dest = tmp_path / "raw"
    (dest / ROOT).mkdir(parents=True)
    (dest / ROOT / "stale.txt").write_text("old")
    extract_archive(archive, dest, root=ROOT)
    assert (dest / ROOT / "dataset.json").exists() and not (dest / ROOT / "stale.txt").exists()
    assert sorted(p.name for p in dest.iterdir()) == [ROOT]


# ---------------------------------------------------------------------------- no data loss on extraction
def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _placed_acdc(raw: Path) -> Path:
    mine = raw / "acdc" / "training" / "patient001" / "Info.cfg"
    mine.parent.mkdir(parents=True)
    mine.write_text("ED: 1\nES: 12\n")
    return mine


def test_archive_with_another_root_leaves_siblings_alone(server, tmp_path):
    """An archive whose top-level folder is not the source's root (here: 'acdc') must not replace the
    manually placed resources/raw/acdc; the error names the archive, the expected and the found roots."""
    wrong = _tar(tmp_path / "wrong.tar", {"acdc/training/x.txt": b"not yours", "acdc/dataset.json": b"{}"})
    data = wrong.read_bytes()
    server.files[f"/{ROOT}.tar"] = data
    res = tmp_path / "res"
    mine = _placed_acdc(res / "raw")
    with pytest.raises(FileNotFoundError) as exc:
        fetch_url_source(_spec(f"{server.base}/{ROOT}.tar", _md5(data)), res, backoff=0)
    msg = str(exc.value)
    assert f"{ROOT}.tar" in msg and f"{ROOT}/" in msg and "acdc" in msg
    assert mine.read_text() == "ED: 1\nES: 12\n"
    assert not (res / "raw" / "acdc" / "training" / "x.txt").exists()
    assert sorted(p.name for p in (res / "raw").iterdir()) == ["acdc"]


def test_only_the_root_is_moved_into_place(tmp_path, tar_bytes):
    archive = tmp_path / "t.tar"
    with tarfile.open(archive, "w") as tf:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src:
            for m in src.getmembers():
                tf.addfile(m, src.extractfile(m))
        for name in ("README.txt", "acdc/evil.txt", f"._{ROOT}"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"new"))
    raw = tmp_path / "raw"
    mine = _placed_acdc(raw)
    (raw / "README.txt").write_text("mine")
    assert extract_archive(archive, raw, root=ROOT) == [raw / ROOT]
    assert mine.exists() and not (raw / "acdc" / "evil.txt").exists()
    assert (raw / "README.txt").read_text() == "mine" and (raw / ROOT / "dataset.json").exists()
    assert sorted(p.name for p in raw.iterdir()) == ["README.txt", ROOT, "acdc"]


def test_without_a_root_existing_entries_are_never_replaced(tmp_path):
    archive = _tar(tmp_path / "a.tar", {"acdc/x.txt": b"x", "other/y.txt": b"y"})
    raw = tmp_path / "raw"
    mine = _placed_acdc(raw)
    with pytest.raises(FileExistsError, match="acdc"):
        extract_archive(archive, raw)
    assert mine.exists() and sorted(p.name for p in raw.iterdir()) == ["acdc"]


def test_truncated_archive_with_matching_md5_names_the_archive(server, tar_bytes, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src:
            for m in src.getmembers():
                tf.addfile(m, src.extractfile(m))
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]  # the server's file itself is truncated
    server.files[f"/{ROOT}.tar.gz"] = cut
    spec = DatasetSpec(name="tiny", title="Tiny", modality="CT", roi="x", classes=(("a", (1,)),),
                       source=UrlSource(url=f"{server.base}/{ROOT}.tar.gz", md5=_md5(cut),
                                        archive=f"{ROOT}.tar.gz", root=ROOT))
    res = tmp_path / "res"
    with pytest.raises(CorruptArchiveError) as exc:
        fetch_url_source(spec, res, backoff=0)
    assert str(res / "downloads" / f"{ROOT}.tar.gz") in str(exc.value)
    assert not [p for p in (res / "raw").iterdir()]


def test_stale_extraction_folders_are_removed(tmp_path, tar_bytes):
    import subprocess
    import sys
    import time

    from medssl.io import owner_tag

    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True, check=True).stdout)
    host = owner_tag().rpartition("-")[0]
    archive = tmp_path / "t.tar"
    archive.write_bytes(tar_bytes)
    raw = tmp_path / "raw"
    killed = raw / f".extract-t.tar-{host}-{pid}.abcd"
    old = raw / ".extract-t.tar-q1w2e3"  # an older medssl's folder
    for d in (killed, old):
        (d / ROOT).mkdir(parents=True)
        (d / ROOT / "big.bin").write_bytes(b"0" * 1000)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    extract_archive(archive, raw, root=ROOT)
    assert sorted(p.name for p in raw.iterdir()) == [ROOT]


# ------------------------------------------------------------------------------- links inside an archive
def _tar_with_link(path: Path, root: str, link: str, target: str, after: dict[str, bytes], *,
                   hard: bool = False) -> Path:
    """A tar holding ``root/dataset.json``, the link ``link -> target`` and then the members ``after``."""
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo(f"{root}/dataset.json")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"{}"))
        info = tarfile.TarInfo(link)
        info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        info.linkname = target
        tf.addfile(info)
        for name, data in after.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_symlink_to_the_parent_cannot_replace_a_sibling(server, tmp_path):
    """The measured fault: ``Task02_Heart/up -> ..`` then ``Task02_Heart/up/acdc/...`` replaced the manually
    placed resources/raw/acdc. Refused with one line naming the archive and the member; nothing is lost."""
    root = "Task02_Heart"
    archive = _tar_with_link(tmp_path / f"{root}.tar", root, f"{root}/up", "..",
                             {f"{root}/up/acdc/training/x.txt": b"not yours"})
    data = archive.read_bytes()
    server.files[f"/{root}.tar"] = data
    spec = DatasetSpec(name="heart", title="Heart", modality="MRI", roi="x", classes=(("a", (1,)),),
                       source=UrlSource(url=f"{server.base}/{root}.tar", md5=_md5(data), archive=f"{root}.tar",
                                        root=root))
    res = tmp_path / "res"
    mine = _placed_acdc(res / "raw")
    with pytest.raises(UnsafeArchiveError) as exc:
        fetch_url_source(spec, res, backoff=0)
    msg = str(exc.value)
    assert "\n" not in msg and f"{root}.tar" in msg and f"{root}/up" in msg
    assert mine.read_text() == "ED: 1\nES: 12\n"
    assert sorted(p.name for p in (res / "raw").iterdir()) == ["acdc"]
    assert sorted(p.name for p in (res / "raw" / "acdc").iterdir()) == ["training"]


@pytest.mark.parametrize("link, target, hard", [
    ("R/up", "..", False),                   # the parent of the root
    ("R/a/b", "../..", False),               # two levels up from a sub-folder
    ("R/here", ".", False),                  # a link to the root itself, then a chain through it
    ("R/abs", "/etc", False),
    ("R/h", "acdc/training/patient001/Info.cfg", True),  # a hard link to a file outside the root
])
def test_links_are_refused_and_nothing_outside_the_root_changes(tmp_path, link, target, hard):
    after = {"R/up/acdc/training/patient001/Info.cfg": b"ED: 9\n"} if target == ".." else {}
    if target == ".":
        after = {"R/here/up2/x.txt": b"x"}
    archive = _tar_with_link(tmp_path / "R.tar", "R", link, target, after, hard=hard)
    raw = tmp_path / "raw"
    mine = _placed_acdc(raw)
    for root in ("R", None):
        with pytest.raises(UnsafeArchiveError, match=r"R\.tar.*" + link.split("/")[-1]):
            extract_archive(archive, raw, root=root)
        assert mine.read_text() == "ED: 1\nES: 12\n"
        assert sorted(p.name for p in raw.iterdir()) == ["acdc"]


def test_only_the_root_folder_is_placed_even_if_extraction_made_more(tmp_path, tar_bytes, monkeypatch):
    """Defence in depth: whatever else lands in the temporary folder, only ``root`` is moved into place."""
    from medssl.data import download

    archive = tmp_path / "t.tar"
    archive.write_bytes(tar_bytes)
    raw = tmp_path / "raw"
    mine = _placed_acdc(raw)
    real = download._extract_into

    def sneaky(archive, kind, tmp, root):
        out = real(archive, kind, tmp, root)
        (tmp / "acdc").mkdir()
        (tmp / "acdc" / "evil.txt").write_text("evil")
        return out

    monkeypatch.setattr(download, "_extract_into", sneaky)
    assert extract_archive(archive, raw, root=ROOT) == [raw / ROOT]
    assert mine.exists() and not (raw / "acdc" / "evil.txt").exists()
    assert sorted(p.name for p in raw.iterdir()) == [ROOT, "acdc"]


def test_zip_symlink_is_refused(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("R/ok.txt", "ok")
        info = zipfile.ZipInfo("R/up")
        info.external_attr = (0o120777 << 16)  # a Unix symbolic link
        zf.writestr(info, "..")
    with pytest.raises(UnsafeArchiveError, match=r"link\.zip.*R/up"):
        extract_archive(path, tmp_path / "raw", root="R")
    assert not any((tmp_path / "raw").iterdir())


def test_disk_full_while_extracting_names_the_folder_and_leaves_nothing(tmp_path, tar_bytes, monkeypatch):
    import errno

    archive = tmp_path / "t.tar"
    archive.write_bytes(tar_bytes)
    raw = tmp_path / "raw"
    mine = _placed_acdc(raw)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(OSError) as exc:
        extract_archive(archive, raw, root=ROOT)
    assert exc.value.errno == errno.ENOSPC and "no space left on device" in str(exc.value)
    assert str(raw / ROOT) in str(exc.value) and "t.tar" in str(exc.value)
    assert mine.exists() and sorted(p.name for p in raw.iterdir()) == ["acdc"]


def test_disk_full_while_downloading_names_the_file(server, tar_bytes, tmp_path, monkeypatch):
    import errno

    from medssl.data import download

    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode):
            def write(block):
                raise OSError(errno.ENOSPC, "No space left on device")
            f.write = write
        return f

    monkeypatch.setattr(download, "open", full_open, raising=False)
    dest = tmp_path / "a.tar"
    with pytest.raises(OSError) as exc:
        download_file(f"{server.base}/{ROOT}.tar", dest, _md5(tar_bytes), chunk=CHUNK, backoff=0)
    assert "no space left on device" in str(exc.value) and str(dest) in str(exc.value)
    assert len(server.requests) == 1  # not retried


# -------------------------------------------------------------- an MSD task already extracted (offline cluster)
def _extracted(root: Path, *, cases=("t_001", "t_002")) -> Path:
    entries = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]
    for c in cases:
        for sub in ("imagesTr", "labelsTr"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            (root / sub / f"{c}.nii.gz").write_bytes(b"x")
    (root / "dataset.json").write_text(json.dumps({"name": "tiny", "training": entries}))
    return root


def _dead_url() -> str:
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused, like an offline node
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{ROOT}.tar"


def test_complete_extracted_folder_is_used_without_downloading(server, tmp_path):
    res = tmp_path / "scratch"
    root = _extracted(res / "raw" / ROOT)
    spec = _spec(f"{server.base}/{ROOT}.tar", "0" * 32)
    assert fetch_url_source(spec, res, backoff=0) == root
    assert server.requests == [] and not (res / "downloads").exists()
    marker = json.loads((root / MARKER).read_text())
    assert marker["kind"] == "url" and marker["md5"] == "0" * 32 and marker["dataset"] == "tiny"
    assert marker["url"] == spec.source.url and marker["archive"] == f"{ROOT}.tar" and marker["date"]
    assert fetch_url_source(spec, res, backoff=0) == root and server.requests == []


@pytest.mark.parametrize("damage", ["label", "json", "empty", "none"])
def test_failed_download_says_how_to_use_data_already_on_disk(tmp_path, damage):
    res = tmp_path / "scratch"
    root = res / "raw" / ROOT
    if damage != "none":
        _extracted(root)
    if damage == "label":
        (root / "labelsTr" / "t_002.nii.gz").unlink()
    elif damage == "json":
        (root / "dataset.json").write_text("{")
    elif damage == "empty":
        (root / "dataset.json").write_text('{"training": []}')
    with pytest.raises(DownloadError) as exc:
        fetch_url_source(_spec(_dead_url(), "0" * 32), res, backoff=0, retries=1)
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"{root.resolve()}" in msg and "used as it is" in msg
    assert "datasets: {tiny: {path: " in msg
    if damage == "label":
        assert str(root / "labelsTr" / "t_002.nii.gz") in msg
    assert not (root / MARKER).exists()
