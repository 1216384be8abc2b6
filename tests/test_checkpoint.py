"""Model and checkpoint files: no code runs on load, resume state survives a safe load, bytes reproducible,
and evaluation refuses a model made for something else."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medssl.train import checkpoint as ckpt
from medssl.train.finetune import load_pretrained
from medssl.train.loop import Loop

from test_train import evaluate, finetune, pretrain, world  # noqa: F401  (world: a fixture)

torch.set_num_threads(1)

SRC = Path(__file__).resolve().parents[1] / "src"


class Payload:
    """Pickles to ``open(path, "w")``: loading the file with full pickle creates ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_file(tmp_path: Path, name: str = "evil.pt", **extra) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / name
    torch.save({"state_dict": {"w": torch.zeros(1)}, "kind": "finetune", "x": Payload(marker), **extra}, path)
    return path, marker


# ------------------------------------------------------------------------------------ bug 1: no pickle code
def test_model_file_payload_does_not_run(tmp_path):
    path, marker = evil_file(tmp_path)
    for loader in (ckpt.load, ckpt.load_state_dict):
        with pytest.raises(ckpt.UnsafeFileError, match=re.escape(str(path))):
            loader(path)
    assert not marker.exists()


def test_pretrained_payload_refused_by_finetune(tmp_path):
    path, marker = evil_file(tmp_path)
    with pytest.raises(ckpt.UnsafeFileError, match="evil.pt"):
        load_pretrained(nn.Sequential(nn.Conv2d(1, 1, 1)), path)
    assert not marker.exists()


def _loop(out_dir: Path, epochs: int = 2, score=None) -> Loop:
    torch.manual_seed(0)
    net = nn.Linear(3, 1)

    class Module(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, batch):
            noise = torch.randn(batch["x"].shape[0], 1)
            return {"loss": ((self.net(batch["x"]) + noise) ** 2).mean()}

    module = Module()
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda c: 1.0)
    loader = [{"x": torch.full((2, 3), float(i))} for i in range(3)]
    best = {"score": None}

    def on_epoch_end(epoch):
        return {"val": np.float64(0.25 * epoch)}  # numpy scalars, as metrics often are

    def extra_state():
        return {"score": np.float32(0.5), "epoch": np.int64(1), "state": ckpt.cpu_state_dict(module)}

    return Loop(module, opt, sched, loader, device="cpu", out_dir=out_dir, epochs=epochs, kind="pretrain",
                config_hash="h", on_epoch_end=on_epoch_end, extra_state=extra_state,
                load_extra=best.update, progress=False)


def test_checkpoint_loads_with_weights_only_and_restores_rng(tmp_path):
    loop = _loop(tmp_path)
    loop.epochs = 1
    np.random.seed(7)
    loop.run()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # plain tensors and values only
    assert state["epoch"] == 1 and state["log"][0]["val"] == 0.25
    np.random.seed(99)
    torch.manual_seed(99)
    again = _loop(tmp_path)
    assert again.try_resume()
    restored = np.random.get_state()
    assert restored[0] == np_state[0] and np.array_equal(restored[1], np_state[1])
    assert restored[2:] == np_state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_resume_refuses_a_payload_checkpoint(tmp_path, caplog):
    evil, marker = evil_file(tmp_path, name="checkpoint.pt", format=1, module={})
    loop = _loop(tmp_path)
    with caplog.at_level("WARNING", logger="medssl.train"):
        assert not loop.try_resume()
    assert not marker.exists()
    assert "checkpoint.pt" in caplog.text and "starting afresh" in caplog.text


def test_only_safe_torch_load_in_the_library():
    calls = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        calls += [(path.name, m) for m in re.findall(r"torch\.load\([^)]*\)", text)]
    assert calls and all("weights_only=True" in m for _, m in calls), calls


def test_unknown_object_is_refused_at_save(tmp_path):
    with pytest.raises(TypeError, match="odd"):
        ckpt.save_model(tmp_path / "m.pt", {"w": torch.zeros(1)}, odd=object())
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------- byte-reproducible model
def test_model_file_is_byte_reproducible(tmp_path):
    sd = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    a = ckpt.save_model(tmp_path / "a" / "model.pt", sd, kind="finetune", best_score=np.float64(0.5))
    b = ckpt.save_model(tmp_path / "b" / "model.pt", sd, kind="finetune", best_score=np.float64(0.5))
    assert a.read_bytes() == b.read_bytes()
    state, meta = ckpt.load_state_dict(a)
    assert torch.equal(state["w"], sd["w"]) and meta["best_score"] == 0.5 and type(meta["best_score"]) is float


def test_pretrained_model_bytes_repeat_for_a_seed(world, tmp_path):  # noqa: F811
    a = pretrain(world, "s", "stand", "all", tmp_path / "A", progress=False)
    b = pretrain(world, "s", "stand", "all", tmp_path / "B", progress=False)
    assert a.read_bytes() == b.read_bytes()


