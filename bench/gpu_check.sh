#!/usr/bin/env bash
# GPU check (<= 8 minutes on one GPU): the CUDA tests, the training-loop benchmark at paper A's setting
# (192 px, batch 30, bf16 autocast), `medssl cost --measure`, and the phantom benchmark's HSSL pretraining +
# finetuning at 192 px (full-width networks) for a fixed number of steps, printing every figure.
#   bash bench/gpu_check.sh            (from the repository root, with the medssl environment active)
# Without CUDA it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "no CUDA: nothing to check on this machine"
    exit 0
fi
PRE_STEPS=${PRE_STEPS:-200}
FT_STEPS=${FT_STEPS:-200}
python -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

echo "== 1. CUDA tests"
timeout 120 python -m pytest -q tests/test_models.py -k cuda -rs || echo "CUDA tests FAILED (status $?)"

echo "== 2. training loop at 192 px, batch 30, bf16 (images/s, ratio to a bare loop)"
timeout 150 python bench/bench_train.py --size 192 --batch 30 --steps 20 --repeats 2 || echo "bench_train FAILED"

echo "== 3. medssl cost --measure (config/paper.yaml)"
timeout 90 medssl cost --config config/paper.yaml --measure || echo "cost --measure FAILED"

echo "== 4. phantom benchmark: HSSL pretrain ($PRE_STEPS steps) + finetune ($FT_STEPS steps) at 192 px, full width"
WORK=$(mktemp -d)
# removed however the script ends: a failed step under `set -e`, Ctrl-C, or a scheduler's SIGTERM / SIGHUP
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
python - "$WORK" "$PRE_STEPS" "$FT_STEPS" <<'PY'
import sys, yaml
work, pre, ft = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = yaml.safe_load(open("config/benchmark.yaml"))
c.update(experiment="gpu_check", model_width=1.0, device="cuda", threads=4)
c["data"]["image_size"] = 192
s = c["studies"]["hssl"]
s["pretrain"] = {"epochs": 2, "batch_size": 30, "lr": 3.0e-4, "checkpoint_every": 2, "steps": pre}
s["finetune"] = {"epochs": 4, "batch_size": 30, "lr": 5.0e-4, "poly_power": 0.9, "checkpoint_every": 4, "steps": ft}
c["studies"] = {"hssl": s}
c.pop("reports", None)
yaml.safe_dump(c, open(f"{work}/config.yaml", "w"))
print(" ".join(s["pretrain_datasets"]))
PY
CFG="$WORK/config.yaml"
cd "$WORK"
t0=$(date +%s)
for d in msd_heart msd_liver msd_prostate msd_pancreas msd_spleen oai_zib acdc mnms; do
    medssl synthesize --config "$CFG" --dataset "$d" --out "resources/synthetic/$d" 2>/dev/null
    medssl slice --config "$CFG" --dataset "$d" --out "results/gpu_check/data/$d" 2>/dev/null
    medssl split --config "$CFG" --dataset "$d" --store "results/gpu_check/data/$d" --out "results/gpu_check/splits/$d.json" 2>/dev/null
done
echo "data (8 phantom twins at 192 px): $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
timeout 200 medssl pretrain --config "$CFG" --study hssl --run hssl --pool all --out pre 2> pre.log || { echo "pretrain FAILED"; tail -5 pre.log; }
echo "HSSL pretrain, $PRE_STEPS steps of 30 at 192 px: $(( $(date +%s) - t0 )) s"
for run in tfs hssl; do
    arg=""; [ "$run" = hssl ] && arg="--pretrained pre/model.pt"
    t0=$(date +%s)
    timeout 120 medssl finetune --config "$CFG" --study hssl --run "$run" --dataset msd_heart --ratio 5 --seed 0 \
        --out "ft_$run" $arg --metrics "m_$run.json" 2> "ft_$run.log" || { echo "finetune $run FAILED"; tail -5 "ft_$run.log"; }
    python -c "import json; d=json.load(open('m_$run.json')); print('finetune $run on msd_heart 5%, $FT_STEPS steps: test Dice', round(100*d['slice_pooled']['mean_dice'], 1), '%')" || true
    echo "  ($(( $(date +%s) - t0 )) s)"
done
