#!/usr/bin/env bash
# Trains the multi30k-en-de recipe (and one variant) side by side on one GPU and collects logs under $OUT.
# Usage on the GPU machine: FORMERS_DATA_DIR=<folder with multi30k/> OUT=<dir> bash benchmarks/multi30k_gpu.sh [extra --set ...]
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__)"
run() {  # name, extra --set args
  local name=$1; shift
  timeout ${LIMIT:-560} python -m formers.cli.main train multi30k-en-de --run-dir /tmp/runs/$name \
    --set train.progress_bar=false "$@" > $OUT/$name.log 2>&1
  cp /tmp/runs/$name/metrics.csv $OUT/${name}_metrics.csv 2>/dev/null
  cp /tmp/runs/$name/results.json $OUT/${name}_results.json 2>/dev/null
  cp /tmp/runs/$name/curves.png $OUT/${name}_curves.png 2>/dev/null
}
run post --set model.norm_first=false --set model.final_norm=false --set optim.lr=0.0005 --set optim.warmup_steps=2000 ${A_ARGS:-} &
run pre ${B_ARGS:-} &
wait
for n in post pre; do echo "== $n"; grep -E "data:|final:|Error|error" $OUT/$n.log | tail -8; tail -3 $OUT/${n}_metrics.csv 2>/dev/null; done
