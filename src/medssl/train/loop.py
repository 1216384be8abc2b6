"""The generic epoch runner shared by pretraining and finetuning.

:class:`Loop` trains a ``module`` whose ``forward(batch)`` returns a dict of scalar tensors with a ``"loss"``
entry (a :class:`~medssl.methods.PretrainMethod`, or the supervised wrapper of finetuning). Per step: move
the batch to the device (non-blocking; channels_last), ``prepare`` it (no grad: augmentation,
noise, normalisation), forward under bf16 autocast on CUDA (float32 on CPU), backward, optimiser step,
``after_step``. The scheduler steps once per epoch.

Files in ``out_dir``:

* ``log.csv``: one row per epoch: ``epoch`` (1-based), ``step`` (optimiser steps so far), the mean of every
  loss term the module returns (``loss`` first), the columns returned by ``on_epoch_end`` (e.g.
  ``val_dice``, or the representation monitor's), ``lr`` (used during the epoch), ``time`` (seconds) and, on
  CUDA, ``gpu_mem_gb`` (peak allocated GPU memory of the epoch); with ``first_row``, a row for epoch 0 (before
  training: the monitor's baseline) comes first. While the job runs the rows go to
  ``log.partial.csv`` (rewritten atomically every epoch); :meth:`Loop.finish`, called once the final
  ``model.pt`` is written, renames it to ``log.csv``. So a job that fails leaves the previous run's ``log.csv``
  beside the previous run's ``model.pt``, never a new log beside an old model.
* ``checkpoint.pt`` every ``checkpoint_every`` epochs (format in :mod:`medssl.train.checkpoint`), and at the
  last epoch unless ``checkpoint_at_end=False`` (pretraining and finetuning write their final ``model.pt``
  atomically instead and then :meth:`Loop.finish` removes the checkpoint, which only a job still to be
  resumed needs: a 22 M-parameter model with its Adam state is ~260 MB per job); on start an existing checkpoint with the same config hash is resumed
  ("resuming from epoch E"), with RNG states restored, so a resumed CPU run is bit-identical to a straight
  one; a checkpoint that cannot be used (cut short, damaged, of another structure) is the job's own scratch
  file: a warning names it and why, and the job starts afresh (:meth:`Loop.try_resume`). A non-finite loss
  raises :class:`NonFiniteLossError` before anything is written for that epoch.

* ``progress.png`` and one log line per epoch (:mod:`medssl.train.progress`); TensorBoard event files with
  ``loggers: [tensorboard]``. A progress bar only on a terminal: a log file gets the epoch lines, no
  carriage returns.

Loss values are checked every step on CPU; on CUDA they stay on the device and are checked every
``sync_every`` steps (the error still names the first bad step), to keep the loop free of per-step syncs.

Several processes (a pretraining on N GPUs, :mod:`medssl.train.distributed`): ``train_module`` is the
DistributedDataParallel wrapper of ``module``; every term the module returns is this process's share
(:mod:`medssl.parallel`), so the loop back-propagates ``loss x N`` (DDP averages gradients: their mean is then
the sum of the shares, the single-process gradient) and sums the logged terms over the processes. Process 0
alone writes the log, the curves and the checkpoints; every process resumes from the same checkpoint.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from medssl import parallel
from medssl.data.loaders import batch_to_device
from medssl.io import write_text
from medssl.train import checkpoint as ckpt
from medssl.train import device as dev
from medssl.train.optim import Adam
from medssl.train.progress import MONITOR, SCORES, Progress
from medssl.train.seeding import get_rng_state, set_rng_state

log = logging.getLogger("medssl.train")

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
LOG_PARTIAL = "log.partial.csv"  # the log of a job still running
MODEL = "model.pt"
SCORED = SCORES + MONITOR  # a row holding one of these ends a validation or monitor round


def ensure_logging() -> None:
    """Send medssl.train INFO messages to stderr when nobody configured logging (of several processes, only
    process 0's; the others say warnings only)."""
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    if parallel.rank():
        log.setLevel(logging.WARNING)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; names the epoch and the step."""

    def __init__(self, epoch: int, step: int, epoch_step: int, value: float, checkpoint: str):
        self.epoch, self.step, self.epoch_step, self.value = epoch, step, epoch_step, value
        super().__init__(f"non-finite loss ({value}) at epoch {epoch}, step {step} (step {epoch_step} of the "
                         f"epoch); {checkpoint}")


def write_log(path: Path, rows: list[dict]) -> None:
    cols: list[str] = []
    for row in rows:
        for k in row:
            if k not in cols:
                cols.append(k)
    tail = [c for c in ("lr", "time") if c in cols]
    cols = [c for c in cols if c not in tail] + tail
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


class Loop:
    """Train ``module`` for ``epochs`` epochs over ``loader`` (see module docstring)."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, loader,
                 *, device: torch.device, out_dir: str | Path, epochs: int, kind: str,
                 checkpoint_every: int = 1, config_hash: str = "",
                 prepare: Callable[[dict], dict] | None = None, after_step: Callable[[], None] | None = None,
                 on_epoch_end: Callable[[int], dict | None] | None = None,
                 extra_state: Callable[[], dict] | None = None, load_extra: Callable[[dict], None] | None = None,
                 desc: str = "train", sync_every: int | None = None, progress: bool = True,
                 checkpoint_at_end: bool = True, first_row: Callable[[], dict] | None = None,
                 loggers: tuple[str, ...] = (), title: str | None = None, train_module: torch.nn.Module | None = None):
        self.module, self.optimizer, self.scheduler, self.loader = module, optimizer, scheduler, loader
        self.train_module = train_module if train_module is not None else module  # what a step calls
        self.world, self.main = parallel.world_size(), parallel.rank() == 0
        self.device = torch.device(device)
        self.out_dir = Path(out_dir)
        self.epochs, self.kind, self.checkpoint_every = int(epochs), kind, int(checkpoint_every)
        self.config_hash = config_hash
        self.prepare, self.after_step, self.on_epoch_end = prepare, after_step, on_epoch_end
        self.extra_state, self.load_extra = extra_state, load_extra
        self.desc, self.progress = desc, progress
        self.checkpoint_at_end = checkpoint_at_end
        self.first_row, self.loggers, self.title = first_row, tuple(loggers), title or desc
        self.show: Progress | None = None
        self.sync_every = sync_every or (25 if dev.is_cuda(self.device) else 1)
        self.memory_format = dev.memory_format(self.device)
        self.rows: list[dict] = []
        self.epoch = 0  # completed epochs
        self.step = 0
        self.last_checkpoint: int | None = None

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    def _generators(self) -> list[torch.Generator]:
        """Private RNGs of the module's parts (e.g. ``PretrainMethod.generator``), saved for exact resume."""
        gens = []
        for m in self.module.modules():
            g = getattr(m, "generator", None)
            if isinstance(g, torch.Generator) and all(g is not h for h in gens):
                gens.append(g)
        return gens

    def save_checkpoint(self) -> None:
        state = {
            "format": ckpt.FORMAT, "kind": self.kind, "epoch": self.epoch, "step": self.step,
            "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": get_rng_state(), "generators": [g.get_state() for g in self._generators()],
            "config_hash": self.config_hash, "log": self.rows,
            "extra": self.extra_state() if self.extra_state else {},
        }
        ckpt.save(state, self.checkpoint_path)
        self.last_checkpoint = self.epoch

    def try_resume(self) -> bool:
        """Resume from ``checkpoint.pt`` when it holds this job's state; return whether it did.

        The checkpoint is the job's own scratch file, rewritten at the next checkpoint: whatever is wrong
        with it (truncated, corrupt or changed bytes, unsafe content, another structure, other settings, a
        state that does not fit the module) is logged as a warning naming the file and why, and the job starts
        afresh. Nothing is left half restored: the module, optimiser, scheduler, RNGs and extra state are put
        back as they were when a restore fails midway. (A model file given by the user is another matter:
        :func:`medssl.train.checkpoint.load_state_dict` refuses a bad one.)
        """
        path = self.checkpoint_path
        if not path.exists():
            return False
        try:
            state = ckpt.load_checkpoint(path, map_location=self.device)
        except ckpt.CheckpointError as err:
            log.warning("%s; starting afresh", err)
            return False
        except OSError as err:
            log.warning("%s: cannot be read (%s); starting afresh", path, err)
            return False
        if state.get("config_hash") != self.config_hash or state.get("kind") != self.kind:
            log.warning("%s: checkpoint was written with other settings (hash %s, now %s); starting afresh",
                        path, state.get("config_hash"), self.config_hash)
            return False
        before = self._resume_snapshot()
        try:
            self._restore(state)
        except Exception as err:  # noqa: BLE001 - any misfit of a damaged state: start afresh
            self._restore(before)
            why = str(err).strip().splitlines()[0] if str(err).strip() else ""
            log.warning("%s: the checkpoint does not fit this job (%s%s); starting afresh", path,
                        type(err).__name__, f": {why}" if why else "")
            return False
        self.last_checkpoint = self.epoch
        log.info("resuming from epoch %d (%s)", self.epoch, path)
        return True

    def _resume_snapshot(self) -> dict:
        """The state :meth:`_restore` sets, as it is now (a fresh job's), to put back if a restore fails."""
        return {
            "module": {k: v.detach().clone() for k, v in self.module.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "rng": get_rng_state(), "generators": [g.get_state() for g in self._generators()],
            "epoch": self.epoch, "step": self.step, "log": list(self.rows),
            "extra": self.extra_state() if self.extra_state and self.load_extra else {},
        }

    def _restore(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        for g, st in zip(self._generators(), state.get("generators", [])):
            g.set_state(st.cpu())
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.rows = list(state.get("log", []))
        if self.load_extra:
            self.load_extra(state.get("extra", {}))

    # ------------------------------------------------------------------ training
    def run(self) -> list[dict]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.try_resume()
        self.show = Progress(self.out_dir, title=self.title, epochs=self.epochs, loggers=self.loggers,
                             start_epoch=self.epoch) if self.main else None
        try:
            if self.epoch >= self.epochs:
                if self.rows and self.main:
                    write_log(self.out_dir / LOG_PARTIAL, self.rows)
                    self.show.draw(self.rows)
                return self.rows
            if self.epoch == 0 and not self.rows and self.first_row is not None and self.main:
                self.rows.append({"epoch": 0, "step": 0, **self.first_row()})
                self.show.update(self.rows)
            n_batches = len(self.loader)
            bar = tqdm(total=(self.epochs - self.epoch) * n_batches, desc=self.desc, file=sys.stderr,
                       disable=not (self.progress and self.main and sys.stderr.isatty()), mininterval=1.0,
                       dynamic_ncols=True, leave=False)  # a terminal only: a log file gets one line an epoch
            try:
                for epoch in range(self.epoch + 1, self.epochs + 1):
                    self._run_epoch(epoch, bar)
            finally:
                bar.close()
        finally:
            if self.show is not None:
                self.show.close()
        return self.rows

    def _check(self, pending: list, keys: list[str], sums: np.ndarray, epoch: int, first_step: int) -> None:
        # (n, terms); of several processes, the sums of their shares: the single-process values
        vals = parallel.all_reduce_sum(torch.stack(pending)).cpu().numpy().astype(np.float64)
        bad = ~np.isfinite(vals[:, 0])
        if bad.any():
            i = int(np.argmax(bad))
            epoch_step = first_step + i
            where = (f"last checkpoint {self.checkpoint_path} (epoch {self.last_checkpoint}) left untouched"
                     if self.last_checkpoint is not None else "no checkpoint written yet")
            raise NonFiniteLossError(epoch, self.step - len(pending) + i + 1, epoch_step, float(vals[i, 0]), where)
        sums += vals.sum(0)

    def _run_epoch(self, epoch: int, bar) -> None:
        module, opt, device = self.train_module, self.optimizer, self.device
        sampler = getattr(self.loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        module.train()
        lr = opt.param_groups[0]["lr"]
        if dev.is_cuda(device):
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        keys: list[str] | None = None
        sums: np.ndarray | None = None
        pending: list[torch.Tensor] = []
        n_steps = 0
        first_pending = 1
        for batch in self.loader:
            batch = batch_to_device(batch, device, self.memory_format)
            if self.prepare is not None:
                with torch.no_grad():
                    batch = self.prepare(batch)
            with dev.autocast(device):
                out = module(batch)
            loss = out["loss"]
            opt.zero_grad(set_to_none=True)
            (loss * self.world if self.world > 1 else loss).backward()  # DDP averages: the mean of N x shares
            opt.step()
            if self.after_step is not None:
                self.after_step()
            self.step += 1
            n_steps += 1
            if keys is None:
                keys = ["loss"] + [k for k, v in out.items()
                                   if k != "loss" and torch.is_tensor(v) and v.numel() == 1]
                sums = np.zeros(len(keys))
            pending.append(torch.stack([out[k].detach().float().reshape(()) for k in keys]))
            if len(pending) >= self.sync_every:
                self._check(pending, keys, sums, epoch, first_pending)
                first_pending = n_steps + 1
                pending = []
                bar.set_postfix(epoch=epoch, loss=f"{sums[0] / n_steps:.4g}", refresh=False)
            bar.update(1)
        if pending:
            self._check(pending, keys, sums, epoch, first_pending)
        if n_steps == 0:
            raise RuntimeError(f"{self.desc}: epoch {epoch} produced no batches")
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch = epoch
        row = {"epoch": epoch, "step": self.step}
        row.update({k: float(s / n_steps) for k, s in zip(keys, sums)})
        if self.on_epoch_end is not None:
            row.update(self.on_epoch_end(epoch) or {})
        row["lr"] = lr
        row["time"] = round(time.perf_counter() - t0, 4)
        if dev.is_cuda(device):
            row["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 4)
        self.rows.append(row)
        if not self.main:  # process 0 writes for all
            return
        write_log(self.out_dir / LOG_PARTIAL, self.rows)
        if self.show is not None:
            self.show.update(self.rows, scored=any(row.get(k) is not None for k in SCORED))
        last = epoch == self.epochs
        if (last and self.checkpoint_at_end) or (not last and epoch % self.checkpoint_every == 0):
            self.save_checkpoint()

    def finish(self) -> None:
        """Once the job's final output is written: ``log.partial.csv`` becomes ``log.csv`` and ``checkpoint.pt``
        is removed (nothing is left to resume)."""
        partial = self.out_dir / LOG_PARTIAL
        if partial.exists():
            os.replace(partial, self.out_dir / LOG)
        self.checkpoint_path.unlink(missing_ok=True)


def epoch_batches(stage) -> tuple[int | None, int | None]:
    """``(max_batches, batches)`` per epoch of a stage (:class:`~medssl.settings.PretrainStage` or
    :class:`~medssl.settings.FinetuneStage`), for :func:`~medssl.data.loaders.make_loader`.

    Without ``steps`` an epoch is one pass over the data, capped at ``steps_per_epoch`` (the papers'
    semantics): ``(steps_per_epoch, None)``. With ``steps`` (a total step budget that does not shrink with
    the data: a 5 % label subset trains as many steps as the full set, as paper A's 10k finetuning epochs
    give small subsets many passes) every epoch is exactly ``ceil(steps / epochs)`` batches drawn from
    successive permutations, so ``epochs`` only sets how often the model is validated, logged and
    checkpointed and the poly schedule is stepped: ``(None, ceil(steps / epochs))``.
    """
    if stage.steps is None:
        return stage.steps_per_epoch, None
    if stage.steps_per_epoch is not None:
        raise ValueError(f"steps ({stage.steps}) and steps_per_epoch ({stage.steps_per_epoch}) are exclusive: "
                         "set one of them")
    return None, -(-int(stage.steps) // max(int(stage.epochs), 1))


def build_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with torch's fused kernel (one kernel over all tensors; CPU and CUDA). Same update rule as the
    multi-tensor kernel, different float rounding; a seed still gives identical numbers on the CPU. With
    channels_last it saves 2-17 ms a step on the demo's networks (``bench/bench_train.py --layouts``)."""
    return Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def poly_lambda(epochs: int, power: float):
    """Multiplier of the lr after ``c`` completed epochs: (1 - c/epochs)^power. Power 0 is a constant lr (paper
    B), 1 a linear decay to 0 (paper A's pretraining), 0.9 the poly policy (paper A's finetuning)."""
    def f(c: int) -> float:
        return max(0.0, 1.0 - c / max(epochs, 1)) ** power
    return f
