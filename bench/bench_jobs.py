"""Per-job fixed cost of training jobs, and the demo's time split by rule (prints figures; no assertions).

1. Fixed CPU seconds per finetuning job beyond its steps (goal <= 1.5 s): ``medssl finetune`` runs as a
   subprocess (as Snakemake runs it) on a scratch copy of one phantom dataset, with two step budgets; the CPU
   time per step is the slope between them, the fixed cost the intercept (imports, config, model build, data,
   validation, evaluation, writing). Measured for one process (finetune + evaluate, no model file) and for
   two (``finetune`` keeping model.pt, then ``evaluate``); `python -c 'import torch'` alone is printed beside,
   the share of the fixed cost a long-lived process could save (the reason the demo keeps its jobs few).
2. Time split by rule of a finished workflow run: wall and CPU seconds summed over the Snakemake benchmark
   files ``results/<experiment>/benchmarks/<rule>/...tsv``.

    python bench/bench_jobs.py [--config config/config.yaml] [--dataset msd_spleen] [--steps 8 200]
                               [--results results/demo]     # part 2 only: --split-only
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

from _scratch import scratch_dir  # bench/_scratch.py

REPO = Path(__file__).resolve().parents[1]


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one command."""
    c0, t0 = child_cpu(), time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return child_cpu() - c0, time.perf_counter() - t0


def record(config: Path, job: str, *args: str) -> str:
    """The settings record of one job of ``config`` (``medssl settings``)."""
    return subprocess.run([sys.executable, "-m", "medssl.cli", "settings", job, "--config", str(config), *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def scratch(config_path: Path, dataset: str, steps: int, root: Path) -> Path:
    """A one-dataset experiment (phantom twin, store, split) whose hssl study finetunes ``steps`` steps."""
    with open(config_path) as f:
        config = yaml.safe_load(f)
    config["experiment"] = "bench_jobs"
    config["threads"] = 1
    config["datasets"] = {dataset: config["datasets"].get(dataset) or {}}
    study = config["studies"]["hssl"]
    study["pretrain_datasets"] = study["finetune_datasets"] = [dataset]
    study["finetune"] = {**study.get("finetune", {}), "steps": steps, "steps_per_epoch": None}
    study["runs"] = {"tfs": {"method": "tfs", "arch": "hssl_net", "label": "TFS"}}
    config["studies"] = {"hssl": study}
    config.pop("reports", None)
    path = root / f"config_{steps}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def prepare(config: Path, dataset: str, root: Path) -> None:
    exp = root / "results" / "bench_jobs"
    if (exp / "splits" / f"{dataset}.json").exists():
        return
    medssl = [sys.executable, "-m", "medssl.cli"]
    twin = root / "resources" / "synthetic" / dataset
    for cmd in (["synthesize", "--out", str(twin)],
                ["slice", "--source", str(twin), "--out", f"{exp}/data/{dataset}"],
                ["split", "--store", f"{exp}/data/{dataset}", "--out", f"{exp}/splits/{dataset}.json"]):
        subprocess.run(medssl + [cmd[0], "--settings", record(config, cmd[0], "--dataset", dataset)] + cmd[1:],
                       cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fixed_cost(config_path: Path, dataset: str, steps: tuple[int, int], repeats: int) -> None:
    with scratch_dir("bench_jobs_") as root:  # removed also on an error, Ctrl-C and SIGTERM
        configs = {s: scratch(config_path, dataset, s, root) for s in steps}
        prepare(configs[steps[0]], dataset, root)
        medssl = [sys.executable, "-m", "medssl.cli"]
        exp = root / "results" / "bench_jobs"
        which = ["--study", "hssl", "--run", "tfs", "--dataset", dataset, "--ratio", "100", "--seed", "0"]
        inputs = ["--store", str(exp / "data" / dataset), "--split", str(exp / "splits" / f"{dataset}.json"),
                  "--device", "cpu", "--threads", "1"]
        results: dict[str, dict[int, float]] = defaultdict(dict)
        for s in steps:
            rec = ["--settings", record(configs[s], "finetune", *which)]
            one, two = [], []
            for i in range(repeats):
                out, m = root / f"ft_{s}_{i}", root / f"metrics_{s}_{i}.json"
                one.append(run(medssl + ["finetune", *rec, *inputs, "--out", str(out), "--metrics", str(m)], root)[0])
                c1, _ = run(medssl + ["finetune", *rec, *inputs, "--out", f"{out}b", "--metrics", f"{m}b.json",
                                      "--model", f"{out}b/model.pt"], root)
                c2, _ = run(medssl + ["evaluate", *rec, *inputs, "--model", f"{out}b/model.pt",
                                      "--out", f"{m}c.json"], root)
                two.append(c1 + c2)
            results["one process (finetune, tested in the same process)"][s] = min(one)
            results["two processes (finetune keeping model.pt, then evaluate)"][s] = min(two)
        bare = [sys.executable, "-c", "import torch"]
        torch_cpu = min(run(bare, root)[0] for _ in range(repeats))
        a, b = steps
        print(f"fixed CPU seconds per finetuning job beyond its steps ({dataset}, steps {a} and {b}, best of "
              f"{repeats}; goal <= 1.5 s):")
        width = max(map(len, results))
        for name, cpu in results.items():
            per_step = (cpu[b] - cpu[a]) / (b - a)
            fixed = cpu[a] - a * per_step
            print(f"  {name:{width}s} fixed {fixed:5.2f} s   {per_step * 1000:6.1f} ms/step   "
                  f"(total {cpu[a]:.2f} s at {a} steps, {cpu[b]:.2f} s at {b})")
        print(f"  of which `python -c 'import torch'` alone: {torch_cpu:.2f} s")


def time_split(results: Path) -> None:
    bench = results / "benchmarks"
    if not bench.is_dir():
        print(f"{bench}: no benchmark files (run the workflow first)")
        return
    wall: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    for path in bench.rglob("*.tsv"):
        rule = path.relative_to(bench).parts[0]
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        wall[rule] += float(rows[-1]["s"])
        cpu[rule] += float(rows[-1].get("cpu_time") or 0.0)
        jobs[rule] += 1
    total_w, total_c = sum(wall.values()), sum(cpu.values())
    print(f"time split by rule ({bench}; rules with a benchmark: directive):")
    print(f"  {'rule':12s} {'jobs':>5s} {'wall s':>8s} {'share':>6s} {'CPU s':>8s} {'CPU s/job':>9s}")
    for rule in sorted(wall, key=wall.get, reverse=True):
        print(f"  {rule:12s} {jobs[rule]:5d} {wall[rule]:8.1f} {wall[rule] / total_w:6.1%} {cpu[rule]:8.1f} "
              f"{cpu[rule] / jobs[rule]:9.2f}")
    print(f"  {'total':12s} {sum(jobs.values()):5d} {total_w:8.1f} {'':6s} {total_c:8.1f}")
    print("  (job wall seconds summed; with --cores 2 two jobs run at once, and wall seconds include waiting "
          "for the cores other processes hold)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--dataset", default="msd_spleen")
    p.add_argument("--steps", type=int, nargs=2, default=[8, 200])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--results", default=None, help="results/<experiment> of a finished run (default: the config's)")
    p.add_argument("--split-only", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not args.split_only:
        fixed_cost(Path(args.config).resolve(), args.dataset, tuple(args.steps), args.repeats)
    if args.results:
        results = Path(args.results)
    else:
        with open(args.config) as f:
            results = REPO / "results" / yaml.safe_load(f)["experiment"]
    time_split(results)


if __name__ == "__main__":
    main()
