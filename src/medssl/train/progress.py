"""What a training job shows while it runs: one log line per epoch, ``progress.png`` beside its ``log.csv``, and
optionally TensorBoard event files.

* **Log line** (:func:`epoch_line`), one per epoch, numbers to 4 significant digits with their units::

      epoch 3/100: loss 0.5304 (rec 0.1234, task 0.2135); val_dice 0.8123; lr 5e-04; 3.318 s/epoch; 5.42 min left

* **progress.png** (:func:`plot_progress`): every loss term, the validation score (finetuning) or the
  representation monitor (pretraining: kNN accuracies and the embedding spread, :mod:`medssl.train.monitor`),
  the learning rate, seconds per epoch and, on CUDA, peak GPU memory, against epochs. Rewritten atomically
  after a validation round (finetuning) or an epoch (pretraining) once :data:`MIN_INTERVAL_S` have passed
  since the last drawing, and always at the last epoch: a paper run draws it every round (rounds take
  minutes), the demo once a job (importing matplotlib and drawing cost about 0.4 s of CPU).
* **TensorBoard** (``loggers: [tensorboard]``, the ``tensorboard`` extra): the same scalars in
  ``tensorboard/`` in the job folder, one step an epoch; a resumed job purges the steps after its checkpoint,
  so no epoch is written twice.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

log = logging.getLogger("medssl.train")

PNG = "progress.png"
TENSORBOARD = "tensorboard"
MIN_INTERVAL_S = 30.0
SCORES = ("val_dice", "val_psnr")  # finetuning's validation score (higher is better)
MONITOR = ("knn_task", "knn_group", "embed_std")  # pretraining's representation monitor
BOOKKEEPING = ("epoch", "step", "lr", "time", "gpu_mem_gb")
UNITS = {"val_psnr": " dB", "gpu_mem_gb": " GB"}


def sig(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits."""
    return f"{value:.{digits}g}"


def duration(seconds: float) -> str:
    """A duration with its unit: s below 2 minutes, min below 2 hours, else h (4 significant digits)."""
    if seconds < 120:
        return f"{sig(seconds)} s"
    if seconds < 7200:
        return f"{sig(seconds / 60)} min"
    return f"{sig(seconds / 3600)} h"


def loss_terms(row: dict) -> list[str]:
    """The loss columns of a log row (``loss`` first): everything that is not a score or bookkeeping."""
    return [k for k in row if k not in BOOKKEEPING + SCORES + MONITOR]


def _present(row: dict, key: str) -> bool:
    value = row.get(key)
    return value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))


def epoch_line(row: dict, epochs: int, seconds_left: float | None) -> str:
    """The log line of one epoch (module docstring)."""
    terms = loss_terms(row)
    parts = []
    if terms:
        head, rest = terms[0], [t for t in terms[1:] if _present(row, t)]
        text = f"{head} {sig(row[head])}" if _present(row, head) else head
        parts.append(text + (f" ({', '.join(f'{t} {sig(row[t])}' for t in rest)})" if rest else ""))
    shown = [f"{k} {sig(row[k])}{UNITS.get(k, '')}" for k in SCORES + MONITOR if _present(row, k)]
    if shown:
        parts.append(", ".join(shown))
    if _present(row, "lr"):
        parts.append(f"lr {float(row['lr']):.4g}")
    if _present(row, "time"):
        parts.append(f"{sig(float(row['time']))} s/epoch")
    if _present(row, "gpu_mem_gb"):
        parts.append(f"peak GPU memory {sig(float(row['gpu_mem_gb']))} GB")
    if seconds_left is not None:
        parts.append(f"{duration(seconds_left)} left")
    return f"epoch {row['epoch']}/{epochs}: " + "; ".join(parts)


def seconds_left(rows: list[dict], epochs: int) -> float | None:
    """The time the remaining epochs will take at the mean of the epochs this job has run so far."""
    times = [float(r["time"]) for r in rows if _present(r, "time") and int(r["epoch"]) > 0]
    if not times or not rows:
        return None
    return max(epochs - int(rows[-1]["epoch"]), 0) * sum(times) / len(times)


