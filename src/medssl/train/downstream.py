"""The downstream task of finetuning and evaluation: everything that differs between segmentation and denoising.

A study's ``downstream`` option (:class:`medssl.settings.StudyOptions`) picks one entry of :data:`DOWNSTREAMS`
(:func:`downstream_for`); :mod:`medssl.train.finetune` and :mod:`medssl.train.evaluate` call its methods and
never branch on the task themselves. Each one owns: the output channels, how a training batch gets its
input and target, the training loss, the head initialisation, the validation score (model selection,
higher is better) and its ``log.csv`` column, the test predictions, the task's block of the metrics JSON,
the figure arrays of ``_pred.npz`` and the final log line of an evaluation.

:class:`Segmentation` (``downstream: segmentation``, the default)

* Output: K = ``store.n_classes`` logits per pixel; test prediction = argmax over them (uint8).
* Training: the label is the target, random-cropped/rotated together with the image (nearest for the label);
  loss = cross-entropy, mean over pixels of −log softmax(z)_y.
* Head: bias = log(prior) with prior_k = pixel frequency of class k over the training slices
  (:func:`class_prior`; ``init_head_bias`` clips at 1e-4).
* ``val_dice`` = mean over foreground classes k ≥ 1 of 2TP_k / (2TP_k + FP_k + FN_k), from one confusion
  matrix pooled over every validation pixel (slice-pooled); a class absent from prediction and ground truth
  is left out; 0 when no class is defined.
* Metrics JSON: ``hd95_units``, ``slice_pooled``, ``never_predicted`` (the classes of the ground truth the model
  predicts no pixel of: a warning in the log, a mark in the tables), ``per_volume`` (Dice/IoU/HD95 per class per case),
  ``volume_mean``, ``confusion``, ``psnr: null``, ``slice_filter``, ``n_slices`` and ``all_slices``
  (:func:`all_slice_scores`); conventions in :mod:`medssl.train.evaluate` and :mod:`medssl.scoring`.
* ``_pred.npz``: ``image`` = the clean image, ``label`` = the label map, ``pred`` = the argmax.
* Log: ``slice-pooled mean Dice …, mIoU …``.

:class:`Denoising` (``downstream: denoising``)

* Output: 1 channel, the denoised image; test prediction = that output (float32).
* Training: the target is the clean (cropped/rotated) image x, the input x + ε with ε ~ N(0, σ²),
  σ = ``noise_sigma``, drawn with the seeded torch RNG (:func:`medssl.train.common.add_noise`);
  loss = L1, mean |f(x + ε) − x|.
* Head: bias = mean clean intensity of the training slices (:func:`mean_intensity`).
* ``val_psnr`` = 10·log10(1 / MSE) (data range 1.0), MSE pooled over every validation pixel; the validation
  noise comes from a CPU generator seeded with :data:`VALIDATION_NOISE_SEED` (the same noise every epoch).
* Metrics JSON: the noise comes from a CPU generator seeded with the evaluation seed (identical noise for
  every run); ``psnr`` = PSNR of the MSE pooled over all test pixels, ``per_volume[*].psnr`` per case,
  ``noisy_psnr`` = the same PSNR of the noisy input itself (the bar a denoising model must clear);
  segmentation fields are empty/null (``classes: []``, ``confusion: []``, ``hd95_units: null``).
* ``_pred.npz``: ``image`` = the noisy input, ``label`` = the clean image, ``pred`` = the output.
* Log: ``PSNR … dB``.

Shared helpers live here too, so that both modules import this one and not each other:
:func:`predict_batches` (test and validation inference), :func:`all_slice_scores`, :func:`case_spacing`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from medssl import scoring as M
from medssl.train import common
from medssl.train import device as dev

log = logging.getLogger("medssl.train")

EVAL_BATCH = 32
VALIDATION_NOISE_SEED = 10_007

# augment(image, label or None) -> (image, label or None): the finetuning crop + rotation, or None
Augment = Callable[..., tuple]


# ----------------------------------------------------------------------------------------- shared helpers

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


def never_predicted(conf: np.ndarray, names) -> list[str]:
    """The foreground classes present in the ground truth that a confusion matrix ``C[t, p]`` never predicts
    (a model that segments nothing of them: a number that means nothing)."""
    conf = np.asarray(conf)
    return [n for k, n in enumerate(names, start=1) if conf[:, k].sum() == 0 and conf[k, :].sum() > 0]


def class_prior(store, rows: np.ndarray) -> np.ndarray:
    """Pixel frequency of each class over the labelled training slices ``rows``."""
    counts = np.zeros(store.n_classes, dtype=np.float64)
    for i in range(0, len(rows), 256):
        lab = np.asarray(store.labels[np.sort(rows[i:i + 256])])
        counts += np.bincount(lab.ravel(), minlength=store.n_classes)[:store.n_classes]
    return counts / max(counts.sum(), 1.0)


def mean_intensity(store, rows: np.ndarray) -> float:
    """Mean pixel intensity of the training slices ``rows`` (the denoising head's starting bias)."""
    total = 0.0
    for i in range(0, len(rows), 256):
        total += float(np.asarray(store.images[np.sort(rows[i:i + 256])], dtype=np.float64).sum())
    return total / max(len(rows) * store.images.shape[1] * store.images.shape[2], 1)


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


# ------------------------------------------------------------------------------------------- the tasks

class Downstream:
    """What a downstream task owns; built from the study options (:class:`medssl.settings.StudyOptions`).

    ``test`` below is the evaluation's view: ``rows`` (scored test rows, store order), ``all_rows`` (every
    slice of the test patients), ``cases``/``patients`` (per scored row), ``case_order`` (store order)."""

    name: str = ""
    score_name: str = ""  # the validation column of log.csv and model.pt's "score_name"
    needs_labels: bool = True  # training learns from the label maps (denoising: from the images alone)
    test_arrays: dict = {}  # name -> dtype of the per-row (H, W) arrays of test_predictions

    def __init__(self, opts):
        self.opts = opts
        self.noise_sigma = opts.noise_sigma

    @property
    def input_noise(self) -> float | None:
        """Std of the noise added to evaluation inputs (None: clean inputs)."""
        return None

    def out_channels(self, store) -> int:
        raise NotImplementedError

    def classes(self, store) -> list[str]:
        """``classes`` of the metrics JSON."""
        raise NotImplementedError

    def init_head(self, model, store, rows: np.ndarray) -> None:
        """Set the (never transferred) head's bias from the training slices ``rows``; logs it."""
        raise NotImplementedError

    def train_input(self, batch: dict, augment: Augment | None) -> torch.Tensor:
        """Give ``batch`` its training target (from the augmented image/label) and return the network input,
        before normalisation."""
        raise NotImplementedError

    def loss(self, out: torch.Tensor, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def validation_score(self, model, store, rows: np.ndarray, device, *, input_norm: str,
                         batch_size: int = EVAL_BATCH) -> float:
        """Model selection score on ``rows`` (higher is better)."""
        raise NotImplementedError

    def _batch_arrays(self, inp: torch.Tensor, out: torch.Tensor) -> dict:
        raise NotImplementedError

    def test_predictions(self, model, store, rows: np.ndarray, device, *, input_norm: str, seed: int) -> dict:
        """``{name: (len(rows), H, W) array}`` of :attr:`test_arrays` (``pred`` always), in ``rows`` order."""
        H, W = store.images.shape[1:]
        arrays = {k: np.empty((len(rows), H, W), dtype=dt) for k, dt in self.test_arrays.items()}
        pos = 0
        for r, inp, out, _ in predict_batches(model, store, rows, device, input_norm=input_norm,
                                              noise_sigma=self.input_noise, noise_seed=seed):
            k = len(r)
            for name, value in self._batch_arrays(inp, out).items():
                arrays[name][pos:pos + k] = value
            pos += k
        return arrays

    def test_metrics(self, model, store, test: dict, arrays: dict, device) -> dict:
        """The task's keys of the metrics JSON, in file order."""
        raise NotImplementedError

    def figure_arrays(self, store, fig_rows: np.ndarray, sel: np.ndarray, arrays: dict) -> tuple:
        """``(image, label)`` of ``_pred.npz`` for the store rows ``fig_rows`` (positions ``sel`` in ``arrays``)."""
        raise NotImplementedError

    def summary(self, result: dict) -> str:
        """The end of the evaluation's log line."""
        raise NotImplementedError


class Segmentation(Downstream):
    name = "segmentation"
    score_name = "val_dice"
    test_arrays = {"pred": np.uint8}

    def out_channels(self, store) -> int:
        return store.n_classes

    def classes(self, store) -> list[str]:
        return store.class_names

    def init_head(self, model, store, rows):
        bias = model.init_head_bias(class_prior(store, rows))
        log.info("head bias = log(class prior of the %d training slices): %s", len(rows),
                 ", ".join(f"{b:.2f}" for b in bias.tolist()))

    def train_input(self, batch, augment):
        image, label = batch["image"], batch["label"]
        if augment is not None:
            image, label = augment(image, label)
        batch["label"] = label
        return image

    def loss(self, out, batch):
        return F.cross_entropy(out, batch["label"])

    def validation_score(self, model, store, rows, device, *, input_norm, batch_size=EVAL_BATCH):
        n = store.n_classes
        conf = torch.zeros(n * n, dtype=torch.int64, device=device)
        for _, _, out, lab in predict_batches(model, store, rows, device, batch_size=batch_size,
                                              input_norm=input_norm, noise_sigma=None,
                                              noise_seed=VALIDATION_NOISE_SEED):
            pred = out.argmax(1)
            conf += torch.bincount((lab * n + pred).flatten(), minlength=n * n)
        score = M.nanmean_foreground(M.dice_from_confusion(conf.view(n, n).cpu().numpy()))
        return 0.0 if math.isnan(score) else score

    def _batch_arrays(self, inp, out):
        return {"pred": out.argmax(1).to(torch.uint8).cpu().numpy()}

    def test_metrics(self, model, store, test, arrays, device):
        rows, cases, patients, case_order = test["rows"], test["cases"], test["patients"], test["case_order"]
        pred = arrays["pred"]
        names, n = store.class_names, store.n_classes
        labels = np.asarray(store.labels[rows])
        conf = M.confusion_matrix(pred, labels, n)
        spacing = case_spacing(store, case_order)
        block = {"hd95_units": "mm" if spacing else "voxels"}
        per_volume = []
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
        never = never_predicted(conf, names)
        if never:
            log.warning("the model predicts no pixel of %s on the %d test slices (it labels them background): "
                        "its Dice for %s is 0 and means only that it learned nothing of %s",
                        ", ".join(never), len(rows), "it" if len(never) == 1 else "them",
                        "it" if len(never) == 1 else "them")
        block.update({
            "slice_pooled": M.segmentation_summary(conf, names),
            "never_predicted": never,
            "per_volume": per_volume,
            "volume_mean": vm,
            "confusion": conf.tolist(),
            "psnr": None,
            "slice_filter": self.opts.slice_filter,
            "n_slices": int(len(rows)),
            "all_slices": all_slice_scores(model, store, test["all_rows"], rows, pred, device,
                                           input_norm=self.opts.input_norm),
        })
        return block

    def figure_arrays(self, store, fig_rows, sel, arrays):
        return np.asarray(store.images[fig_rows], dtype=np.float32), np.asarray(store.labels[fig_rows])

    def summary(self, result):
        return "slice-pooled mean Dice %s, mIoU %s" % (result["slice_pooled"]["mean_dice"],
                                                       result["slice_pooled"]["miou"])


class Denoising(Downstream):
    needs_labels = False
    name = "denoising"
    score_name = "val_psnr"
    test_arrays = {"pred": np.float32, "noisy": np.float32}

    @property
    def input_noise(self):
        return self.noise_sigma

    def out_channels(self, store) -> int:
        return 1

    def classes(self, store) -> list[str]:
        return []

    def init_head(self, model, store, rows):  # the regression analogue: start from the mean clean intensity
        bias = model.init_head_bias(None, mean=mean_intensity(store, rows))
        log.info("head bias = mean intensity of the %d training slices: %.3f", len(rows), float(bias[0]))

    def train_input(self, batch, augment):
        image = batch["image"]
        if augment is not None:
            image, _ = augment(image, None)
        batch["target"] = image
        return common.add_noise(image, self.noise_sigma)

    def loss(self, out, batch):
        return F.l1_loss(out, batch["target"])

    def validation_score(self, model, store, rows, device, *, input_norm, batch_size=EVAL_BATCH):
        sq, count = 0.0, 0
        for r, _, out, _ in predict_batches(model, store, rows, device, batch_size=batch_size,
                                            input_norm=input_norm, noise_sigma=self.noise_sigma,
                                            noise_seed=VALIDATION_NOISE_SEED):
            clean = torch.from_numpy(np.asarray(store.images[r], dtype=np.float32)).to(device)
            sq += float(((out[:, 0] - clean) ** 2).sum())
            count += clean.numel()
        return M.psnr_from_mse(sq / max(count, 1))

    def _batch_arrays(self, inp, out):
        return {"pred": out[:, 0].cpu().numpy(), "noisy": inp[:, 0].cpu().numpy()}

    def test_metrics(self, model, store, test, arrays, device):
        rows, cases, patients = test["rows"], test["cases"], test["patients"]
        pred, noisy = arrays["pred"], arrays["noisy"]
        per_volume = []
        sq = sq_noisy = 0.0
        for c in test["case_order"]:
            m = cases == c
            clean = np.asarray(store.images[rows[m]], dtype=np.float32)
            err = float(((pred[m].astype(np.float64) - clean) ** 2).sum())
            sq += err
            sq_noisy += float(((noisy[m].astype(np.float64) - clean) ** 2).sum())
            per_volume.append({"patient": str(patients[m][0]), "case": str(c), "dice": {}, "iou": {},
                               "hd95": {}, "psnr": M.to_json_float(M.psnr_from_mse(err / clean.size))})
        return {
            "slice_pooled": {"dice": {}, "iou": {}, "mean_dice": None, "miou": None},
            "per_volume": per_volume,
            "volume_mean": {"dice": {}, "iou": {}, "hd95": {}, "mean_dice": None, "miou": None},
            "confusion": [],
            "psnr": M.to_json_float(M.psnr_from_mse(sq / pred.size)),
            "noisy_psnr": M.to_json_float(M.psnr_from_mse(sq_noisy / pred.size)),
            "hd95_units": None,
        }

    def figure_arrays(self, store, fig_rows, sel, arrays):
        return arrays["noisy"][sel], np.asarray(store.images[fig_rows], dtype=np.float32)

    def summary(self, result):
        return "PSNR %.2f dB" % (result["psnr"] or float("nan"))


DOWNSTREAMS: dict[str, type[Downstream]] = {"segmentation": Segmentation, "denoising": Denoising}


def downstream_of(opts) -> Downstream:
    """The task named by study options ``opts`` (:class:`~medssl.settings.StudyOptions`, ``opts.downstream``)."""
    if opts.downstream not in DOWNSTREAMS:
        raise ValueError(f"unknown downstream {opts.downstream!r}; known: {', '.join(DOWNSTREAMS)}")
    return DOWNSTREAMS[opts.downstream](opts)
