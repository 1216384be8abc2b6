"""Starting a pretraining job on several GPUs (``pretrain: {gpus: N}``): N processes, one per GPU.

:func:`launch` starts the workers with torch's own ``torch.multiprocessing.start_processes`` (spawn, as
nnU-Net does): NCCL on CUDA; on a machine without GPUs, gloo on N CPU processes, the same code path, which is
how the tests run it and how a configuration can be checked on a laptop. Each worker joins the process
group, takes GPU ``rank`` and runs the job; what the processes compute together is exactly what one process
computes with the whole batch (:mod:`medssl.parallel`). Fewer visible GPUs than asked: the job runs on those
it sees, with a warning (same result; each GPU takes a larger part of the batch). A worker that fails stops
the others and the job, with the worker's error.

Rank 0 alone writes the log, ``log.csv``, ``progress.png``, checkpoints and ``model.pt``; every rank resumes
from the same ``checkpoint.pt``, and a checkpoint written on N processes resumes on M (the checkpoint holds
the state of one model, the random states and the data order, none of which depend on N).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medssl.settings import Runtime
from medssl.train import device as dev

log = logging.getLogger("medssl.train")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes(runtime: Runtime) -> tuple[int, str]:
    """How many processes a job of ``runtime`` starts, and their backend (nccl on CUDA, gloo on the CPU)."""
    device = dev.pick_device(runtime.device)
    if not dev.is_cuda(device):
        return runtime.gpus, "gloo"
    visible = torch.cuda.device_count()
    if visible < runtime.gpus:
        log.warning("WARNING: gpus: %d asked, %d visible (CUDA_VISIBLE_DEVICES): training on %d; the result is "
                    "the same, each GPU takes a larger part of the batch", runtime.gpus, visible, visible)
    return min(runtime.gpus, visible), "nccl"


def launch(job_fn: Callable, *args, runtime: Runtime, **kwargs) -> None:
    """Run ``job_fn(*args, runtime=..., **kwargs)`` on the processes :func:`processes` says (in this process
    when that is one). Each worker gets ``runtime.threads / N`` CPU threads (the job was given them all)."""
    world, backend = processes(runtime)
    if world <= 1:
        job_fn(*args, runtime=dataclasses.replace(runtime, gpus=1), **kwargs)
        return
    worker_runtime = dataclasses.replace(runtime, threads=max(1, (runtime.threads or world) // world))
    log.info("starting %d %s processes (%s)", world, "GPU" if backend == "nccl" else "CPU", backend)
    mp.start_processes(_worker, args=(world, backend, _free_port(), job_fn, args, worker_runtime, kwargs),
                       nprocs=world, start_method="spawn")


def _worker(rank: int, world: int, backend: str, port: int, job_fn: Callable, args: tuple, runtime: Runtime,
            kwargs: dict) -> None:
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        if rank:
            logging.getLogger("medssl").setLevel(logging.WARNING)  # rank 0 tells the story
        job_fn(*args, runtime=runtime, **kwargs)
        dist.barrier()
    finally:
        dist.destroy_process_group()
