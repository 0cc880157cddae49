#!/usr/bin/env bash
# DETR on one GPU: training speed against Hugging Face, then fashion-detect against torchvision's Faster R-CNN on the
# same data and the same time budget (one after the other, the whole GPU each). Logs and JSON under $OUT.
# Usage on the GPU machine: FORMERS_DATA_DIR=<folder with fashion-mnist/> MINUTES=2 OUT=<dir> bash benchmarks/detection_gpu.sh
set -u
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; MINUTES=${MINUTES:-2}; RECIPE=${RECIPE:-fashion-detect}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ -z "${SKIP_SPEED:-}" ]; then
  python benchmarks/detr_speed.py --out $OUT/detr_speed.json > $OUT/detr_speed.log 2>&1
  tail -12 $OUT/detr_speed.log
fi
EXTRA=(); for kv in ${SET:-}; do EXTRA+=(--set "$kv"); done
# Short budgets: compiling would eat the run, so both train eagerly.
python -m formers.cli.main train $RECIPE --run-dir /tmp/runs/detr --set train.max_minutes=$MINUTES \
  --set train.compile=false "${EXTRA[@]}" > $OUT/detr_$RECIPE.log 2>&1
cp /tmp/runs/detr/results.json $OUT/detr_${RECIPE}_results.json; cp /tmp/runs/detr/metrics.csv $OUT/detr_${RECIPE}_metrics.csv
tail -15 $OUT/detr_$RECIPE.log
python benchmarks/faster_rcnn_baseline.py $RECIPE --minutes $MINUTES --out $OUT/faster_rcnn_$RECIPE.json \
  "${EXTRA[@]}" > $OUT/faster_rcnn_$RECIPE.log 2>&1
tail -25 $OUT/faster_rcnn_$RECIPE.log
