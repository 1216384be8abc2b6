"""Evaluation of a finetuned model on the test patients (``medssl evaluate``).

The scored slices (below) of the split's test patients are predicted in store order (by case, then slice) and reassembled
per case (a "volume"; cine datasets have one case per frame, both belonging to one patient). The metrics
JSON holds (conventions: :mod:`medssl.metrics`):

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
* Denoising (study ``downstream: denoising``): inputs get zero-mean Gaussian noise (``noise_sigma``) drawn
  from a CPU generator seeded with the evaluation seed (identical noise for every run), the output is
  compared with the clean image: ``psnr`` = PSNR of the MSE pooled over all test pixels (data range 1.0),
  ``per_volume[*].psnr`` per case; ``noisy_psnr`` = the same PSNR of the noisy input itself (the bar a
  denoiser must clear); segmentation fields are empty/null and ``classes`` is ``[]``.

``<out>_pred.npz`` beside the JSON (``seed0.json`` -> ``seed0_pred.npz``): ``image``, ``label``, ``pred``
(K, H, W) and ``rows`` (K,) for the slice with the most ground-truth foreground of each test patient
(sorted, at most 8). Denoising: ``image`` is the noisy input, ``label`` the clean image, ``pred`` the output.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from medssl import config as cfg
from medssl import metrics as M
from medssl.io import atomic_path, write_json
from medssl.models import config_width
from medssl.train import checkpoint as ckpt
from medssl.train import common
from medssl.train import device as dev
from medssl.train.loop import ensure_logging
from medssl.layout import Layout

log = logging.getLogger("medssl.train")

N_FIGURE_SLICES = 8
EVAL_BATCH = 32


@torch.no_grad()
def predict_batches(model: torch.nn.Module, store, rows: np.ndarray, device: torch.device, *,
                    batch_size: int = EVAL_BATCH, input_norm: str = "none", noise_sigma: float | None = None,
                    noise_seed: int = 0) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(rows, inputs, outputs, labels)`` per batch, tensors on ``device``; outputs are float32 logits
    (B, C, H, W). With ``noise_sigma`` the inputs are noisy (clean image = ``store.images``)."""
    was_training = model.training
    model.eval()
    norm = common.normaliser(input_norm)
    mf = dev.memory_format(device)
    gen = torch.Generator().manual_seed(int(noise_seed)) if noise_sigma is not None else None
    try:
        for i in range(0, len(rows), batch_size):
            r = np.asarray(rows[i:i + batch_size])
            img = torch.from_numpy(np.asarray(store.images[r])).to(device, non_blocking=True).float()
            img = img.unsqueeze(1)
            lab = torch.from_numpy(np.asarray(store.labels[r])).to(device, non_blocking=True).long()
            x = common.add_noise(img, noise_sigma, gen) if noise_sigma is not None else img
            inp = x
            x = norm(x).contiguous(memory_format=mf)
            with dev.autocast(device):
                out = model(x)
            yield r, inp, out.float(), lab
    finally:
        model.train(was_training)


def validation_score(model, store, rows, device, *, denoise: bool, input_norm: str, noise_sigma: float,
                     batch_size: int = EVAL_BATCH) -> float:
    """Model selection score: mean foreground Dice (slice-pooled) or PSNR (pooled MSE), higher is better."""
    n = store.n_classes
    conf = torch.zeros(n * n, dtype=torch.int64, device=device)
    sq, count = 0.0, 0
    for r, _, out, lab in predict_batches(model, store, rows, device, batch_size=batch_size,
                                          input_norm=input_norm, noise_sigma=noise_sigma if denoise else None,
                                          noise_seed=10_007):
        if denoise:
            clean = torch.from_numpy(np.asarray(store.images[r], dtype=np.float32)).to(device)
            sq += float(((out[:, 0] - clean) ** 2).sum())
            count += clean.numel()
        else:
            pred = out.argmax(1)
            conf += torch.bincount((lab * n + pred).flatten(), minlength=n * n)
    if denoise:
        return M.psnr_from_mse(sq / max(count, 1))
    score = M.nanmean_foreground(M.dice_from_confusion(conf.view(n, n).cpu().numpy()))
    return 0.0 if math.isnan(score) else score


def held_out_rows(store, patients, slice_filter: str) -> np.ndarray:
    """Rows scored for held-out ``patients`` (validation and test): the slices the study's ``slice_filter``
    keeps, so that models are selected and tested on the population they were trained on. Paper A trains,
    pretrains and draws its label budgets from foreground slices only (Table 1's counts), and its 20 % test
    split is taken from the same aggregated slice set, so ``foreground`` scores the test patients'
    foreground slices; ``all`` (paper B) scores every slice. A patient set without foreground slices falls
    back to all its slices, as pretraining does. The all-slice scores are written beside
    (:func:`all_slice_scores`)."""
    rows = store.rows(patients, foreground_only=slice_filter == "foreground")
    if slice_filter == "foreground" and len(rows) == 0:
        rows = store.rows(patients)
    return rows