# ------------------------------------------------------------------------ bug 4: evaluate checks the model
def test_check_model_names_every_difference():
    meta = {"kind": "pretrain", "arch": "unet", "dataset": None, "run": "moco", "out_channels": 1}
    with pytest.raises(ckpt.ModelMismatchError) as err:
        ckpt.check_model(meta, "model.pt", kind="finetune", arch="unet", dataset="msd_heart",
                         run="moco", out_channels=2)
    msg = str(err.value)
    assert "model.pt" in msg and "kind" in msg and "dataset" in msg and "out_channels" in msg
    assert "arch" not in msg and "run" not in msg
    ckpt.check_model({**meta, "kind": "finetune", "dataset": "msd_heart", "out_channels": 2}, "m.pt",
                     kind="finetune", arch="unet", dataset="msd_heart", run="moco", out_channels=2)
    with pytest.raises(ckpt.ModelMismatchError, match="no medssl metadata"):
        ckpt.check_model({}, "bare.pt", kind="finetune")


def test_evaluate_refuses_a_pretraining_model(world, tmp_path):  # noqa: F811
    pre = pretrain(world, "s", "stand", "all", tmp_path / "P", progress=False)
    out = tmp_path / "M" / "seed0.json"
    with pytest.raises(ckpt.ModelMismatchError, match="kind"):
        evaluate(world, "s", "stand", "msd_heart", "100", 0, pre, out, progress=False)
    assert not out.exists()


def test_evaluate_refuses_a_model_of_another_dataset_or_run(world, tmp_path):  # noqa: F811
    model = finetune(world, "s", "stand", "msd_heart", "100", 0, tmp_path / "F", None, progress=False)
    with pytest.raises(ckpt.ModelMismatchError, match="dataset.*msd_heart"):
        evaluate(world, "s", "stand", "msd_spleen", "100", 0, model, tmp_path / "M" / "a.json", progress=False)
    with pytest.raises(ckpt.ModelMismatchError, match="run"):
        evaluate(world, "s", "enc", "msd_heart", "100", 0, model, tmp_path / "M" / "b.json", progress=False)
    assert not (tmp_path / "M").exists() or not list((tmp_path / "M").iterdir())


# ----------------------------------------------------------------------------- no debris from killed jobs
def test_stale_temporaries_of_a_killed_job_are_removed(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from medssl.io import owner_tag

    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True, check=True).stdout)  # a process that has exited
    host = owner_tag().rpartition("-")[0]
    stale = tmp_path / f".checkpoint.pt.{host}-{pid}.abc123.tmp.pt"
    old_untagged = tmp_path / ".checkpoint.pt.q1w2e3.tmp.pt"  # an older medssl's temp file
    live = tmp_path / f".checkpoint.pt.{owner_tag()}.zzz.tmp.pt"
    fresh_untagged = tmp_path / ".checkpoint.pt.r4t5y6.tmp.pt"
    other_output = tmp_path / f".log.csv.{host}-{pid}.abc.tmp"
    for p in (stale, old_untagged, live, fresh_untagged, other_output):
        p.write_bytes(b"x" * 100)
    os.utime(old_untagged, (time.time() - 7200, time.time() - 7200))
    ckpt.save({"a": 1}, tmp_path / "checkpoint.pt")
    assert not stale.exists() and not old_untagged.exists()
    assert live.exists() and fresh_untagged.exists() and other_output.exists()
    assert ckpt.load(tmp_path / "checkpoint.pt") == {"a": 1}


# ------------------------------------------------------------------ a damaged checkpoint.pt: start afresh
def _resume_state(loop: Loop) -> dict:
    """What a resume sets: module, optimiser, scheduler, epoch/step/log and the global torch RNG."""
    return {"module": {k: v.clone() for k, v in loop.module.state_dict().items()},
            "optimizer": loop.optimizer.state_dict(), "scheduler": loop.scheduler.state_dict(),
            "epoch": loop.epoch, "step": loop.step, "rows": list(loop.rows), "rng": torch.get_rng_state()}


def _same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture
def real_checkpoint(tmp_path) -> tuple[bytes, dict]:
    """The bytes of a real checkpoint.pt (after 1 of 2 epochs) and the state an intact resume gives."""
    loop = _loop(tmp_path / "made")
    loop.epochs = 1
    loop.run()
    data = (tmp_path / "made" / "checkpoint.pt").read_bytes()
    again = _loop(tmp_path / "made")
    assert again.try_resume()
    return data, _resume_state(again)


