"""Benchmark of the data layer (a plain script that prints figures; not a test).

    python bench/bench_data.py [--n 6] [--scale 1.0] [--generator auto|phantoms|builtin] [--size 192]
                               [--reads 20000] [--threads 1]

(a) ``slice_dataset`` time on N volumes / time of plain ``SimpleITK.ReadImage`` of the same image and label
    files (warm page cache, best of ``--repeats``; goal <= 1.5);
(b) random-access slices/s from the SliceStore at ``--size`` on one core (``torch.set_num_threads(1)``;
    random rows read from the memory map and converted to float32 torch tensors; goal >= 5000/s);
(c) peak resident memory of a subprocess that slices the dataset, against the size of one volume and of
    the whole dataset.

Volumes: by default the ``msd_heart`` phantom twin from ``medssl.data.phantoms.write_phantom_dataset`` at
the real dataset's size (``--scale 1``: 320 x 320 x 110 int16 MRI); with ``--generator builtin`` (or when
that module is missing) a built-in generator (MRI-like int16 volumes of ``--shape``: a few smooth
ellipsoids, a bias field and Gaussian noise, gzipped NIfTI in MSD layout with a 2-class label).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from medssl import registry
from medssl.settings import DatasetSettings
from medssl.data.listers import list_msd_cases
from medssl.data.slicing import slice_dataset
from medssl.data.store import SliceStore

from _scratch import scratch_dir  # bench/_scratch.py

DATASET = "msd_heart"  # MRI: exercises the percentile normalisation


def settings(size: int) -> DatasetSettings:
    return DatasetSettings(spec=registry.get(DATASET), image_size=size, slice_axis="axial",
                           ct_window=(-200.0, 300.0), mri_percentiles=(0.5, 99.5),
                           split={"ratios": [0.7, 0.1, 0.2], "seed": 0}, scans_subset=None, synthetic_patients=0)


def write_volumes(root: Path, n: int, shape: tuple[int, int, int], seed: int = 0) -> None:
    """MSD-layout folder with ``n`` MRI-like int16 volumes (z, y, x = ``shape``) and uint8 labels."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    z, y, x = shape
    zz, yy, xx = np.meshgrid(np.linspace(-1, 1, z, dtype=np.float32), np.linspace(-1, 1, y, dtype=np.float32),
                             np.linspace(-1, 1, x, dtype=np.float32), indexing="ij")
    training = []
    for i in range(n):
        body = (zz / 0.9) ** 2 + (yy / 0.7) ** 2 + (xx / 0.8) ** 2 < 1
        c = rng.uniform(-0.2, 0.2, 3).astype(np.float32)
        organ = ((zz - c[0]) / 0.4) ** 2 + ((yy - c[1]) / 0.25) ** 2 + ((xx - c[2]) / 0.3) ** 2 < 1
        inner = ((zz - c[0]) / 0.2) ** 2 + ((yy - c[1]) / 0.12) ** 2 + ((xx - c[2]) / 0.15) ** 2 < 1
        bias = 1 + 0.2 * xx + 0.1 * yy
        vol = (300 * body + 400 * organ + 200 * inner) * bias + rng.normal(0, 25, shape).astype(np.float32)
        img = sitk.GetImageFromArray(np.clip(vol, 0, None).astype(np.int16))
        img.SetSpacing((1.25, 1.25, 2.5))
        lab = sitk.GetImageFromArray((organ.astype(np.uint8) + inner.astype(np.uint8)))
        lab.CopyInformation(img)
        name = f"bench_{i:03d}.nii.gz"
        sitk.WriteImage(img, str(root / "imagesTr" / name), useCompression=True)
        sitk.WriteImage(lab, str(root / "labelsTr" / name), useCompression=True)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (root / "dataset.json").write_text(json.dumps({"name": "bench", "training": training}))


def write_phantoms(root: Path, n: int, scale: float) -> bool:
    """The ``msd_heart`` phantom twin (real size at ``scale`` 1) if :mod:`medssl.data.phantoms` exists."""
    try:
        from medssl.data.phantoms import write_phantom_dataset
    except ImportError:
        return False
    write_phantom_dataset(registry.get(DATASET), root, n_patients=n, seed=0, scale=scale)
    return True


