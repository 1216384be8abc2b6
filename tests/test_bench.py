"""The benchmarks clean up after themselves: their scratch folders are gone after a run, an error, Ctrl-C and
SIGTERM (bench/bench_train.py left its mkdtemp folder behind: 643 MB after one default run)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
# the smallest bench_train run: 32 px, batch 2, 2 steps per epoch
TINY = ["--size", "32", "--batch", "2", "--steps", "2", "--epochs", "2", "--workers", "0", "--threads", "1"]


def _scratch():
    spec = importlib.util.spec_from_file_location("_scratch", BENCH / "_scratch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leftovers(tmp: Path, prefix: str) -> list[Path]:
    return sorted(tmp.glob(f"{prefix}*"))


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_scratch_dir_is_removed_on_an_error_and_on_ctrl_c(tmp_path, exc):
    with pytest.raises(type(exc)):
        with _scratch().scratch_dir("bench_x_", tmp_path) as work:
            (work / "big.bin").write_bytes(b"0" * 10_000)
            raise exc
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_scratch_dir_is_removed_on_sigterm(tmp_path, sig):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(BENCH)!r})
        from _scratch import scratch_dir
        with scratch_dir("bench_x_", {str(tmp_path)!r}) as work:
            (work / "big.bin").write_bytes(b"0" * 10_000)
            print(work, flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    work = Path(proc.stdout.readline().strip())
    assert work.is_dir()
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 128 + sig
    assert list(tmp_path.iterdir()) == []


def _wait_for(proc, path_check, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path_check():
        if proc.poll() is not None:
            raise AssertionError(f"bench_train ended (status {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_bench_train_cleans_up_when_stopped(tmp_path, sig):
    """Stopped in the middle of its first timed loop (a store and a loop folder written), bench_train leaves
    nothing in $TMPDIR."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(BENCH / "bench_train.py"), *TINY, "--repeats", "100"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(proc, lambda: any((d / "loop0").is_dir() for d in _leftovers(tmp_path, "bench_train_")),
                  "its first loop folder")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert _leftovers(tmp_path, "bench_train_") == [], err[-2000:]


@pytest.mark.slow
def test_bench_train_run_leaves_nothing_behind(tmp_path):
    """A whole (tiny) run: every figure printed, no folder and no checkpoint left in $TMPDIR."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, str(BENCH / "bench_train.py"), *TINY, "--repeats", "1"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[3] pretraining throughput" in out.stdout
    assert _leftovers(tmp_path, "bench_train_") == []
    assert not list(tmp_path.rglob("checkpoint.pt"))


def test_no_benchmark_makes_a_scratch_folder_of_its_own():
    """Every Python benchmark takes its scratch folder from bench/_scratch.py (removed on errors and signals),
    and the shell script removes its mktemp folder in an EXIT trap."""
    for path in sorted(BENCH.glob("*.py")):
        if path.name == "_scratch.py":
            continue
        text = path.read_text()
        for call in ("mkdtemp(", "TemporaryDirectory(", "mkstemp(", "NamedTemporaryFile("):
            assert call not in text, f"{path.name} calls tempfile.{call}): use _scratch.scratch_dir"
    for path in sorted(BENCH.glob("*.sh")):
        text = path.read_text()
        if "mktemp" in text:
            assert "trap " in text and " EXIT" in text, f"{path.name}: mktemp without an EXIT trap"
