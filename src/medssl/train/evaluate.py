"""Evaluation of a finetuned model on the test patients (``medssl evaluate``, and the end of every
``medssl finetune``), from the finetuning job's settings record (:class:`medssl.jobs.FinetuneJob`).

The scored slices (below) of the split's test patients are predicted in store order (by case, then slice) and reassembled
per case (a "volume"; cine datasets have one case per frame, both belonging to one patient). The study's
downstream task (:mod:`medssl.train.downstream`) predicts and scores them. The metrics JSON holds ``study``,
``run``, ``method``, ``arch``, ``dataset``, ``ratio``, ``seed``, ``synthetic``, ``downstream``,
``n_params``, ``model_width``, ``classes``, then the task's block; for segmentation (conventions:
:mod:`medssl.scoring`):

* ``slice_pooled``: one confusion matrix over every test pixel -> Dice/IoU per class and their means.
* ``per_volume``: Dice, IoU and HD95 per class per case; ``volume_mean``: the mean over cases of each
  class (cases where the class is undefined are skipped); ``mean_dice``/``miou`` = mean over the classes
  of those per-class means.
* Absent classes: a class absent from both prediction and ground truth has Dice/IoU ``null`` and is left
  out of every mean; HD95 is ``null`` when the class is empty in the prediction or the ground truth.
* HD95: 3D surface distances per case, in mm when the store's ``meta.json`` gives every test case's
  ``spacing`` ([between slices, row, column] of the stored, resized pixels; written by the slicer), else in
  voxels of the stored grid (one resized pixel in-plane, one slice through-plane). The extra top-level key
  ``hd95_units`` (``"mm"`` or ``"voxels"``) says which.
* Scored slices: those of the test patients that the study's ``slice_filter`` keeps (:func:`held_out_rows`;
  paper A: foreground slices, paper B: all), as in training; ``slice_filter`` and ``n_slices`` say which,
  and ``all_slices`` holds the slice-pooled and per-volume Dice/IoU over every test slice beside them.
* Denoising (study ``downstream: denoising``): ``psnr``, ``noisy_psnr`` and ``per_volume[*].psnr`` instead,
  segmentation fields empty/null (:class:`medssl.train.downstream.Denoising`).

``<out>_pred.npz`` beside the JSON (``seed0.json`` -> ``seed0_pred.npz``): ``image``, ``label``, ``pred``
(K, H, W) and ``rows`` (K,) for the slice with the most ground-truth foreground of each test patient
(sorted, at most 8), and ``key`` (5,): study, run, dataset, ratio, seed, as strings (the metrics JSON holds
the same fields; reports key their inputs by these, never by path). Denoising: ``image`` is the noisy input,
``label`` the clean image, ``pred`` the output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from medssl.data.store import SliceStore
from medssl.io import atomic_path, write_json
from medssl.jobs import FinetuneJob
from medssl.layout import Layout
from medssl.settings import Runtime
from medssl.train import checkpoint as ckpt
from medssl.train import common
from medssl.train import device as dev
from medssl.train.downstream import downstream_of
from medssl.train.loop import ensure_logging

log = logging.getLogger("medssl.train")

N_FIGURE_SLICES = 8


def held_out_rows(store, patients, slice_filter: str) -> np.ndarray:
    """Rows scored for held-out ``patients`` (validation and test): the slices the study's ``slice_filter``
    keeps, so that models are selected and tested on the population they were trained on. Paper A trains,
    pretrains and draws its label budgets from foreground slices only (Table 1's counts), and its 20 % test
    split is taken from the same aggregated slice set, so ``foreground`` scores the test patients'
    foreground slices; ``all`` (paper B) scores every slice. A patient set without foreground slices falls
    back to all its slices, as pretraining does. The all-slice scores are written beside
    (:func:`medssl.train.downstream.all_slice_scores`)."""
    rows = store.rows(patients, foreground_only=slice_filter == "foreground")
    if slice_filter == "foreground" and len(rows) == 0:
        rows = store.rows(patients)
    return rows


def figure_rows(store, test_patients: list[str], rows: np.ndarray) -> np.ndarray:
    """Per test patient (sorted), the row with the most ground-truth foreground; at most 8."""
    idx = store.index.set_index("row").loc[rows]
    out = []
    for p in sorted(test_patients)[:N_FIGURE_SLICES]:
        prow = idx.index[idx["patient"].to_numpy() == p].to_numpy()
        if len(prow) == 0:
            continue
        fg = np.array([(np.asarray(store.labels[r]) > 0).sum() for r in prow])
        out.append(int(prow[int(np.argmax(fg))]))
    return np.asarray(out, dtype=np.int64)


def load_model(model_path: str | Path, device: torch.device, expect: dict | None = None):
    """Build the model of ``model_path`` as its metadata say (arch, width, output channels); with ``expect``,
    first refuse (ckpt.ModelMismatchError) a file whose metadata differ (see
    :func:`medssl.train.checkpoint.check_model`)."""
    state, meta = ckpt.load_state_dict(model_path)
    if expect is not None:
        ckpt.check_model(meta, model_path, **expect)
    missing = [k for k in ("arch", "out_channels", "width") if k not in meta]
    if missing:
        raise ckpt.ModelMismatchError(f"{model_path}: its metadata lack {', '.join(missing)}: not a model file "
                                      "written by this medssl (or a bare state dict)")
    model = common.build_model(meta["arch"], int(meta["out_channels"]), width=float(meta["width"]))
    model.load_state_dict(state)
    return dev.prepare_module(model, device), meta


def evaluate(job: FinetuneJob, model_path: str | Path, out_json: str | Path, *, store: str | Path,
             split: str | Path, runtime: Runtime, predictions: str | Path | None = None) -> dict:
    """Evaluate ``model_path`` (a model file that finetuning ``job`` kept) on the test patients; write
    ``out_json`` and its ``_pred.npz``. ``store``, ``split``: the job's inputs."""
    ensure_logging()
    task = downstream_of(job.options)
    device = dev.pick_device(runtime.device)
    dev.configure(device, runtime.threads)
    store = common.open_store(job.dataset, store)
    model, _ = load_model(model_path, device,
                          expect={"kind": "finetune", "arch": job.run.arch, "dataset": job.dataset, "run": job.run.name,
                                  "out_channels": task.out_channels(store), "width": job.width})
    return evaluate_model(job, model, out_json, device=device, store=store,
                          split=common.load_split(job.dataset, split), predictions=predictions)


def evaluate_model(job: FinetuneJob, model: torch.nn.Module, out_json: str | Path, *, device: torch.device,
                   store: SliceStore, split: dict, predictions: str | Path | None = None) -> dict:
    """Evaluate an in-memory ``model`` (on ``device``) on the test patients of ``split``; write ``out_json``
    and its ``_pred.npz``. ``medssl finetune`` calls this on the selected model, in its own process, with the
    store and split it trained from. ``predictions``: the ``.npz`` to write (the job's declared output; default
    ``Layout.predictions(out_json)``)."""
    out_json = Path(out_json)
    opts = job.options
    task = downstream_of(opts)
    test_patients = sorted(split["patients"]["test"])
    all_rows = store.rows(test_patients)
    rows = held_out_rows(store, test_patients, opts.slice_filter)
    if len(rows) == 0:
        raise ValueError(f"{job.dataset}: the split has no test slices")
    arrays = task.test_predictions(model, store, rows, device, input_norm=opts.input_norm, seed=job.seed)

    index = store.index.set_index("row").loc[rows]
    cases = index["case"].to_numpy()
    test = {"rows": rows, "all_rows": all_rows, "cases": cases, "patients": index["patient"].to_numpy(),
            "case_order": list(dict.fromkeys(cases))}  # store order
    result = {
        "study": job.study, "run": job.run.name, "method": job.run.method, "arch": job.run.arch,
        "dataset": job.dataset, "ratio": job.ratio, "seed": job.seed,
        "synthetic": bool(store.meta.get("synthetic", False)), "downstream": opts.downstream,
        "n_params": common.n_params(model), "model_width": job.width, "classes": task.classes(store),
    }
    result.update(task.test_metrics(model, store, test, arrays, device))

    fr = figure_rows(store, test_patients, rows)
    where = {int(r): i for i, r in enumerate(rows)}
    sel = np.array([where[int(r)] for r in fr], dtype=np.int64)
    fig_image, fig_label = task.figure_arrays(store, fr, sel, arrays)
    npz = Path(predictions) if predictions is not None else Layout.predictions(out_json)
    with atomic_path(npz, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, image=fig_image.astype(np.float32), label=fig_label, pred=arrays["pred"][sel],
                                rows=fr, key=np.array([job.study, job.run.name, job.dataset, job.ratio,
                                                       str(job.seed)]))
    write_json(out_json, result)
    log.info("evaluate %s/%s on %s (%s, seed %d): %s", job.study, job.run.name, job.dataset, job.ratio, job.seed,
             task.summary(result))
    return result
