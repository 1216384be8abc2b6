"""Pretraining on several processes computes what one process computes (medssl.parallel, medssl.train.distributed).

The CPU twin of multi-GPU pretraining: 2 gloo processes, as `pretrain: {gpus: 2}` runs on a machine without GPUs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from medssl import parallel
from medssl.methods import build_method
from medssl.models import build
from medssl.settings import Runtime
from medssl.train import device as dev
from medssl.train.distributed import launch
from medssl.train.loop import Loop

METHODS = {"simclr": {}, "hssl": {}, "moco": {"queue_size": 32, "dim": 16}}
BATCH = 7  # split 4 + 3 over two processes: unequal parts


def _batch() -> dict:
    g = torch.Generator().manual_seed(5)
    return {"image": torch.rand(BATCH, 1, 32, 32, generator=g, dtype=torch.float64), "task": torch.randint(0, 2, (BATCH,), generator=g),
            "group": torch.randint(0, 2, (BATCH,), generator=g)}


def _train(name: str, out: Path) -> dict:
    """Three Adam steps of method ``name`` on one fixed batch through the training loop, in this process or in
    each of several: per-step losses (epoch rows), the first step's gradients and the final state. In float64,
    so that what differs between one and two processes (the order of sums) stays far below what is compared."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    method = build_method(name, build("hssl_net", 1, width=0.125), n_tasks=2, n_groups=2, image_size=32,
                          **METHODS[name])
    method = parallel.synchronise_batchnorm(method, torch.device("cpu"))
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    grads = {}

    def first_grads():
        if not grads:
            grads.update({k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None})

    loop = Loop(method, opt, None, [_batch()], device=torch.device("cpu"), out_dir=out, epochs=3, kind="pretrain",
                checkpoint_every=10, checkpoint_at_end=False, progress=False, after_step=first_grads,
                train_module=dev.distribute(method, torch.device("cpu")))
    rows = loop.run()
    torch.set_default_dtype(torch.float32)
    return {"losses": [{k: v for k, v in r.items() if k not in ("time", "lr", "epoch", "step")} for r in rows],
            "grads": grads, "state": {k: v.clone() for k, v in method.state_dict().items()}}


def _job(out: Path, *, runtime: Runtime) -> None:
    """What each process of a 2-process job runs: every method, results saved per rank."""
    torch.set_num_threads(1)
    results = {name: _train(name, out / f"{name}_rank{parallel.rank()}") for name in METHODS}
    torch.save(results, out / f"rank{parallel.rank()}.pt")


@pytest.fixture(scope="module")
def together(tmp_path_factory):
    """The results of one process and of two processes (rank 0 and rank 1)."""
    out = tmp_path_factory.mktemp("dist")
    launch(_job, out, runtime=Runtime(device="cpu", threads=2, num_workers=0, checkpoint_every=1, gpus=2))
    alone = {name: _train(name, out / f"{name}_alone") for name in METHODS}
    return alone, torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt"), out


