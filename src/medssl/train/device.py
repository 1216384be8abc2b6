"""Device selection and the per-device execution policy: channels_last on every device, bf16 autocast on CUDA.

channels_last (NHWC) is also the faster layout for oneDNN's CPU convolutions. Measured with one thread
(2026-12-02, ``python bench/bench_train.py --layouts``, CPU ms per training step at the demo's sizes, NCHW ->
channels_last, both with fused Adam): hssl_net 64 px batch 8 48 -> 37, UNet3+ 352 -> 240, U-Net 143 -> 124,
ResNet50-FCN 32 px batch 16 50 -> 40, U-Net 32 px batch 16 83 -> 82.
CPU runs stay in float32, so a seed still gives identical numbers."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str = "auto", index: int | None = None) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is an error; ``cpu`` -> cpu. ``index``:
    which GPU (a process of several takes its rank's)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("config device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; expected auto, cpu or cuda")


def is_cuda(device: torch.device) -> bool:
    return torch.device(device).type == "cuda"


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op context elsewhere (CPU runs stay in float32, bit-reproducible)."""
    if is_cuda(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout of image batches and convolution weights: channels_last (see the module docstring)."""
    return torch.channels_last


def prepare_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``module`` to ``device``, its 4-D weights channels_last."""
    return module.to(device).to(memory_format=memory_format(device))


#: what ``compile: true`` compiles (nn.Module.compile, in place: the state-dict keys stay the same), and with
#: which torch.compile backend (the tests use "aot_eager": the same graph capture without inductor's C++ build)
COMPILED_PARTS = ("encoder", "decoder")
COMPILE_BACKEND = "inductor"


def compile_network(net: torch.nn.Module, enabled: bool) -> None:
    """``torch.compile`` the network's encoder and decoder when ``enabled`` (config ``compile``): the parts that
    take the time, while the methods' augmentations and heads stay eager. The first steps compile (about a
    minute); the losses are the eager ones to float tolerance (tests/test_distributed.py)."""
    if not enabled:
        return
    import torch._inductor.config as inductor_config

    inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()  # as seeding set it
    for name in COMPILED_PARTS:
        part = getattr(net, name, None)
        if isinstance(part, torch.nn.Module):
            part.compile(backend=COMPILE_BACKEND)


def distribute(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` wrapped in DistributedDataParallel when several processes train together (itself alone).
    Its buffers (BatchNorm statistics of the global batch, MoCo's queue of gathered keys) evolve identically in
    every process, so they are synchronised once, at the start, and not at every step; ``static_graph``: the same parameters take part in every step
    (a method that leaves the decoder unused, as SimCLR does, leaves it unused every time)."""
    from medssl import parallel

    if parallel.world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if is_cuda(device) else None,
                                   forward_sync_buffers=False, static_graph=True)


def configure(device: torch.device, threads: int | None = None) -> None:
    """Process-wide settings: CPU threads; TF32 matmuls on CUDA."""
    if threads:
        torch.set_num_threads(int(threads))
    if is_cuda(device):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
