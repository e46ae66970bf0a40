#!/bin/sh
# The recipe of the shipped model (conceptseg/assets/tiny.safetensors), as it was run.
# See conceptseg/train/RECIPE.md for the why. Every stage resumes: re-run this script after an
# interruption and it continues where it stopped (finished stages are skipped by --resume).
#
#   sh scripts/train_tiny.sh     # stages 1-4: ~2 h on 2 CPU cores; stage 5: ~13 min on one
#                                # H200 (DEVICE=cuda), ~2 h on the CPU; stages 6-9: ~1.5 h
#
set -e
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE PYTHONPATH=.
PY=${PY:-.venv/bin/python}
CS="$PY -m conceptseg.cli"
R=${RUNS:-runs}

# 1. contrastive + per-token attribute pretraining of the ViT and the text encoder
#    (500 steps of a 1,500-step schedule, ~9 min)
$CS train --config tiny --stage pretrain --steps 1500 --stop-at 500 --batch-images 8 \
  --lr 1e-3 --warmup 100 --weight-decay 0.05 --clip 1.0 --threads 2 --log-every 20 \
  --checkpoint-every 100 --out $R/tiny-pre --no-progress --resume

# 2. detection, everything trainable, easy curriculum stage (300 steps of a 4,000-step schedule)
$CS train --init $R/tiny-pre/model.safetensors --steps 4000 --stop-at 300 \
  --batch-images 4 --phrases-per-image 4 --lr 5e-4 --backbone-lr-mult 0.5 --warmup 200 \
  --weight-decay 0.05 --clip 0.1 --curriculum 0:1:easy,400:2:mixed,1500:4:mixed \
  --dn --o2m 3 --dac --attr-aux 1.0 --exemplars 0.2 --threads 2 \
  --checkpoint-every 100 --log-every 10 --out $R/tiny-a --no-progress --resume

# 3 + 4 in parallel: detection with the ViT trunk frozen, and the tracker on that same trunk.
#   Detection switched the focal loss's alpha from 0.25 to 0.5 at step 1,100 and its gamma from
#   2 to 0 (plain balanced BCE) at step 2,300: with focal weighting the positive queries' scores
#   stayed under ~0.6, under-confident for the SA-Co threshold of 0.5.
detect() {
  $CS train --init $R/tiny-a/model.safetensors --steps 3700 --batch-images 4 --phrases-per-image 4 \
    --lr 5e-4 --warmup 100 --freeze vision --weight-decay 0.05 --clip 0.1 \
    --curriculum 0:1:easy,100:2:mixed,1200:4:mixed --dn --o2m 3 --dac --exemplars 0.2 \
    --threads 2 --checkpoint-every 100 --snapshot-every 500 --eval-every 1000 --eval-images 24 \
    --log-every 10 --out $R/tiny-b --no-progress --resume "$@"
}
( detect --stop-at 1100 && detect --stop-at 2300 --loss alpha=0.5 \
  && detect --stop-at ${DETECT_STOP:-3700} --loss alpha=0.5,gamma=0 ) &
DETECT=$!
$CS train --stage tracker --init $R/tiny-a/model.safetensors --steps 1500 \
  --stop-at ${TRACKER_STOP:-1150} --clips 2 --frames 4 --max-objects 2 --lr 1e-3 --warmup 50 \
  --clip 1.0 --weight-decay 0.05 --threads 1 --log-every 10 --checkpoint-every 50 \
  --out $R/tiny-tracker --no-progress --resume
wait $DETECT

# 5. everything trainable again (the ViT too), 32 images x 4 phrases: run on one H200 in
#    session 3 (8.5 + 4 min, 0.5-0.9 s/step: the step is host-bound, see RECIPE.md). Two runs
#    with the same schedule shape; the second continues the first with a fresh warm-up.
DEV=${DEVICE:-$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
big() {
  $CS train --device "$DEV" --workers ${WORKERS:-7} --batch-images 32 --phrases-per-image 4 \
    --lr 6e-4 --backbone-lr-mult 0.5 --weight-decay 0.05 --clip 0.1 --curriculum 0:4:mixed \
    --dn --o2m 3 --dac --attr-aux 1.0 --exemplars 0.2 --loss alpha=0.5,gamma=0 --threads 2 \
    --checkpoint-every 200 --log-every 20 --no-progress --resume "$@"
}
big --init $R/tiny-b/model.safetensors --steps 472 --warmup 24 --out $R/tiny-c
big --init $R/tiny-c/model.safetensors --steps 267 --stop-at 260 --warmup 14 --out $R/tiny-d

# 6. the same on the 2 CPU cores at 4 images x 4 phrases and a lower learning rate
$CS train --init $R/tiny-d/model.safetensors --steps 2200 --stop-at ${CPU_STOP:-2200} \
  --batch-images 4 --phrases-per-image 4 --lr 2e-4 --backbone-lr-mult 0.5 --warmup 50 \
  --weight-decay 0.05 --clip 0.1 --curriculum 0:4:mixed --dn --o2m 3 --dac --attr-aux 1.0 \
  --exemplars 0.2 --loss alpha=0.5,gamma=0 --threads 2 --checkpoint-every 100 \
  --snapshot-every 500 --log-every 10 --out $R/tiny-e --no-progress --resume

# 7. the tracker follows the trunk: fine-tuned on the stage 5 (GPU) trunk (the tracker's
#    weights carried over; ship --allow-trunk-mismatch pairs them for the start). Stage 6 moved
#    the trunk again, by at most 0.014 per weight; a second refresh on it (200 steps, the
#    commented line) measured worse on held-out clips (pHOTA 18.0 against 23.2), so the
#    shipped tracker is this one, paired with the stage 6 detector in step 9.
refresh() {  # detector, tracker run, steps, out
  $PY -m conceptseg.train.ship --detector "$1" --tracker "$2/model.safetensors" --fp32 \
    --allow-trunk-mismatch --out "$4.init.safetensors"
  $CS train --stage tracker --init "$4.init.safetensors" --steps "$3" --clips 2 --frames 4 \
    --max-objects 2 --lr 5e-4 --warmup 20 --clip 1.0 --weight-decay 0.05 --threads 1 \
    --log-every 10 --checkpoint-every 50 --out "$4" --no-progress --resume
}
refresh $R/tiny-d/model.safetensors $R/tiny-tracker 400 $R/tiny-tracker2
# refresh $R/tiny-e/model.safetensors $R/tiny-tracker2 200 $R/tiny-tracker3

# 8. calibrate the two score offsets on validation scenes (never the test split)
$PY -m conceptseg.train.calibrate $R/tiny-e/model.safetensors --out $R/tiny-e/calibrated.safetensors

# 9. one video checkpoint (detector + tracker, float16) = the shipped model
$PY -m conceptseg.train.ship --detector $R/tiny-e/calibrated.safetensors \
  --tracker $R/tiny-tracker2/model.safetensors --allow-trunk-mismatch \
  --out conceptseg/assets/tiny.safetensors
