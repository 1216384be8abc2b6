#!/usr/bin/env bash
# GPU check (about 20 minutes on one GPU; never run by CI): prints every figure, and one ratio per comparison.
#   1. the CUDA tests                      2. bench_train.py at paper A's setting (192 px, batch 30, bf16)
#   3. `medssl cost --measure` of config/paper.yaml (into a scratch folder) and the throughput file it writes
#   4. the phantom benchmark's HSSL pretraining + finetuning at 192 px, full width, fixed steps (test Dice)
#   5. pretraining on 2 GPUs / 1 GPU (`pretrain: {gpus: N}`): scaling efficiency; skipped below 2 GPUs
#   6. K = 1, 2, 4 finetuning jobs side by side on one GPU (`medssl cost --measure --pack K`'s timing): total img/s
#   7. data on the GPU (`data_on_gpu: auto`) / through the loader (`off`): finetuning img/s
#   8. compiled (`compile: true`) / eager finetuning: img/s after the first epoch (compilation left out)
#   bash bench/gpu_check.sh            (with the medssl environment active)
# Sections 4, 5, 7 and 8 run the workflow (snakemake) in a scratch folder on config variants; a variant's
# img/s is its job's last epoch in log.csv (steps x batch 30 / the epoch's seconds, validation included).
# Sections whose config key a checkout does not know say FAILED. Without CUDA it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "no CUDA: nothing to check on this machine"
    exit 0
fi
PRE_STEPS=${PRE_STEPS:-200}
FT_STEPS=${FT_STEPS:-200}
GPUS=$(python -c 'import torch; print(torch.cuda.device_count())')
python -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'
WORK=$(mktemp -d)
# removed however the script ends: a failed step under `set -e`, Ctrl-C, or a scheduler's SIGTERM / SIGHUP
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# variant NAME [KEY=VALUE ...]: $WORK/NAME.yaml = the phantom benchmark's HSSL study at 192 px, full width, on
# CUDA, with fixed step budgets over 2 epochs, and each dotted KEY set to the YAML VALUE
variant() {
    python - "$WORK" "$PRE_STEPS" "$FT_STEPS" "$@" <<'PY'
import sys, yaml
work, pre, ft, name, *sets = sys.argv[1:]
c = yaml.safe_load(open("config/benchmark.yaml"))
c.update(experiment="gpu_check", model_width=1.0, device="cuda", threads=4, resources=f"{work}/resources")
c["data"]["image_size"] = 192
s = c["studies"]["hssl"]
s["pretrain"] = {"epochs": 2, "batch_size": 30, "lr": 3.0e-4, "checkpoint_every": 2, "steps": int(pre)}
s["finetune"] = {"epochs": 2, "batch_size": 30, "lr": 5.0e-4, "checkpoint_every": 2, "steps": int(ft)}
c["studies"] = {"hssl": s}
c.pop("reports", None)
for setting in sets:
    key, value = setting.split("=", 1)
    *path, last = key.split(".")
    block = c
    for k in path:
        block = block.setdefault(k, {})
    block[last] = yaml.safe_load(value)
yaml.safe_dump(c, open(f"{work}/{name}.yaml", "w"))
PY
}

