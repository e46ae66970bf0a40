#!/bin/bash
# Continue training the shipped detector on one GPU for a fixed wall-clock budget, everything
# trainable (the ViT too: frozen, it never learned shape on the CPU budget), bigger batches.
# Two learning rates run side by side on the same GPU (the tiny model leaves it mostly idle);
# pick the better one afterwards with `conceptseg eval`. Used once in session 3 on an H200:
#
#   BUDGET=500 OUT=/tmp/gpu sh scripts/train_gpu.sh      # seconds of training, output folder
#
# A short probe first measures seconds per step with both runs live, so each run's cosine
# schedule ends inside the budget. Outputs (fp16 weights + metrics) land in $OUT.
set -e
cd "$(dirname "$0")/.."
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
DEV=${DEVICE:-cuda}
BUDGET=${BUDGET:-500}
OUT=${OUT:-runs/gpu-out}
INIT=${INIT:-conceptseg/assets/tiny.safetensors}
BATCH=${BATCH:-32}
WORKERS=${WORKERS:-7}
R=${RUNS:-runs}
mkdir -p "$OUT" "$R"
t0=$(date +%s)
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"

run() {  # name lr steps [extra args]
  name=$1 lr=$2 steps=$3; shift 3
  $PY -m conceptseg.cli train --init "$INIT" --device "$DEV" --steps "$steps" \
    --batch-images "$BATCH" --phrases-per-image 4 --lr "$lr" --backbone-lr-mult 0.5 \
    --warmup $(( steps / 20 + 1 )) --weight-decay 0.05 --clip 0.1 --curriculum 0:4:mixed \
    --dn --o2m 3 --dac --attr-aux 1.0 --exemplars 0.2 --loss alpha=0.5,gamma=0 \
    --workers "$WORKERS" --threads 2 --checkpoint-every 200 --log-every 20 \
    --time-limit "$(python3 -c "print(($BUDGET - ($(date +%s) - $t0)) / 60)")" \
    --no-progress --out "$R/$name" "$@"
}
rate() {  # seconds per step of a probe run, from its last logged interval
  $PY -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(r[-1]['s_per_step'])" "$1"
}

# 1. probe: 40 steps of each, concurrently
rm -rf "$R/probe-a" "$R/probe-b"
PROBE=${PROBE:-60}
( run probe-a 6e-4 $PROBE --log-every $(( PROBE / 2 )) > "$OUT/probe-a.log" 2>&1 ) &
( run probe-b 3e-4 $PROBE --log-every $(( PROBE / 2 )) > "$OUT/probe-b.log" 2>&1 ) &
wait
tail -2 "$OUT/probe-a.log"
ra=$(rate "$R/probe-a/metrics.jsonl") && rb=$(rate "$R/probe-b/metrics.jsonl") \
  || { cat "$OUT"/probe-*.log; exit 1; }
left=$(( BUDGET - ($(date +%s) - t0) - 25 ))  # startup and final checkpoint
na=$(python3 -c "print(int($left / $ra))"); nb=$(python3 -c "print(int($left / $rb))")
echo "probe: $ra s/step (lr 6e-4), $rb s/step (lr 3e-4); $left s left -> $na and $nb steps"

# 2. the two runs
rm -rf "$R/gpu-a" "$R/gpu-b"
( run gpu-a 6e-4 "$na" > "$OUT/gpu-a.log" 2>&1 ) &
( run gpu-b 3e-4 "$nb" > "$OUT/gpu-b.log" 2>&1 ) &
wait || true

# 3. fp16 weights + metrics back
for n in gpu-a gpu-b; do
  $PY -c "
import sys, torch
from conceptseg.build import load
from conceptseg.train.detect import save_weights
m = load(sys.argv[1] + '/model.safetensors')
save_weights(m, __import__('pathlib').Path(sys.argv[2]), half=True)" "$R/$n" "$OUT/$n.safetensors" || true
  cp "$R/$n/metrics.jsonl" "$OUT/$n.metrics.jsonl" || true
done
ls -la "$OUT"
