#!/usr/bin/env bash
# Trains the Fashion-MNIST recipes given as arguments (default: all four families) one after another on one GPU;
# logs, metrics and results.json go to $OUT. Each recipe stops by its max_minutes (3), so two fit in one
# 10-minute device call.
# Usage on the GPU machine: FORMERS_DATA_DIR=<folder with fashion-mnist/> OUT=<dir> bash benchmarks/vision_gpu.sh vit swin
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name --format=csv,noheader
families=${*:-vit swin tnt efficientformer}
for family in $families; do
  name=$family-fashion-mnist
  /usr/bin/time -f "$name wall %e s" python -m formers.cli.main train $name --run-dir /tmp/runs/$name \
    --set train.progress_bar=false --set train.tensorboard=false > $OUT/$name.log 2>&1
  cp /tmp/runs/$name/metrics.csv $OUT/${name}_metrics.csv 2>/dev/null
  cp /tmp/runs/$name/results.json $OUT/${name}_results.json 2>/dev/null
  echo "== $name"; grep -E "final|test_acc|wall|Error|error" $OUT/$name.log | tail -6
done