@pytest.mark.parametrize("name", list(METHODS))
def test_two_processes_give_one_process_losses_and_gradients(together, name):
    """Every step's loss terms and the first step's gradients are one process's to rounding (negatives gathered
    from both processes, BatchNorm over the global batch, gradients summed, no 1/world_size factor). The logged
    terms are float32."""
    alone, rank0, _, _ = together
    one, two = alone[name], rank0[name]
    assert len(one["losses"]) == len(two["losses"]) == 3
    for row_one, row_two in zip(one["losses"], two["losses"]):
        assert row_one.keys() == row_two.keys()
        for k, v in row_one.items():
            assert row_two[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    assert one["grads"].keys() == two["grads"].keys() and one["grads"]
    for k, g in one["grads"].items():
        assert torch.allclose(two["grads"][k], g, rtol=1e-9, atol=1e-12 * (g.abs().max().item() or 1.0)), k


@pytest.mark.parametrize("name", list(METHODS))
def test_both_processes_hold_the_same_model(together, name):
    """Parameters and buffers (BatchNorm statistics of the global batch, MoCo's queue of gathered keys and its
    pointer) evolve identically in every process: they need no broadcast."""
    alone, rank0, rank1, _ = together
    a, b = rank0[name]["state"], rank1[name]["state"]
    assert a.keys() == b.keys() == alone[name]["state"].keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    if name == "moco":
        assert int(a["queue_ptr"]) == int(alone[name]["state"]["queue_ptr"]) == 3 * BATCH
        assert torch.allclose(a["queue"], alone[name]["state"]["queue"], atol=1e-4)


def test_only_process_zero_writes(together):
    out = together[3]
    assert (out / "hssl_rank0" / "log.partial.csv").is_file() and (out / "hssl_rank0" / "progress.png").is_file()
    assert not (out / "hssl_rank1").exists() or not any((out / "hssl_rank1").iterdir())


@pytest.mark.parametrize("n, world", [(7, 2), (30, 4), (4, 4), (9, 3)])
def test_parts_cover_the_batch_once(n, world):
    sizes = parallel.sizes(n, world)
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    starts = [sum(sizes[:r]) for r in range(world)]
    rows = [i for r in range(world) for i in range(starts[r], starts[r] + sizes[r])]
    assert rows == list(range(n))


def test_one_process_changes_nothing():
    p = parallel.part(5)
    t = torch.arange(5.0)
    assert p.whole and p.of(t) is t and p.share(t) is t and parallel.gather(t, p) is t


# ------------------------------------------------------------------ `medssl pretrain --gpus 2`, as a job runs
def _pretrain_job(tmp_path: Path) -> tuple[list[str], Path]:
    """The command line of an HSSL pretraining on two tiny stores, and its settings file."""
    from medssl import config as cfg
    from medssl.jobs import PretrainJob
    from medssl.io import write_json

    from test_loaders import make_store

    config = cfg.resolve(cfg.validate({
        "experiment": "t", "data": {"image_size": 32}, "model_width": 0.125, "device": "cpu", "threads": 1,
        "datasets": {"msd_heart": {}, "msd_spleen": {}},
        "studies": {"s": {"paper": "hssl", "pretrain_datasets": ["msd_heart", "msd_spleen"],
                          "finetune_datasets": ["msd_heart"],
                          "pretrain": {"epochs": 6, "batch_size": 6, "steps_per_epoch": 2, "lr": 1e-3},
                          "runs": {"hssl": {"method": "hssl", "arch": "hssl_net"}}}}}))
    args = []
    for i, (name, classes) in enumerate((("msd_heart", ["left atrium"]), ("msd_spleen", ["spleen"]))):
        make_store(tmp_path / name, [6, 6, 6, 6], dataset=name, classes=classes, seed=i)
        write_json(tmp_path / f"{name}.json", {"dataset": name, "patients": {"train": ["case0", "case1"],
                                                                            "val": ["case2"], "test": ["case3"]},
                                               "label_subsets": {}})
        args += [str(tmp_path / name), str(tmp_path / f"{name}.json")]
    settings = tmp_path / "settings.json"
    settings.write_text(PretrainJob.of(config, "s", "hssl", "all").to_json())
    medssl = str(Path(sys.executable).with_name("medssl"))
    return [medssl, "pretrain", "--settings", str(settings), "--device", "cpu", "--threads", "2",
            "--checkpoint-every", "1", "--monitor-every", "3", "--monitor-samples", "4",
            "--stores", *args[0::2], "--splits", *args[1::2]], settings


def _run(cmd: list[str], out: Path, gpus: int, *, kill_after_checkpoint: bool = False) -> str:
    """Run the job; with ``kill_after_checkpoint``, SIGKILL all its processes once a checkpoint is written (a
    preempted SLURM job). Returns what it logged."""
    log = out.with_suffix(".log")
    before = len(log.read_text()) if log.exists() else 0
    with open(log, "a") as f:
        proc = subprocess.Popen([*cmd, "--gpus", str(gpus), "--out", str(out)], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        if kill_after_checkpoint:
            while not (out / "checkpoint.pt").exists() and proc.poll() is None:
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=600)
        assert kill_after_checkpoint or proc.returncode == 0, log.read_text()[-3000:]
    return log.read_text()[before:]


def _log(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "log.csv").drop(columns=["time"])


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpus2")
    cmd, _ = _pretrain_job(tmp)
    straight = tmp / "straight"
    said = _run(cmd, straight, 2)
    return tmp, cmd, straight, said


def test_a_two_process_job_writes_one_model_and_log(two_process_runs):
    _, _, straight, said = two_process_runs
    assert "starting 2 CPU processes (gloo)" in said and "x 2 processes" in said
    assert said.count("pretrain finished") == 1  # process 0 tells the story
    log = _log(straight)
    assert log["epoch"].tolist() == [0, 1, 2, 3, 4, 5, 6] and log["loss"].iloc[1:].notna().all()
    assert (straight / "model.pt").is_file() and not (straight / "checkpoint.pt").exists()


def test_a_preempted_two_process_job_resumes_bit_for_bit(two_process_runs):
    """Killed after a checkpoint (all processes), then started again: the same model and log, to the bit."""
    tmp, cmd, straight, _ = two_process_runs
    out = tmp / "preempted"
    _run(cmd, out, 2, kill_after_checkpoint=True)
    assert (out / "checkpoint.pt").exists() and not (out / "model.pt").exists()
    said = _run(cmd, out, 2)
    resumed = int(said.split("resuming from epoch ")[1].split()[0])
    assert 1 <= resumed < 6
    pd.testing.assert_frame_equal(_log(out), _log(straight))
    a, b = (torch.load(p / "model.pt", weights_only=False)["state_dict"] for p in (straight, out))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_of_two_processes_resumes_on_one(two_process_runs):
    """The checkpoint holds one model, the random states and the data order: it resumes on any number of
    processes, and the run goes on as the two-process one (to float rounding)."""
    tmp, cmd, straight, _ = two_process_runs
    out = tmp / "two_then_one"
    _run(cmd, out, 2, kill_after_checkpoint=True)
    said = _run(cmd, out, 1)
    assert "resuming from epoch" in said and "starting 2" not in said
    resumed = int(said.split("resuming from epoch ")[1].split()[0])
    ours, theirs = _log(out)["loss"], _log(straight)["loss"]
    # the epochs before the checkpoint are the two-process run's own; the first one after it differs by float
    # rounding only (one process sums the batch in another order); later epochs amplify that rounding (about
    # x10 an epoch here), so they only have to follow the same course
    pd.testing.assert_series_equal(ours[: resumed + 1], theirs[: resumed + 1], rtol=0, atol=0)
    pd.testing.assert_series_equal(ours[resumed + 1: resumed + 2], theirs[resumed + 1: resumed + 2], rtol=1e-5)
    pd.testing.assert_series_equal(ours, theirs, rtol=2e-2)