def all_slice_scores(model, store, test_rows: np.ndarray, scored_rows: np.ndarray, scored_pred: np.ndarray,
                     device, *, input_norm: str) -> dict:
    """Dice/IoU over *every* slice of the test patients (the slices ``held_out_rows`` left out are predicted
    here): ``{"n_slices", "slice_pooled", "volume_mean": {dice, iou, mean_dice, miou}}`` (no HD95)."""
    extra = np.setdiff1d(test_rows, scored_rows)
    preds = [np.asarray(scored_pred)]
    for _, _, out, _ in predict_batches(model, store, extra, device, input_norm=input_norm):
        preds.append(out.argmax(1).to(torch.uint8).cpu().numpy())
    rows = np.concatenate([np.asarray(scored_rows), extra])
    order = np.argsort(rows, kind="stable")
    rows, pred = rows[order], np.concatenate(preds)[order]
    labels = np.asarray(store.labels[rows])
    n, names = store.n_classes, store.class_names
    cases = store.index.set_index("row").loc[rows]["case"].to_numpy()
    per_case = []
    for c in dict.fromkeys(cases):
        cc = M.confusion_matrix(pred[cases == c], labels[cases == c], n)
        per_case.append({"dice": _per_class(M.dice_from_confusion(cc), names),
                         "iou": _per_class(M.iou_from_confusion(cc), names)})
    vm = {k: _mean_of([v[k] for v in per_case], names) for k in ("dice", "iou")}
    vm["mean_dice"], vm["miou"] = _mean_classes(vm["dice"]), _mean_classes(vm["iou"])
    return {"n_slices": int(len(rows)), "slice_pooled": M.segmentation_summary(M.confusion_matrix(pred, labels, n),
                                                                               names), "volume_mean": vm}


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


def _per_class(values, names) -> dict:
    return {n: M.to_json_float(values[i + 1]) for i, n in enumerate(names)}


def _mean_of(dicts: list[dict], names) -> dict:
    out = {}
    for n in names:
        v = [d[n] for d in dicts if d.get(n) is not None]
        out[n] = float(np.mean(v)) if v else None
    return out


def _mean_classes(d: dict) -> float | None:
    v = [x for x in d.values() if x is not None]
    return float(np.mean(v)) if v else None


def case_spacing(store, cases) -> dict | None:
    """{case: (between slices, row, column) mm} from the store meta, or None unless every case has one."""
    table = store.meta.get("spacing") or {}
    out = {}
    for c in cases:
        sp = table.get(str(c))
        if not (isinstance(sp, (list, tuple)) and len(sp) == 3 and all(float(x) > 0 for x in sp)):
            return None
        out[c] = tuple(float(x) for x in sp)
    return out


def load_model(model_path: str | Path, arch: str, out_channels: int, device: torch.device,
               expect: dict | None = None):
    """Build the model of ``model_path``; with ``expect``, first refuse (ckpt.ModelMismatchError) a file whose
    metadata differ (see :func:`medssl.train.checkpoint.check_model`)."""
    state, meta = ckpt.load_state_dict(model_path)
    if expect is not None:
        ckpt.check_model(meta, model_path, **expect)
    arch = meta.get("arch", arch)
    out_channels = int(meta.get("out_channels", out_channels))
    model = common.build_model(arch, out_channels, width=float(meta.get("width", 1.0)))
    model.load_state_dict(state)
    return dev.prepare_module(model, device), meta


def evaluate(config: dict, study: str, run: str, dataset: str, ratio: str, seed: int, model_path: str | Path,
             out_json: str | Path, *, progress: bool = True) -> dict:
    """Evaluate ``model_path`` on ``dataset``'s test patients; write ``out_json`` and its ``_pred.npz``."""
    ensure_logging()
    rs = cfg.run_settings(config, study, run)
    denoise = common.study_options(config, study)["downstream"] == "denoising"
    device = dev.pick_device(config.get("device", "auto"))
    dev.configure(device, config.get("threads"))
    store = common.open_store(config, dataset)
    out_channels = 1 if denoise else store.n_classes
    model, meta = load_model(model_path, rs["arch"], out_channels, device,
                             expect={"kind": "finetune", "arch": rs["arch"], "dataset": dataset, "run": run,
                                     "out_channels": out_channels})
    return evaluate_model(config, study, run, dataset, ratio, seed, model, out_json, device=device,
                          arch=meta.get("arch", rs["arch"]))