def rss_child(root: str, out: str, k: int, size: int, threads: int) -> None:
    """Subprocess body for (c): slice the first ``k`` cases; print JSON with the RSS before and the peak."""
    import resource

    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    cases = list_msd_cases(registry.get(DATASET), Path(root))[:k]

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return -1

    try:  # reset the kernel's peak-RSS mark (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
        before, how = status("VmRSS"), "VmHWM after a reset"
    except OSError:
        before, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    slice_dataset(settings(size), cases, Path(out), synthetic=True)
    after = status("VmHWM") if how.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kb": before, "after_kb": after, "how": how}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="number of volumes")
    ap.add_argument("--generator", choices=["auto", "phantoms", "builtin"], default="auto",
                    help="auto: the phantom twin when medssl.data.phantoms exists, else the built-in one")
    ap.add_argument("--scale", type=float, default=1.0, help="phantoms: size relative to the real dataset "
                    "(msd_heart: 320 x 320 x 110 at 1.0)")
    ap.add_argument("--shape", type=int, nargs=3, default=[80, 256, 256], metavar=("Z", "Y", "X"),
                    help="built-in generator: volume shape")
    ap.add_argument("--size", type=int, default=192, help="image_size of the store")
    ap.add_argument("--reads", type=int, default=20000, help="random slice reads for (b)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch and SimpleITK threads for (a)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], int(args.rss_child[2]), args.size, args.threads)
        return

    with scratch_dir("bench_data_", args.workdir) as work:  # removed also on an error, Ctrl-C and SIGTERM
        measure(args, work)


def measure(args, work: Path) -> None:
    """(a)-(c) of the module docstring, on volumes and stores written under ``work``."""
    root = work / "data"
    t0 = time.perf_counter()
    used = None
    if args.generator in ("auto", "phantoms") and write_phantoms(root, args.n, args.scale):
        used = f"{DATASET} phantom twin (medssl.data.phantoms), scale {args.scale}"
    elif args.generator == "phantoms":
        raise SystemExit("medssl.data.phantoms is not available")
    else:
        write_volumes(root, args.n, tuple(args.shape))
        used = f"built-in generator, {tuple(args.shape)} int16"
    cases = list_msd_cases(registry.get(DATASET), root)
    files = [p for c in cases for p in (c.image, c.label)]
    vol_bytes = [sitk.ReadImage(str(c.image)).GetNumberOfPixels() * 2 for c in cases]  # int16 voxels
    lab_bytes = [sitk.ReadImage(str(c.label)).GetNumberOfPixels() for c in cases]
    on_disk = sum(os.path.getsize(p) for p in files)
    shape = sitk.ReadImage(str(cases[0].image)).GetSize()
    print(f"volumes: {used}; {len(cases)} cases of {shape}, {on_disk / 2**20:.1f} MiB on disk, "
          f"{(sum(vol_bytes) + sum(lab_bytes)) / 2**20:.1f} MiB in memory (written in "
          f"{time.perf_counter() - t0:.1f} s)")

    # (a) slicing vs plain reading
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    for p in files:  # warm the page cache
        sitk.ReadImage(str(p))
    t_read, t_slice = [], []
    store_dir = work / "store"
    for _ in range(args.repeats):
        t = time.perf_counter()
        for p in files:
            img = sitk.ReadImage(str(p))
            del img
        t_read.append(time.perf_counter() - t)
        t = time.perf_counter()
        slice_dataset(settings(args.size), cases, store_dir, synthetic=True)
        t_slice.append(time.perf_counter() - t)
    store = SliceStore(store_dir)
    n_slices = len(store)
    print(f"(a) slice_dataset {min(t_slice):.3f} s vs SimpleITK.ReadImage {min(t_read):.3f} s "
          f"(image+label, best of {args.repeats}, {args.threads} thread(s)): ratio "
          f"{min(t_slice) / min(t_read):.2f} (goal <= 1.5); {n_slices} slices at {args.size}x{args.size}")

    # (b) random access on one core
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, n_slices, args.reads)
    images, labels = store.images, store.labels

    def rate(fn) -> float:
        for r in rows[:500]:  # warm-up
            fn(r)
        t = time.perf_counter()
        for r in rows:
            fn(r)
        return args.reads / (time.perf_counter() - t)

    # float16 -> float32 in torch (vectorised) vs in numpy (slow scalar half conversion)
    fast = rate(lambda r: torch.from_numpy(np.array(images[r])).float())
    slow = rate(lambda r: torch.from_numpy(np.asarray(images[r], dtype=np.float32)))
    pair = rate(lambda r: (torch.from_numpy(np.array(images[r])).float(),
                           torch.from_numpy(np.array(labels[r])).long()))
    batch = 32
    t = time.perf_counter()
    for i in range(0, len(rows) - batch + 1, batch):
        x = torch.from_numpy(images[np.sort(rows[i:i + batch])]).float()
    batched = (len(rows) // batch) * batch / (time.perf_counter() - t)
    print(f"(b) random access at {args.size}x{args.size}, 1 thread (goal >= 5000 slices/s): "
          f"{fast:,.0f} slices/s image -> float32 tensor (torch .float()), {slow:,.0f} slices/s with numpy's "
          f"float16 -> float32, {pair:,.0f} slices/s image + label, {batched:,.0f} slices/s in batches of {batch}")

    # (c) peak RSS of fresh processes slicing 1 case and all N cases
    mib = 1 / 1024
    one = (max(vol_bytes) + max(lab_bytes)) / 2**20
    whole = (sum(vol_bytes) + sum(lab_bytes)) / 2**20
    store_mib = sum(os.path.getsize(store_dir / f) for f in ("images.npy", "labels.npy")) / 2**20
    grows = {}
    for k in (1, len(cases)):
        out = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--threads", str(args.threads),
                              "--rss-child", str(root), str(work / "store_rss"), str(k)],
                             check=True, capture_output=True, text=True)
        rss = json.loads(out.stdout.strip().splitlines()[-1])
        grows[k] = (rss["after_kb"] - rss["before_kb"]) * mib
    print(f"(c) peak RSS growth while slicing ({rss['how']}, fresh process, after imports): "
          f"+{grows[1]:.0f} MiB for 1 case, +{grows[len(cases)]:.0f} MiB for {len(cases)} cases "
          f"(total peak {rss['after_kb'] * mib:.0f} MiB); one volume (int16 image + uint8 label) {one:.1f} MiB, "
          f"whole dataset {whole:.1f} MiB, store {store_mib:.1f} MiB; N-case growth = "
          f"{grows[len(cases)] / one:.1f} x one volume = {grows[len(cases)] / whole:.2f} x the dataset")


if __name__ == "__main__":
    main()