def _damaged(data: bytes, n: int = 140) -> list[tuple[str, bytes]]:
    """Truncations at many lengths, single changed bytes all over the file and a few whole-file mishaps."""
    rng = np.random.default_rng(0)
    out = [(f"cut at {k}", data[:k]) for k in np.unique(np.linspace(0, len(data) - 1, n // 2).astype(int))]
    for pos in np.unique(np.concatenate([rng.integers(0, len(data), n // 2), [len(data) // 2, len(data) - 30]])):
        b = bytearray(data)
        b[pos] = (b[pos] + 1 + int(rng.integers(0, 255))) % 256
        out.append((f"byte {pos} changed", bytes(b)))
    out += [("zeros", bytes(len(data))), ("text", b"hello\n"), ("doubled", data + data),
            ("tail garbage", data + b"\x00garbage")]
    return out


def test_damaged_checkpoint_resumes_exactly_or_starts_afresh(tmp_path, real_checkpoint, caplog):
    data, reference = real_checkpoint
    cases = _damaged(data)
    assert len(cases) >= 100
    outcomes = {"resumed": 0, "afresh": 0}
    for what, blob in cases:
        out = tmp_path / "run"
        out.mkdir(exist_ok=True)
        (out / "checkpoint.pt").write_bytes(blob)
        loop = _loop(out)
        before = _resume_state(loop)
        caplog.clear()
        with caplog.at_level("WARNING", logger="medssl.train"):
            resumed = loop.try_resume()  # never raises
        if resumed:
            assert _same(_resume_state(loop), reference), what
            outcomes["resumed"] += 1
        else:
            assert _same(_resume_state(loop), before), what  # nothing half-restored
            text = caplog.text
            assert "checkpoint.pt" in text and "starting afresh" in text, what
            assert "other than tensors" not in text, what  # damage is not called unsafe
            outcomes["afresh"] += 1
    assert outcomes["afresh"] >= 60


@pytest.mark.parametrize("change", ["no rng", "no module", "module of another net", "epoch is text",
                                    "optimizer of another net", "rng garbage", "not a dict", "log not a list",
                                    "generators garbage", "format 99"])
def test_checkpoint_of_the_wrong_structure_starts_afresh(tmp_path, real_checkpoint, caplog, change):
    data, _ = real_checkpoint
    (tmp_path / "checkpoint.pt").write_bytes(data)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    if change == "no rng":
        del state["rng"]
    elif change == "no module":
        del state["module"]
    elif change == "module of another net":
        state["module"] = {"net.weight": torch.zeros(2, 3)}
    elif change == "epoch is text":
        state["epoch"] = "one"
    elif change == "optimizer of another net":
        state["optimizer"]["param_groups"][0]["params"] = [0, 1, 2, 3]
    elif change == "rng garbage":
        state["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)
    elif change == "not a dict":
        state = [1, 2, 3]
    elif change == "log not a list":
        state["log"] = 5
    elif change == "generators garbage":
        state["generators"] = "x"
    elif change == "format 99":
        state["format"] = 99
    ckpt.save(state, tmp_path / "checkpoint.pt")
    loop = _loop(tmp_path)
    before = _resume_state(loop)
    with caplog.at_level("WARNING", logger="medssl.train"):
        assert not loop.try_resume()
    assert _same(_resume_state(loop), before)
    assert "checkpoint.pt" in caplog.text and "starting afresh" in caplog.text


def test_run_over_a_truncated_checkpoint_trains_afresh_and_overwrites_it(tmp_path, real_checkpoint, caplog):
    data, _ = real_checkpoint
    straight = _loop(tmp_path / "straight").run()
    out = tmp_path / "cut"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="medssl.train"):
        rows = _loop(out).run()
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == \
        [{k: v for k, v in r.items() if k != "time"} for r in straight]
    assert ckpt.load(out / "checkpoint.pt")["epoch"] == 2  # overwritten by the new run


# ----------------------------------------------------------------- a model file given by the user: one line
@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", b"\x00\x01binary junk" * 10])
def test_a_text_file_as_model_is_not_a_torch_file(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    for loader in (ckpt.load, ckpt.load_state_dict):
        with pytest.raises(ckpt.CheckpointError) as err:
            loader(path)
        msg = str(err.value)
        assert not isinstance(err.value, ckpt.UnsafeFileError)
        assert str(path) in msg and "not a torch file" in msg and "\n" not in msg
        assert "other than tensors" not in msg


def test_a_truncated_model_file_is_one_line(tmp_path):
    ckpt.save_model(tmp_path / "model.pt", {"w": torch.zeros(100)}, kind="finetune")
    data = (tmp_path / "model.pt").read_bytes()
    for k in (1, 3, 10, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.pt").write_bytes(data[:k])
        with pytest.raises(ckpt.CheckpointError) as err:
            ckpt.load_state_dict(tmp_path / "cut.pt")
        assert "cut.pt" in str(err.value) and "\n" not in str(err.value)
        assert "other than tensors" not in str(err.value)


def test_a_torch_file_that_is_no_model_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ckpt.CheckpointError, match="list.pt"):
        ckpt.load_state_dict(path)
