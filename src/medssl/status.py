"""Where a run stands: ``medssl status --config C [--watch S]``, from the files under ``results/<experiment>/``
alone (no Snakemake needed; it works while a SLURM run is going, on any node that sees the folder).

One row per training job of the plan (:class:`medssl.plan.Plan`: every pretraining, every finetuning):

* **state**: ``done`` (its output exists: ``model.pt`` of a pretraining, the metrics JSON of a finetuning);
  ``failed`` (its job log says ``medssl: error`` or holds a traceback); ``running`` (its log, ``log.partial.csv``
  or ``checkpoint.pt`` changed within the last :data:`STALE_EPOCHS` epoch times, at least :data:`STALE_MIN_S`);
  ``interrupted`` (it has a checkpoint or partial log, older than that: the next ``snakemake`` resumes it);
  ``not started``.
* **epoch** e / E, from ``log.csv`` or ``log.partial.csv`` and the plan's epochs;
* **last**: the latest loss and validation score (or monitor) of its log;
* **spent**: the seconds its epochs took; **left**: for a running or interrupted job, its remaining epochs at
  its own mean epoch time.

The total line counts the jobs done, the GPU-hours spent (the training jobs' epoch times) and the GPU-hours
left by the cost model (:mod:`medssl.cost`: the estimate of each job not done, less the share of its epochs a
running or interrupted job has done).
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

from medssl.layout import Layout
from medssl.plan import Plan
from medssl.train.progress import MONITOR, SCORES, duration, loss_terms, sig

STALE_EPOCHS = 3
STALE_MIN_S = 600.0
ERROR_MARKS = ("medssl: error", "Traceback (most recent call last)")


@dataclass
class JobStatus:
    kind: str  # pretrain | finetune
    name: str  # study/run/pool or study/run/dataset/ratio/seedN
    wildcards: dict
    state: str
    epoch: int
    epochs: int
    last: str
    spent_s: float
    left_s: float | None


def _rows(folder: Path) -> list[dict]:
    for name in ("log.csv", "log.partial.csv"):
        path = folder / name
        if path.is_file():
            with open(path, newline="") as f:
                return list(csv.DictReader(f))
    return []


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _last(rows: list[dict]) -> str:
    if not rows:
        return ""
    row = rows[-1]
    parts = [f"{k} {sig(v)}" for k in loss_terms(row)[:1] if (v := _float(row.get(k))) is not None]
    for k in SCORES + MONITOR[:1]:
        scored = [_float(r.get(k)) for r in rows if _float(r.get(k)) is not None]
        if scored:
            parts.append(f"{k} {sig(scored[-1])}")
    return ", ".join(parts)


def job_status(kind: str, name: str, wildcards: dict, folder: Path, output: Path, log: Path, epochs: int,
               now: float) -> JobStatus:
    rows = [r for r in _rows(folder) if (_float(r.get("epoch")) or 0) > 0]
    times = [t for r in rows if (t := _float(r.get("time"))) is not None]
    epoch = int(_float(rows[-1]["epoch"])) if rows else 0
    spent = sum(times)
    touched = [p.stat().st_mtime for p in (log, folder / "log.partial.csv", folder / "checkpoint.pt") if p.exists()]
    stale = max(STALE_MIN_S, STALE_EPOCHS * (spent / len(times) if times else 0.0))
    text = log.read_text(errors="replace") if log.is_file() else ""
    if output.exists():
        state = "done"
    elif any(mark in text for mark in ERROR_MARKS) and not (touched and now - max(touched) < 60):
        state = "failed"
    elif touched and now - max(touched) < stale:
        state = "running"
    elif (folder / "checkpoint.pt").exists() or (folder / "log.partial.csv").exists():
        state = "interrupted"
    else:
        state = "not started"
    left = (epochs - epoch) * spent / len(times) if state in ("running", "interrupted") and times else None
    return JobStatus(kind, name, wildcards, state, epoch, epochs, _last(rows), spent, left)


def run_status(config: dict, root: str | Path = ".", now: float | None = None) -> list[JobStatus]:
    """Every training job of the resolved ``config``, read from the folder ``root`` holds (module docstring)."""
    root = Path(root)
    now = time.time() if now is None else now
    lay = Layout.of(config)
    plan = Plan.of(config)
    out = []
    for study, run, pool in plan.pretrains:
        folder = root / lay.pretrain_dir(study, run, pool)
        epochs = config["studies"][study]["runs"][run]["pretrain"]["epochs"]
        out.append(job_status("pretrain", f"{study}/{run}/{pool}", {"study": study, "run": run, "pool": pool},
                              folder, root / lay.pretrained_model(study, run, pool),
                              root / lay.log("pretrain", study, run, pool), epochs, now))
    for study, run, dataset, ratio, seed in plan.evaluations:
        folder = root / lay.finetune_dir(study, run, dataset, ratio, seed)
        epochs = config["studies"][study]["runs"][run]["finetune"]["epochs"]
        w = {"study": study, "run": run, "dataset": dataset, "ratio": ratio, "seed": seed}
        out.append(job_status("finetune", f"{study}/{run}/{dataset}/{ratio}/seed{seed}", w, folder,
                              root / lay.metrics(*w.values()),
                              root / lay.log("finetune", study, run, dataset, ratio, f"seed{seed}"), epochs, now))
    return out


def gpu_hours_left(config: dict, states: list[JobStatus], root: str | Path = ".") -> float:
    """The cost model's GPU-hours of the jobs not done (a started job's share of epochs done subtracted)."""
    from medssl import cost

    sizes = {d: cost.dataset_size(config, d, root) for d in config["datasets"]}
    measured = cost.read_measurements(cost.throughput_file(config, root))  # as the estimate: measured if known
    left = 0.0
    for s in states:
        if s.state == "done":
            continue
        hours = cost.job_cost(config, s.kind, s.wildcards, sizes, measured).gpu_hours
        left += hours * (1 - s.epoch / s.epochs if s.epochs else 1)
    return left


def format_status(config: dict, states: list[JobStatus], root: str | Path = ".") -> str:
    """The table and the total line."""
    header = ("job", "state", "epoch", "last", "spent", "left")
    lines = [(f"{s.kind} {s.name}", s.state, f"{s.epoch}/{s.epochs}", s.last,
              duration(s.spent_s) if s.spent_s else "", duration(s.left_s) if s.left_s is not None else "")
             for s in states]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [f"Experiment {config['experiment']}: {len(states)} training jobs", "", fmt.format(*header),
           "  ".join("-" * w for w in widths)]
    out += [fmt.format(*line).rstrip() for line in lines]
    counts = {state: sum(s.state == state for s in states)
              for state in ("done", "running", "interrupted", "failed", "not started")}
    spent = sum(s.spent_s for s in states) / 3600
    out += ["", f"total: {counts['done']} of {len(states)} done, " +
            ", ".join(f"{n} {state}" for state, n in counts.items() if n and state != "done") +
            ("; " if any(n for st_, n in counts.items() if st_ != "done") else "") +
            f"{spent:.3g} GPU-hours spent, {gpu_hours_left(config, states, root):.3g} GPU-hours left by the cost "
            "model (medssl cost)"]
    return "\n".join(out)


def watch(config: dict, root: str | Path, every: float) -> None:
    """Refresh the status every ``every`` seconds until interrupted."""
    clear = "\x1b[2J\x1b[H" if os.isatty(1) else ""
    while True:
        print(clear + format_status(config, run_status(config, root), root), flush=True)
        time.sleep(every)