def evaluate_model(config: dict, study: str, run: str, dataset: str, ratio: str, seed: int,
                   model: torch.nn.Module, out_json: str | Path, *, device: torch.device,
                   arch: str | None = None) -> dict:
    """Evaluate an in-memory ``model`` (on ``device``) on ``dataset``'s test patients; write ``out_json`` and
    its ``_pred.npz``. ``medssl finetune --metrics`` calls this on the selected model, in its own process."""
    out_json = Path(out_json)
    rs = cfg.run_settings(config, study, run)
    opts = common.study_options(config, study)
    denoise = opts["downstream"] == "denoising"
    store = common.open_store(config, dataset)
    split = common.load_split(config, dataset)
    names = store.class_names
    n = store.n_classes

    test_patients = sorted(split["patients"]["test"])
    all_rows = store.rows(test_patients)
    rows = held_out_rows(store, test_patients, opts["slice_filter"])
    if len(rows) == 0:
        raise ValueError(f"{dataset}: the split has no test slices")
    H, W = store.images.shape[1:]
    pred = np.empty((len(rows), H, W), dtype=np.float32 if denoise else np.uint8)
    noisy = np.empty((len(rows), H, W), dtype=np.float32) if denoise else None
    pos = 0
    for r, inp, out, _ in predict_batches(model, store, rows, device, input_norm=opts["input_norm"],
                                          noise_sigma=opts["noise_sigma"] if denoise else None,
                                          noise_seed=seed):
        k = len(r)
        if denoise:
            pred[pos:pos + k] = out[:, 0].cpu().numpy()
            noisy[pos:pos + k] = inp[:, 0].cpu().numpy()
        else:
            pred[pos:pos + k] = out.argmax(1).to(torch.uint8).cpu().numpy()
        pos += k

    index = store.index.set_index("row").loc[rows]
    cases = index["case"].to_numpy()
    patients = index["patient"].to_numpy()
    case_order = list(dict.fromkeys(cases))  # store order
    result = {
        "study": study, "run": run, "label": rs["label"], "method": rs["method"],
        "arch": arch or rs["arch"], "dataset": dataset, "ratio": str(ratio), "seed": int(seed),
        "synthetic": bool(store.meta.get("synthetic", False)), "downstream": opts["downstream"],
        "n_params": common.n_params(model),
        "model_width": config_width(config), "classes": [] if denoise else names,
    }
    per_volume = []
    if denoise:
        sq = sq_noisy = 0.0
        for c in case_order:
            m = cases == c
            clean = np.asarray(store.images[rows[m]], dtype=np.float32)
            err = float(((pred[m].astype(np.float64) - clean) ** 2).sum())
            sq += err
            sq_noisy += float(((noisy[m].astype(np.float64) - clean) ** 2).sum())
            per_volume.append({"patient": str(patients[m][0]), "case": str(c), "dice": {}, "iou": {},
                               "hd95": {}, "psnr": M.to_json_float(M.psnr_from_mse(err / clean.size))})
        result.update({
            "slice_pooled": {"dice": {}, "iou": {}, "mean_dice": None, "miou": None},
            "per_volume": per_volume,
            "volume_mean": {"dice": {}, "iou": {}, "hd95": {}, "mean_dice": None, "miou": None},
            "confusion": [],
            "psnr": M.to_json_float(M.psnr_from_mse(sq / pred.size)),
            "noisy_psnr": M.to_json_float(M.psnr_from_mse(sq_noisy / pred.size)),
            "hd95_units": None,
        })
    else:
        labels = np.asarray(store.labels[rows])
        conf = M.confusion_matrix(pred, labels, n)
        spacing = case_spacing(store, case_order)
        result["hd95_units"] = "mm" if spacing else "voxels"
        for c in case_order:
            m = cases == c
            cc = M.confusion_matrix(pred[m], labels[m], n)
            hd = M.hd95_per_class(pred[m], labels[m], n, spacing[c] if spacing else None)
            per_volume.append({"patient": str(patients[m][0]), "case": str(c),
                               "dice": _per_class(M.dice_from_confusion(cc), names),
                               "iou": _per_class(M.iou_from_confusion(cc), names),
                               "hd95": _per_class(hd, names)})
        vm = {k: _mean_of([v[k] for v in per_volume], names) for k in ("dice", "iou", "hd95")}
        vm["mean_dice"] = _mean_classes(vm["dice"])
        vm["miou"] = _mean_classes(vm["iou"])
        result.update({
            "slice_pooled": M.segmentation_summary(conf, names),
            "per_volume": per_volume,
            "volume_mean": vm,
            "confusion": conf.tolist(),
            "psnr": None,
            "slice_filter": opts["slice_filter"],
            "n_slices": int(len(rows)),
            "all_slices": all_slice_scores(model, store, all_rows, rows, pred, device,
                                           input_norm=opts["input_norm"]),
        })

    fr = figure_rows(store, test_patients, rows)
    where = {int(r): i for i, r in enumerate(rows)}
    sel = np.array([where[int(r)] for r in fr], dtype=np.int64)
    fig_image = noisy[sel] if denoise else np.asarray(store.images[fr], dtype=np.float32)
    fig_label = np.asarray(store.images[fr], dtype=np.float32) if denoise else np.asarray(store.labels[fr])
    npz = Layout.predictions(out_json)
    with atomic_path(npz, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, image=fig_image.astype(np.float32), label=fig_label, pred=pred[sel], rows=fr)
    write_json(out_json, result)
    if denoise:
        log.info("evaluate %s/%s on %s (%s, seed %d): PSNR %.2f dB", study, run, dataset, ratio, seed,
                 result["psnr"] or float("nan"))
    else:
        log.info("evaluate %s/%s on %s (%s, seed %d): slice-pooled mean Dice %s, mIoU %s", study, run, dataset,
                 ratio, seed, result["slice_pooled"]["mean_dice"], result["slice_pooled"]["miou"])
    return result
