"""Device selection and the per-device execution policy (bf16 autocast and channels_last on CUDA only)."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is an error; ``cpu`` -> cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("config device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
        return torch.device("cuda")
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
    return torch.channels_last if is_cuda(device) else torch.contiguous_format


def prepare_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``module`` to ``device`` (channels_last on CUDA)."""
    module = module.to(device)
    if is_cuda(device):
        module = module.to(memory_format=torch.channels_last)
    return module


def configure(device: torch.device, threads: int | None = None) -> None:
    """Process-wide settings: CPU threads; TF32 matmuls on CUDA."""
    if threads:
        torch.set_num_threads(int(threads))
    if is_cuda(device):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
