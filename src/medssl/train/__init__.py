"""Method-agnostic training core: device/seed handling, checkpoints, the epoch loop, pretraining,
finetuning and evaluation. File formats: checkpoints and model files in :mod:`medssl.train.checkpoint`, the
metrics JSON and ``_pred.npz`` in :mod:`medssl.train.evaluate`; where each file lives: README, "Outputs"."""
