"""Method-agnostic training core: device/seed handling, checkpoints, the epoch loop, pretraining,
finetuning and evaluation (see CONTRACTS.md for file layouts)."""
