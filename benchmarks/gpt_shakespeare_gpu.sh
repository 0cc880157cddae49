#!/usr/bin/env bash
# Trains gpt-shakespeare-char and gpt-shakespeare-bpe side by side on one GPU; logs and metrics go to $OUT.
# Usage on the GPU machine: FORMERS_DATA_DIR=<folder with tinyshakespeare/ and gpt2-bpe/> OUT=<dir> bash benchmarks/gpt_shakespeare_gpu.sh
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name --format=csv,noheader
run() {  # recipe, extra --set args
  local name=$1; shift
  /usr/bin/time -f "$name wall %e s" timeout ${LIMIT:-560} python -m formers.cli.main train $name --run-dir /tmp/runs/$name \
    --set train.progress_bar=false "$@" > $OUT/$name.log 2>&1
  cp /tmp/runs/$name/metrics.csv $OUT/${name}_metrics.csv 2>/dev/null
  cp /tmp/runs/$name/results.json $OUT/${name}_results.json 2>/dev/null
  cp /tmp/runs/$name/sample.txt $OUT/${name}_sample.txt 2>/dev/null
}
run gpt-shakespeare-char ${A_ARGS:-} &
run gpt-shakespeare-bpe ${B_ARGS:-} &
wait
for n in gpt-shakespeare-char gpt-shakespeare-bpe; do
  echo "== $n"; grep -E "data:|final:|wall|Error|error" $OUT/$n.log | tail -8
  awk -F, 'NR==1 || $9!=""' $OUT/${n}_metrics.csv 2>/dev/null | tail -4
done
