"""Atomic folder writes (medssl.io.atomic_dir, replace_dir): all or nothing, no debris."""

from __future__ import annotations

import errno
import os

import pytest

from medssl import io as mio


def _entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_dir_replaces_the_folder_and_leaves_nothing_beside_it(tmp_path):
    out = tmp_path / "store"
    with mio.atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".store.{mio.owner_tag()}.")
        assert not out.exists()  # nothing visible before the block ends
        (tmp / "a.txt").write_text("one")
    assert _entries(out) == ["a.txt"] and _entries(tmp_path) == ["store"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~mio._current_umask())
    with mio.atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("two")
    assert _entries(out) == ["b.txt"] and _entries(tmp_path) == ["store"]


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path):
    out = tmp_path / "store"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with mio.atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert _entries(out) == ["old.txt"] and _entries(tmp_path) == ["store"]


def test_atomic_dir_removes_folders_of_killed_writers_only(tmp_path):
    host = mio.owner_tag().rpartition("-")[0]
    pid = 2**22 + 12345  # above pid_max's default: no such process
    assert not mio._alive(pid)
    dead_tmp = tmp_path / f".store.{host}-{pid}.abc.tmp"
    dead_old = tmp_path / f".store.{host}-{pid}.def.old"
    live = tmp_path / f".store.{mio.owner_tag()}.ghi.tmp"  # this process: another writer still at work
    for d in (dead_tmp, dead_old, live):
        d.mkdir()
    with mio.atomic_dir(tmp_path / "store") as tmp:
        (tmp / "x").write_text("x")
    assert not dead_tmp.exists() and not dead_old.exists() and live.exists()


def test_replace_dir_puts_the_old_folder_back_when_the_rename_fails(tmp_path, monkeypatch):
    src, dst = tmp_path / "new", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (dst / "old.txt").write_text("old")
    real = os.replace
    calls = []

    def failing_second(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # 1: dst moved aside, 2: src onto dst
            raise OSError("disk said no")
        return real(a, b)

    monkeypatch.setattr(mio.os, "replace", failing_second)
    with pytest.raises(OSError, match="disk said no"):
        mio.replace_dir(src, dst)
    assert _entries(dst) == ["old.txt"] and _entries(tmp_path) == ["dst", "new"]


def test_replace_dir_replaces_a_link(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(target)
    new = tmp_path / "new"
    new.mkdir()
    mio.replace_dir(new, tmp_path / "link")
    assert (tmp_path / "link").is_dir() and not (tmp_path / "link").is_symlink()
    assert _entries(target) == ["keep.txt"]  # the link's target is left alone


def test_temp_dir_is_removed_with_what_is_left_in_it_and_keeps_what_was_moved_out(tmp_path):
    parent = tmp_path / "raw"  # created on use
    with mio.temp_dir(parent, ".extract-a.tar-") as tmp:
        assert tmp.parent == parent and tmp.name.startswith(f".extract-a.tar-{mio.owner_tag()}.")
        (tmp / "kept").mkdir()
        (tmp / "left").mkdir()
        mio.replace_dir(tmp / "kept", parent / "kept")
    assert _entries(parent) == ["kept"]
    with pytest.raises(ZeroDivisionError):
        with mio.temp_dir(parent, ".extract-a.tar-") as tmp:
            (tmp / "half").write_text("x")
            1 / 0
    assert _entries(parent) == ["kept"]


# ------------------------------------------------------------------------------------ disk full: one line
def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _assert_disk_full(err: BaseException, target) -> None:
    msg = str(err)
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert "no space left on device" in msg and str(target) in msg and "\n" not in msg


def test_disk_full_while_writing_a_file_names_it_and_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "log.csv"
    monkeypatch.setattr(mio.Path, "write_text", _full)
    with pytest.raises(OSError) as err:
        mio.write_text(out, "a,b\n")
    _assert_disk_full(err.value, out)
    assert _entries(out.parent) == []
    with pytest.raises(OSError) as err:
        mio.write_json(out.with_name("x.json"), {"a": 1})
    _assert_disk_full(err.value, out.with_name("x.json"))
    assert _entries(out.parent) == []


def test_disk_full_keeps_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "model.json"
    mio.write_json(out, {"old": True})
    monkeypatch.setattr(mio.os, "replace", _full)  # the rename itself can fail for space (a new directory block)
    with pytest.raises(OSError) as err:
        mio.write_json(out, {"old": False})
    _assert_disk_full(err.value, out)
    assert _entries(tmp_path) == ["model.json"] and mio.read_json(out) == {"old": True}


def test_disk_full_while_writing_a_folder_names_it_and_leaves_nothing(tmp_path):
    out = tmp_path / "store"
    with pytest.raises(OSError) as err:
        with mio.atomic_dir(out) as tmp:
            (tmp / "images.npy").write_bytes(b"x")
            _full()
    _assert_disk_full(err.value, out)
    assert _entries(tmp_path) == []


def test_disk_full_while_saving_a_checkpoint(tmp_path, monkeypatch):
    import torch

    from medssl.train import checkpoint as ckpt

    monkeypatch.setattr(torch, "save", _full)
    with pytest.raises(OSError) as err:
        ckpt.save({"a": 1}, tmp_path / "checkpoint.pt")
    _assert_disk_full(err.value, tmp_path / "checkpoint.pt")
    assert _entries(tmp_path) == []


def test_disk_full_message_through_the_cli_is_one_line(tmp_path, monkeypatch):
    """cli.main turns an OSError into ``medssl: error: <message>``: the message is the whole story."""
    monkeypatch.setattr(mio.Path, "write_text", _full)
    with pytest.raises(OSError) as err:
        mio.write_text(tmp_path / "a.txt", "x")
    assert str(err.value).startswith(f"{tmp_path / 'a.txt'}: no space left on device")


def test_other_write_errors_pass_through_unchanged(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(mio.Path, "write_text", denied)
    with pytest.raises(PermissionError):
        mio.write_text(tmp_path / "a.txt", "x")
    assert _entries(tmp_path) == []


def test_read_json_names_a_truncated_file(tmp_path):
    path = tmp_path / "split.json"
    path.write_text('{"dataset": "msd_heart", "patients": {"tr')
    with pytest.raises(ValueError) as err:
        mio.read_json(path)
    assert str(path) in str(err.value) and "not valid JSON" in str(err.value)