# train NAME RULE DIR TARGET [GPUS]: make TARGET with config NAME (its RULE jobs run again), print the img/s
# of the job's last epoch (DIR/log.csv) and set IPS to it (0 when the job failed)
train() {
    local name=$1 rule=$2 dir=$3 target=$4 gpus=${5:-1} t0=$SECONDS
    IPS=0
    if ! timeout 600 snakemake "$target" --snakefile "$REPO/Snakefile" --directory "$WORK" \
            --configfile "$WORK/$name.yaml" --cores "$(nproc)" --resources gpu="$gpus" --forcerun "$rule" \
            > "$WORK/$name.log" 2>&1; then
        echo "$name: FAILED"; tail -5 "$WORK/$name.log"; return 0
    fi
    IPS=$(python -c 'import sys, pandas as pd; d = pd.read_csv(sys.argv[1]); s = d["step"].diff().fillna(d["step"])
print(round(s.iloc[-1] * 30 / d["time"].iloc[-1], 1))' "$WORK/$dir/log.csv")
    echo "$name: $IPS img/s in its last epoch ($(( SECONDS - t0 )) s in all)"
}

# ratio WHAT A B [SCALE]: print WHAT: A / (B x SCALE)
ratio() {
    awk -v w="$1" -v a="$2" -v b="$3" -v k="${4:-1}" \
        'BEGIN { if (a > 0 && b > 0) printf "%s: %.2f\n", w, a / (b * k); else print w ": n/a (a run failed)" }'
}

# the jobs the sections time: HSSL pretraining on all 8 datasets; RUN finetuned on msd_heart at 5 %, seed 0
PRE_DIR=results/gpu_check/hssl/pretrain/hssl/all
ft_dir() { echo "results/gpu_check/hssl/finetune/$1/msd_heart/5/seed0"; }
ft_metrics() { echo "results/gpu_check/hssl/metrics/$1/msd_heart/5/seed0.json"; }
one=0 single=0 loader=0 eager=0

echo "== 1. CUDA tests"
timeout 120 python -m pytest -q tests/test_models.py -k cuda -rs || echo "CUDA tests FAILED (status $?)"

echo "== 2. training loop at 192 px, batch 30, bf16 (images/s, ratio to a bare loop)"
timeout 150 python bench/bench_train.py --size 192 --batch 30 --steps 20 --repeats 2 || echo "bench_train FAILED"

echo "== 3. medssl cost --measure (config/paper.yaml), and the file the estimate then reads"
timeout 120 medssl cost --config config/paper.yaml --measure --directory "$WORK" && \
    cat "$WORK/results/paper/cost/throughput.yaml" || echo "cost --measure FAILED"

echo "== 4. phantom benchmark: HSSL pretrain ($PRE_STEPS steps) + finetune ($FT_STEPS steps) at 192 px, full width"
variant base
train base pretrain "$PRE_DIR" "$PRE_DIR/model.pt"
for run in tfs hssl; do
    train base finetune "$(ft_dir $run)" "$(ft_metrics $run)"
    python -c "import json; d = json.load(open('$WORK/$(ft_metrics $run)'))
print('finetune $run on msd_heart 5 %: test Dice', round(100 * d['slice_pooled']['mean_dice'], 1), '%')" || true
done

echo "== 5. pretraining on 2 GPUs vs 1 (pretrain: {gpus: N}; batch_size is the global batch)"
if [ "$GPUS" -lt 2 ]; then
    echo "skipped: $GPUS GPU visible, 2 needed"
else
    variant gpus1 studies.hssl.pretrain.gpus=1 && train gpus1 pretrain "$PRE_DIR" "$PRE_DIR/model.pt" 2 && one=$IPS
    variant gpus2 studies.hssl.pretrain.gpus=2 && train gpus2 pretrain "$PRE_DIR" "$PRE_DIR/model.pt" 2
    ratio "scaling efficiency, img/s on 2 GPUs / (2 x on 1)" "$IPS" "$one" 2
fi

echo "== 6. K finetuning jobs side by side on one GPU (hssl_net, 192 px, batch 30, clocks started together)"
for k in 1 2 4; do
    total=$(timeout 300 python -c 'import sys; from medssl import cost; k = int(sys.argv[1])
ips = cost.measure_packed(["hssl_net"], 192, k, batch_size=30, steps=100, warmup=10, device="cuda")
print(round(k * ips[("hssl_net", 192)], 1))' "$k") || total=0
    [ "$k" = 1 ] && single=$total
    echo "K=$k: $total img/s in total"; ratio "  total img/s, K=$k / K=1" "$total" "$single"
done

echo "== 7. data on the GPU vs through the loader (data_on_gpu: auto / off), finetuning tfs"
variant loader 'data_on_gpu="off"' && train loader finetune "$(ft_dir tfs)" "$(ft_metrics tfs)" && loader=$IPS
variant on_gpu data_on_gpu=auto && train on_gpu finetune "$(ft_dir tfs)" "$(ft_metrics tfs)"
ratio "img/s, data on the GPU / loader" "$IPS" "$loader"

echo "== 8. compiled vs eager (finetune: {compile: true / false}), finetuning tfs, after the first epoch"
variant eager studies.hssl.finetune.compile=false && train eager finetune "$(ft_dir tfs)" "$(ft_metrics tfs)" \
    && eager=$IPS
variant compiled studies.hssl.finetune.compile=true && train compiled finetune "$(ft_dir tfs)" "$(ft_metrics tfs)"
ratio "img/s, compiled / eager" "$IPS" "$eager"