def plot_progress(rows: list[dict], png: str | Path, *, title: str) -> None:
    """Draw ``rows`` (log.csv's) into ``png``, atomically (module docstring)."""
    # matplotlib's object API with the Agg canvas: no pyplot (its import and figure registry) and fixed margins
    # instead of a tight-layout pass; each finetuning job of the demo draws once, so this is its cost
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from medssl.io import atomic_path

    def series(key):
        pts = [(int(r["epoch"]), float(r[key])) for r in rows if _present(r, key)]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig = Figure(figsize=(10, 6.4), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, gridspec_kw={"left": 0.09, "right": 0.95, "bottom": 0.08, "top": 0.89,
                                           "wspace": 0.22, "hspace": 0.38})
    (ax_loss, ax_score), (ax_lr, ax_time) = axes
    terms = loss_terms(rows[-1]) if rows else []
    for key in terms:
        ax_loss.plot(*series(key), marker=".", label=key)
    ax_loss.set_title("losses (epoch means)")
    if terms:
        ax_loss.legend(fontsize=8)
    scored = [k for k in SCORES + MONITOR if any(_present(r, k) for r in rows)]
    for key in scored:
        ax_score.plot(*series(key), marker="o", label=key + UNITS.get(key, ""))
    ax_score.set_title("validation score" if any(k in SCORES for k in scored) else
                       "representation monitor (kNN accuracy, embedding spread)" if scored else "no score")
    if scored:
        ax_score.legend(fontsize=8)
    ax_lr.plot(*series("lr"), marker=".")
    ax_lr.set_title("learning rate")
    ax_time.plot(*series("time"), marker=".", color="tab:gray")
    ax_time.set_title("seconds per epoch" + (" (peak GPU memory, GB, right)" if any(
        _present(r, "gpu_mem_gb") for r in rows) else ""))
    if any(_present(r, "gpu_mem_gb") for r in rows):
        twin = ax_time.twinx()
        twin.plot(*series("gpu_mem_gb"), marker="s", color="tab:purple")
    for ax in axes.flat:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    last = rows[-1] if rows else {}
    fig.suptitle(f"{title}: epoch {last.get('epoch', 0)}", fontsize=11)
    with atomic_path(Path(png), suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


class Progress:
    """Per epoch: the log line, progress.png (throttled, module docstring) and TensorBoard scalars."""

    def __init__(self, out_dir: str | Path, *, title: str, epochs: int, loggers=(), start_epoch: int = 0,
                 min_interval: float = MIN_INTERVAL_S):
        self.out_dir, self.title, self.epochs = Path(out_dir), title, int(epochs)
        self.min_interval = min_interval
        self.last_drawn = time.monotonic()  # the first drawing waits one interval (or the last epoch)
        self.writer = None
        if "tensorboard" in loggers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise RuntimeError("loggers: [tensorboard] needs the tensorboard package: "
                                   "pip install 'medssl[tensorboard]'") from err
            # a resumed job drops the steps after its checkpoint: no epoch is written twice
            self.writer = SummaryWriter(str(self.out_dir / TENSORBOARD), purge_step=start_epoch + 1)

    def update(self, rows: list[dict], *, scored: bool = True) -> None:
        """After an epoch (``scored``: its row holds a validation or monitor round)."""
        row = rows[-1]
        log.info("%s", epoch_line(row, self.epochs, seconds_left(rows, self.epochs)))
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and _present(row, key):
                    self.writer.add_scalar(key, float(value), int(row["epoch"]))
            self.writer.flush()
        last = int(row["epoch"]) >= self.epochs
        if last or (scored and time.monotonic() - self.last_drawn >= self.min_interval):
            self.draw(rows)

    def draw(self, rows: list[dict]) -> None:
        plot_progress(rows, self.out_dir / PNG, title=self.title)
        self.last_drawn = time.monotonic()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
