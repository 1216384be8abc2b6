"""Benchmark of the training core (prints figures; no assertions).

1. Loop overhead: seconds per step of :class:`medssl.train.loop.Loop` ÷ a bare PyTorch loop (same method,
   model, batch, device, same DataLoader; goal ≤ 1.05). Also against a textbook loop whose DataLoader reads
   one sample at a time with default collation.
2. Loader headroom: batches/s of the DataLoader alone ÷ batches/s of training steps on a resident batch
   (goal ≥ 20).
3. Throughput: images/s of pretraining (default HSSL on hssl_net). On CUDA the paper-A setting 192×192,
   batch 30, bf16; on CPU smaller defaults (64×64, batch 8) so it finishes in about a minute.

``--layouts``: instead, ms per supervised training step (forward, cross-entropy, backward, Adam) of each
demo network at its demo size and width, for the memory layout (contiguous NCHW / channels_last) × the Adam
kernel (multi-tensor / fused), CPU time, minimum of 3 interleaved rounds. The training core's choice
(channels_last, fused) rests on these figures.

    python bench/bench_train.py [--method hssl --arch hssl_net --size S --batch B --steps N --workers W]
    python bench/bench_train.py --layouts
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medssl.data.loaders import SliceDataset, batch_to_device, make_loader
from medssl.data.store import SliceStore
from medssl.train import common
from medssl.train import device as dev
from medssl.train import loop as loop_module
from medssl.train.loop import Loop, build_optimizer
from medssl.train.seeding import seed_everything

from _scratch import scratch_dir  # bench/_scratch.py: removed also on Ctrl-C and SIGTERM


def write_store(path: Path, n_cases: int, slices: int, size: int) -> SliceStore:
    import json

    rng = np.random.default_rng(0)
    n = n_cases * slices
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "images.npy", rng.random((n, size, size), dtype=np.float32).astype(np.float16))
    np.save(path / "labels.npy", (rng.random((n, size, size)) > 0.7).astype(np.uint8))
    idx = pd.DataFrame({"row": np.arange(n), "case": np.repeat([f"c{i}" for i in range(n_cases)], slices),
                        "slice": np.tile(np.arange(slices), n_cases), "n_slices": slices, "fg": 1, "c1": 1})
    idx["patient"] = idx["case"]
    idx.to_csv(path / "index.csv", index=False)
    (path / "meta.json").write_text(json.dumps({"dataset": "bench", "classes": ["fg"], "n_classes": 2,
                                                "image_size": size, "synthetic": True}))
    return SliceStore(path)


_clock = time.perf_counter  # timer of the loop comparison ([1], [1b]); --clock cpu swaps in process_time


class PerSample(torch.utils.data.Dataset):
    """Textbook dataset: one memmap read per sample, default collation."""

    def __init__(self, store):
        self.images = store.images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": torch.from_numpy(np.asarray(self.images[i], dtype=np.float32))[None],
                "task": torch.tensor(0), "group": torch.tensor(0)}


def sync(device):
    if dev.is_cuda(device):
        torch.cuda.synchronize()


def bare_epochs(method, loader, device, epochs, lr, textbook=False) -> list[float]:
    """A minimal loop: to device, forward (autocast on CUDA), backward, step. Seconds per step per epoch."""
    opt = build_optimizer([p for p in method.parameters() if p.requires_grad], lr)
    mf = dev.memory_format(device)
    times = []
    for epoch in range(1, epochs + 1):
        if hasattr(loader.batch_sampler, "set_epoch"):
            loader.batch_sampler.set_epoch(epoch)
        method.train()
        t0 = _clock()
        n = 0
        for batch in loader:
            if textbook:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                batch["image"] = batch["image"].contiguous(memory_format=mf)
            else:
                batch = batch_to_device(batch, device, mf)
            with dev.autocast(device):
                loss = method(batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            method.after_step()
            n += 1
        sync(device)
        times.append((_clock() - t0) / n)
    return times


def _constant(c: int) -> float:
    return 1.0


def medssl_epochs(method, loader, device, epochs, lr, out_dir) -> list[float]:
    """Seconds per step per epoch through :class:`Loop`. No checkpoint is written (``checkpoint_at_end=False``):
    a job's checkpoint is written after its epoch is timed, and here it would only fill the disk (269 MB
    each for the default HSSL network)."""
    opt = build_optimizer([p for p in method.parameters() if p.requires_grad], lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _constant)
    loop = Loop(method, opt, sched, loader, device=device, out_dir=out_dir, epochs=epochs, kind="bench",
                checkpoint_every=10 ** 9, after_step=method.after_step, desc="bench", checkpoint_at_end=False)
    rows = loop.run()
    return [r["time"] / len(loader) for r in rows]


# (arch, image size, batch, classes) of the demo's finetuning jobs, at the demo's width 0.25
_DEMO_NETS = [("hssl_net", 64, 8, 3), ("unet", 64, 8, 3), ("unet3plus", 64, 4, 3), ("unet", 32, 16, 8),
              ("resnet50_fcn", 32, 16, 8)]


def layouts(device, steps: int = 12, rounds: int = 3) -> int:
    """Print ms per training step for each demo network × memory layout × Adam kernel (see the docstring)."""
    clock = time.perf_counter if dev.is_cuda(device) else time.process_time
    variants = {"NCHW, multi-tensor": (torch.contiguous_format, False),
                "NCHW, fused": (torch.contiguous_format, True),
                "channels_last, multi-tensor": (torch.channels_last, False),
                "channels_last, fused": (torch.channels_last, True)}
    for arch, size, batch, classes in _DEMO_NETS:
        best = {}
        for _ in range(rounds):
            for name, (layout, fused) in variants.items():
                torch.manual_seed(0)
                model = common.build_model(arch, classes, width=0.25).to(device).to(memory_format=layout)
                x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=layout)
                y = torch.randint(0, classes, (batch, size, size), device=device)
                opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
                for i in range(steps + 2):  # 2 warm-up steps
                    if i == 2:
                        sync(device)
                        t0 = clock()
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                sync(device)
                ms = 1000 * (clock() - t0) / steps
                best[name] = min(best.get(name, ms), ms)
        print(f"{arch} {size} px, batch {batch}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in best.items()),
              flush=True)
    return 0


def main(argv=None) -> int:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="hssl")
    p.add_argument("--arch", default="hssl_net")
    p.add_argument("--size", type=int, default=192 if cuda else 64)
    p.add_argument("--batch", type=int, default=30 if cuda else 8)
    p.add_argument("--steps", type=int, default=40 if cuda else 6, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=3, help="epochs per timed run (the first is warm-up)")
    p.add_argument("--repeats", type=int, default=3 if cuda else 2)
    p.add_argument("--workers", type=int, default=4 if cuda else 0)
    p.add_argument("--threads", type=int, default=None if cuda else 1,
                   help="CPU threads (default 1 on CPU: timings on a shared machine are far less noisy)")
    p.add_argument("--device", default="auto")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall" if cuda else "cpu",
                   help="timer of the loop comparison [1]: cpu = this process' CPU time (default on CPU: wall "
                        "time on a machine shared with other jobs is mostly noise); wall on CUDA")
    p.add_argument("--layouts", action="store_true",
                   help="ms per step of each demo network per memory layout and Adam kernel, then exit")
    args = p.parse_args(argv)
    if args.layouts:
        device = dev.pick_device(args.device)
        dev.configure(device, args.threads)
        return layouts(device)
    if args.clock == "cpu":  # both loops of [1] (ours and the bare ones here) read the same clock
        global _clock
        _clock = time.process_time
        loop_module.time = types.SimpleNamespace(perf_counter=time.process_time)

    device = dev.pick_device(args.device)
    dev.configure(device, args.threads)
    seed_everything(0, deterministic=not cuda)
    with scratch_dir("bench_train_") as tmp:  # stores and loop outputs: removed however the run ends
        return run(args, device, tmp)


def run(args, device, tmp: Path) -> int:
    """The figures [1]-[3] (module docstring), writing stores and loop outputs under ``tmp``."""
    cuda = torch.cuda.is_available()
    n_slices = max(args.batch * args.steps, 64)
    store = write_store(tmp / "store", 4, -(-n_slices // 4), args.size)
    backbone = common.build_model(args.arch, 1, width=1.0)
    method = dev.prepare_module(common.build_method(args.method, backbone, n_tasks=8, n_groups=4,
                                                    image_size=args.size), device)
    ds = SliceDataset(store)

    def loader():
        return make_loader(ds, args.batch, seed=0, num_workers=args.workers, pin_memory=cuda,
                           max_batches=args.steps)

    print(f"device {device} ({torch.cuda.get_device_name() if cuda else f'{torch.get_num_threads()} threads'}), "
          f"{args.method}+{args.arch}, {args.size}x{args.size}, batch {args.batch}, "
          f"{'bf16 autocast' if cuda else 'float32'}, workers {args.workers}, clock {args.clock}", flush=True)

    # -- 1. loop overhead (interleaved repeats, warm-up epoch dropped)
    med, bare, book = [], [], []
    textbook = torch.utils.data.DataLoader(PerSample(store), batch_size=args.batch, shuffle=True, drop_last=True,
                                           num_workers=args.workers, pin_memory=cuda,
                                           persistent_workers=args.workers > 0)
    for r in range(args.repeats):  # alternate the order so that drifting machine load hits both alike
        runs = [("m", med), ("b", bare), ("t", book)]
        for kind, acc in (runs if r % 2 == 0 else runs[::-1]):
            if kind == "m":
                acc += medssl_epochs(method, loader(), device, args.epochs, 1e-4, tmp / f"loop{r}")[1:]
            elif kind == "b":
                acc += bare_epochs(method, loader(), device, args.epochs, 1e-4)[1:]
            else:
                acc += bare_epochs(method, _Capped(textbook, args.steps), device, args.epochs, 1e-4,
                                   textbook=True)[1:]
    m, b, t = statistics.median(med), statistics.median(bare), statistics.median(book)
    print(f"[1] step time (median of {len(med)} epochs): medssl loop {m * 1e3:.1f} ms, bare loop "
          f"{b * 1e3:.1f} ms, textbook loop {t * 1e3:.1f} ms -> medssl/bare = {m / b:.3f} (goal <= 1.05; "
          f"best epochs {min(med) / min(bare):.3f}), medssl/textbook = {m / t:.3f}", flush=True)

    # -- 1b. absolute per-step overhead, measured on a tiny model where it would show (robust to CPU noise)
    tiny = dev.prepare_module(_TinyMethod(), device)
    tiny_ds = SliceDataset(write_store(tmp / "tiny", 4, 100, 32))

    def tiny_loader():
        return make_loader(tiny_ds, 8, seed=0, num_workers=0, pin_memory=cuda, max_batches=50)

    tm, tb = [], []
    for r in range(6):
        if r % 2:
            tb += bare_epochs(tiny, tiny_loader(), device, 3, 1e-4)[1:]
        tm += medssl_epochs(tiny, tiny_loader(), device, 3, 1e-4, tmp / f"tiny{r}")[1:]
        if not r % 2:
            tb += bare_epochs(tiny, tiny_loader(), device, 3, 1e-4)[1:]
    over = statistics.median(tm) - statistics.median(tb)
    print(f"[1b] tiny model: medssl loop {statistics.median(tm) * 1e6:.0f} us/step, bare {statistics.median(tb) * 1e6:.0f}"
          f" us/step -> loop overhead {over * 1e6:.0f} us/step = {over / b * 100:.2f}% of the step above",
          flush=True)

    loop_module.time = time  # wall clock again for what follows

    # -- 2. loader headroom
    ld = make_loader(ds, args.batch, seed=0, num_workers=args.workers, pin_memory=cuda, max_batches=None)
    n_b, t0 = 0, time.perf_counter()
    for epoch in range(3):
        ld.batch_sampler.set_epoch(epoch)
        for batch in ld:
            batch_to_device(batch, device)
            n_b += 1
    sync(device)
    load_rate = n_b / (time.perf_counter() - t0)
    batch = batch_to_device(next(iter(ld)), device, dev.memory_format(device))
    opt = build_optimizer([p for p in method.parameters() if p.requires_grad], 1e-4)

    def step():
        with dev.autocast(device):
            loss = method(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step()

    for _ in range(2):
        step()
    sync(device)
    n_s = max(args.steps, 5)
    t0 = time.perf_counter()
    for _ in range(n_s):
        step()
    sync(device)
    step_rate = n_s / (time.perf_counter() - t0)
    print(f"[2] loader {load_rate:.1f} batches/s (alone, to device), model {step_rate:.2f} batches/s "
          f"(resident batch) -> headroom {load_rate / step_rate:.1f}x (goal >= 20)", flush=True)

    if not cuda:  # the loader at the paper's size, for the GPU budget: 192x192, batch 30
        big = SliceDataset(write_store(tmp / "big", 4, 300, 192))
        for workers in sorted({0, args.workers}):
            lb = make_loader(big, 30, seed=0, num_workers=workers, max_batches=None)
            n_b, t0 = 0, time.perf_counter()
            for epoch in range(2):
                lb.batch_sampler.set_epoch(epoch)
                for batch in lb:
                    n_b += 1
            print(f"[2b] loader alone at 192x192, batch 30, {workers} workers: "
                  f"{n_b / (time.perf_counter() - t0):.0f} batches/s", flush=True)

    # -- 3. throughput
    print(f"[3] pretraining throughput ({args.method}, {args.size}x{args.size}, batch {args.batch}"
          f"{', bf16' if cuda else ', CPU float32'}): {args.batch / m:.1f} images/s through the medssl loop, "
          f"{args.batch * step_rate:.1f} images/s on a resident batch", flush=True)
    return 0


class _TinyMethod(torch.nn.Module):
    """One conv, MSE reconstruction: a step costs little, so loop overhead is visible."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, batch):
        x = batch["image"]
        loss = torch.nn.functional.mse_loss(self.conv(x), x)
        return {"loss": loss, "rec": loss.detach()}

    def after_step(self):
        pass


class _Capped:
    """Iterate at most ``n`` batches of a DataLoader per epoch."""

    def __init__(self, loader, n):
        self.loader, self.n, self.batch_sampler = loader, n, None

    def __iter__(self):
        for i, b in enumerate(self.loader):
            if i >= self.n:
                break
            yield b


if __name__ == "__main__":
    sys.exit(main())
